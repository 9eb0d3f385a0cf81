"""The training loop: optimiser, learning-rate schedule, the paper's objective and one epoch of steps.

The objective is the library's :class:`region_attention.RegionAttentionLoss` (classification loss plus the
region biased loss), built once per run by :func:`build_criterion`; the loop only feeds it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from region_attention import RegionAttentionLoss

from ..models import is_ran_output, uses_landmarks
from .config import RunConfig
from .runtime import Runtime, all_reduce_sum
from .task import Task


class ClosedFormMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
    """torch's ``MultiStepLR`` with each epoch's learning rate in closed form:
    ``base_lr * gamma ** (number of milestones <= epoch)`` (epochs counted from 0).

    ``MultiStepLR`` multiplies the current rate by ``gamma`` at each milestone, which can differ from the closed
    form in the last bit (``0.01 * 0.1 * 0.1 != 0.01 * 0.1 ** 2``); the closed form gives an epoch the same
    float however the run got there, resumed or not, and the same as the engine's schedule before it used
    ``MultiStepLR``. Stepped once after every epoch, as in torchvision's references.
    """

    def get_lr(self) -> list[float | Tensor]:
        passed = sum(count for milestone, count in self.milestones.items() if milestone <= self.last_epoch)
        return [base_lr * self.gamma**passed for base_lr in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the schedule of a checkpoint, after the optimiser's state is loaded: its milestones and gamma
        must be this run's (a ``ValueError`` otherwise), its epoch is taken and every parameter group gets that
        epoch's rate from this run's base rate (``--lr`` may change at a resume; ``--milestones`` and
        ``--gamma`` may not).

        Takes ``MultiStepLR``'s state (``last_epoch``: the next epoch to train) and the state of the engine's
        schedule before it (``milestones``, ``gamma``, ``last_epoch``: the epoch trained last)."""
        saved = (sorted(Counter(state_dict["milestones"]).elements()), state_dict["gamma"])
        ours = (sorted(self.milestones.elements()), self.gamma)
        if saved != ours:
            raise ValueError(
                f"the checkpoint's schedule (milestones {saved[0]}, gamma {saved[1]}) differs from this run's "
                f"(milestones {ours[0]}, gamma {ours[1]}); resume with the checkpoint's --milestones and --gamma"
            )
        self.last_epoch = int(state_dict["last_epoch"]) + (0 if "base_lrs" in state_dict else 1)
        for group, base_lr, lr in zip(self.optimizer.param_groups, self.base_lrs, self.get_lr(), strict=True):
            group["initial_lr"], group["lr"] = base_lr, lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_optimizer(model: nn.Module, cfg: RunConfig) -> tuple[torch.optim.Optimizer, ClosedFormMultiStepLR]:
    """SGD and its step schedule, at the first epoch's learning rate."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return optimizer, ClosedFormMultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)


def build_criterion(task: Task, cfg: RunConfig, model: nn.Module) -> RegionAttentionLoss:
    """The paper's objective for ``model``: the task's classification loss (or the class-weighted
    cross-entropy) plus ``rb_weight`` times the region biased loss around the network's whole face.
    The whole-face baseline has no gates: it trains with the classification part alone."""
    if cfg.model == "baseline":
        whole_index, rb_weight = 0, 0.0  # no self-attention gates: no region biased part
    else:
        found: object = model.whole_index  # an int, or None for a cropper without the whole face
        rb_weight = cfg.rb_weight
        if isinstance(found, int):
            whole_index = found
        else:
            if rb_weight > 0:
                raise ValueError(
                    "the region biased loss compares the crops with the whole face, but this "
                    "network's cropper has no whole face; use --rb-weight 0 or a cropper with one"
                )
            whole_index = 0  # unused: rb_weight is 0
    return RegionAttentionLoss(
        cfg.margin,
        rb_weight=rb_weight,
        whole_index=whole_index,
        class_weight=task.class_weight,
        classification=task.loss,
    )


def progress(iterable: Any, *, total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (images/s and ETA) on a terminal, silence elsewhere (logs, CI, non-zero ranks)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def unpack(
    batch: Sequence[Any], rt: Runtime, *, landmarks: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """A batch on the device: image in [0, 1], target, label, index, landmarks (None when the batch has none,
    or when the model's regions do not use them: ``landmarks=False``)."""
    image, target, label, index = batch[:4]
    points = batch[4].to(rt.device, non_blocking=True) if len(batch) > 4 and landmarks else None
    image = image.to(rt.device, non_blocking=True)
    image = image.float().div_(255) if image.dtype == torch.uint8 else image.float()
    return image, target.to(rt.device, non_blocking=True), label, index, points


#: Horizontal flip of 5-point landmarks: x -> W - x, and the eyes and the mouth corners swap sides.
_FLIP_5 = [1, 0, 2, 4, 3]


def random_hflip(image: Tensor, landmarks: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Flip a random half of the batch left-right (torch's global RNG, seeded per epoch by the engine)."""
    flip = torch.rand(image.shape[0], device=image.device) < 0.5
    image = torch.where(flip.view(-1, 1, 1, 1), image.flip(-1), image)
    if landmarks is not None:
        if landmarks.shape[1] != 5:
            raise ValueError(f"--hflip supports 5-point landmarks, got {landmarks.shape[1]} points")
        mirrored = landmarks[:, _FLIP_5].clone()
        mirrored[..., 0] = image.shape[-1] - mirrored[..., 0]
        landmarks = torch.where(flip.view(-1, 1, 1), mirrored, landmarks)
    return image, landmarks


def amp_dtype(rt: Runtime) -> torch.dtype:
    if rt.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def amp_context(cfg: RunConfig, rt: Runtime) -> contextlib.AbstractContextManager[Any]:
    if not cfg.amp:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=amp_dtype(rt))


def loss_of(criterion: RegionAttentionLoss, out: Any, target: Tensor) -> Any:
    """The criterion on a network output: RAN's gates and mask, or the baseline's logits alone."""
    if is_ran_output(out):
        return criterion(out, target)
    return criterion.from_parts(out.logits, target)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    criterion: RegionAttentionLoss,
    cfg: RunConfig,
    rt: Runtime,
    epoch: int,
) -> dict[str, float]:
    """One pass over ``loader``; returns the epoch's mean losses (total, classification, region biased),
    images and throughput, summed over ranks."""
    model.train()
    # Running sums stay on the device: no host synchronisation per step (the bar reads them every 20 steps).
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # total, classification, region biased, images
    # The first step (1-based) with a non-finite loss or gradient norm; 0: none. On the device: no sync per step.
    first_bad = torch.zeros((), dtype=torch.int64, device=rt.device)
    params = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    bar = progress(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=rt.is_main)
    for step, batch in enumerate(bar):
        if step >= steps:
            break
        image, target, _, _, landmarks = unpack(batch, rt, landmarks=uses_landmarks(cfg))
        if cfg.hflip:
            image, landmarks = random_hflip(image, landmarks)
        with amp_context(cfg, rt):
            out = model(image, landmarks)
        loss = loss_of(criterion, out, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss.total).backward()
        finite = torch.isfinite(loss.total.detach())
        if not scaler.is_enabled():  # fp16 GradScaler skips non-finite steps itself
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                # every gradient finite (= a finite gradient norm); no host sync, and torch 2.4 has no get_total_norm
                finite = finite & torch.stack([torch.isfinite(g).all() for g in grads]).all()
        first_bad = torch.where((first_bad == 0) & ~finite, step + 1, first_bad)
        scaler.step(optimizer)
        scaler.update()
        n = image.shape[0]
        parts = torch.stack([loss.total.detach(), loss.classification.detach(), loss.region_biased.detach()])
        sums += torch.cat([parts.double() * n, parts.new_tensor([n]).double()])
        if hasattr(bar, "set_postfix") and step % 20 == 0:
            rate = float(sums[3]) * rt.world_size / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{float(sums[0] / sums[3]):.3f}", img_s=f"{rate:.0f}")
    elapsed = time.perf_counter() - start
    sums = all_reduce_sum(rt, sums).cpu()
    # every rank stops together: a bad step on any rank counts (its step number when it was this rank's)
    any_bad = all_reduce_sum(rt, (first_bad > 0).double().view(1)) if rt.distributed else (first_bad > 0).view(1)
    check_finite(model, sums, int(first_bad) or (-1 if bool(any_bad.item()) else 0), epoch)
    images = max(float(sums[3]), 1.0)
    return {
        "train_loss": float(sums[0]) / images,
        "train_cls_loss": float(sums[1]) / images,
        "train_rb_loss": float(sums[2]) / images,
        "train_images": int(sums[3]),
        "train_images_per_s": float(sums[3]) / elapsed,
    }


def check_finite(model: nn.Module, sums: Tensor, first_bad: int, epoch: int) -> None:
    """Stop a diverged run: a non-finite loss or gradient norm in any step of the epoch (``first_bad``: the
    first such step, 1-based; -1: on another rank; 0: none), or non-finite weights after it
    (:class:`FloatingPointError` naming the epoch)."""
    if first_bad or not torch.isfinite(sums).all():
        step = f" (first at step {first_bad})" if first_bad > 0 else " (on another rank)" if first_bad else ""
        raise FloatingPointError(
            f"training diverged in epoch {epoch + 1}: non-finite loss or gradient norm{step}; "
            f"mean losses {sums[:3].tolist()}. Lower --lr (or check the data); the run stops "
            "here, nothing is reported from it"
        )
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise FloatingPointError(
            f"training diverged in epoch {epoch + 1}: non-finite weights after the epoch in "
            f"{len(bad)} parameter(s), e.g. {', '.join(bad[:3])}. Lower --lr; the run stops "
            "here, nothing is reported from it"
        )


__all__ = [
    "ClosedFormMultiStepLR",
    "amp_context",
    "amp_dtype",
    "build_criterion",
    "build_optimizer",
    "check_finite",
    "loss_of",
    "progress",
    "random_hflip",
    "train_one_epoch",
    "unpack",
]
