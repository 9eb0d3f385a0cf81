"""The training engine shared by every example script (FERPlus, AffectNet, RAF-DB, SFEW).

One protocol, written once: train on the train split, evaluate the validation split after every epoch,
keep ``best.pt`` (best validation accuracy) and ``last.pt`` (atomic writes), then evaluate the test split
once with the selected checkpoint and report overall, mean-class, per-class and per-subset accuracy.
``--train-on-valid`` reproduces the paper's protocol instead (train on train + valid, report the last
epoch). Runs on one CPU, one GPU, or many processes under ``torchrun`` (DistributedDataParallel; NCCL on
GPUs, Gloo on CPU; only rank 0 writes).

A dataset script builds a :class:`Task` (datasets, class names, loss, subsets, data report) and calls
:func:`run`. Dataset items are tuples ``(image, target, label, index)`` or
``(image, target, label, index, landmarks)``: ``image`` uint8 ``(3, S, S)`` (turned into float in [0, 1] on
the device, as the authors' code feeds it), ``target`` what the task's loss expects, ``label`` the
evaluation label (int, -1 when undefined), ``index`` the position in the split, and ``landmarks``
``(L, 2)`` pixel coordinates in the ``S x S`` image (NaN where missing) for landmark regions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from region_attention import RegionBiasedLoss

from .models import BACKBONES, build_model, is_ran_output
from .subsets import SubsetList, match_subset_with_labels, parse_subset_arg, parse_subset_list

CHECKPOINT_FORMAT = "region-attention-example/1"

#: Training recipes. "paper": Sec. IV-B of the paper. "authors": the released FERPlus code.
#: Dataset scripts may override entries (e.g. AffectNet's authors' schedule); every value is a CLI option.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 0.01, "epochs": 40, "milestones": [15, 30], "gamma": 0.1, "margin": 0.02, "rb_weight": 1.0,
              "momentum": 0.9, "weight_decay": 1e-4, "variant": "paper", "whole_position": "first",
              "batch_size": 64, "region_batching": "joint"},
    "authors": {"lr": 0.1, "epochs": 60, "milestones": [18, 30, 48], "gamma": 0.1, "margin": 0.1, "rb_weight": 1.0,
                "momentum": 0.9, "weight_decay": 1e-4, "variant": "authors", "whole_position": "last",
                "batch_size": 128, "region_batching": "per_region"},
}

#: Configuration entries that must agree between a checkpoint and the run that resumes or reads it.
IDENTITY_KEYS = ("task", "model", "backbone", "image_size", "variant", "whole_position", "regions", "num_regions",
                 "label_mode", "class_names", "train_on_valid", "seed", "data_identity")


# ------------------------------------------------------------------------------------------------------------
# Tasks and configuration
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Task:
    """What a dataset script hands to the engine."""

    name: str
    class_names: tuple[str, ...]
    train: Dataset
    valid: Dataset | None
    test: Dataset
    test_keys: list[str]
    test_labels: Tensor
    #: classification loss ``(logits, targets) -> scalar`` for the training targets the datasets yield
    loss: Callable[[Tensor, Tensor], Tensor]
    #: counts after label processing etc., written into summary.json under "data"
    report: dict[str, Any] = field(default_factory=dict)
    #: dataset name for subset-list parsing ("ferplus", "affectnet", "rafdb")
    subset_dataset: str | None = None
    #: per-example sampling weights of the training set (oversampling), or None for uniform shuffling
    train_weights: Tensor | None = None
    #: per-class weights of the classification loss, or None
    class_weight: Tensor | None = None
    #: does the task provide landmarks (5th item element)?
    landmarks: bool = False
    #: extra entries for summary.json (e.g. which validation set was used)
    notes: dict[str, Any] = field(default_factory=dict)
    #: ``(name, path) -> SubsetList`` for ``--subset NAME=PATH``; default: ``parse_subset_list`` for
    #: ``subset_dataset`` (a dataset can find companion label files, or define its own list format)
    subset_parser: Callable[[str, Path], SubsetList] | None = None
    #: data options that must match when resuming (layout, image source, hold-out fraction, ...)
    identity: dict[str, Any] = field(default_factory=dict)


def add_engine_arguments(parser: argparse.ArgumentParser, *, recipes: dict[str, dict[str, Any]] | None = None) -> None:
    """The options every example script shares (the FERPlus script's command line)."""
    recipes = recipes or RECIPES
    g = parser.add_argument_group("training (defaults come from --recipe; every value can be overridden)")
    g.add_argument("--data-dir", type=Path, help="dataset folder in the provider's layout")
    g.add_argument("--output-dir", type=Path, help="where metrics, checkpoints, plots and summary.json go")
    g.add_argument("--recipe", choices=sorted(recipes), default="paper")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="per process")
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--milestones", type=int, nargs="*", help="epochs after which the lr is multiplied by --gamma")
    g.add_argument("--gamma", type=float)
    g.add_argument("--margin", type=float, help="region biased loss margin")
    g.add_argument("--rb-weight", type=float, help="weight of the region biased loss (1 = the paper's 1:1)")
    g.add_argument("--model", choices=["ran", "baseline"], default="ran",
                   help="RAN, or the backbone on the whole face alone (the paper's baseline)")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default="resnet18")
    g.add_argument("--pretrained", type=Path, help="backbone checkpoint file (e.g. MS-Celeb-1M ResNet-18)")
    g.add_argument("--variant", choices=["paper", "authors"], help="attention formulation")
    g.add_argument("--whole-position", choices=["first", "last"], help="where the whole face goes among regions")
    g.add_argument("--region-batching", choices=["joint", "per_region"],
                   help="one backbone call over all regions, or one per region type (BatchNorm statistics per type, "
                        "as the authors' code); default: joint for --recipe paper, per_region for authors")
    g.add_argument("--image-size", type=int, default=224)
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    g.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per rank")
    g.add_argument("--amp", action="store_true", help="mixed precision (bf16; fp16 + GradScaler on GPUs without bf16)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--subset", action="append", default=[], metavar="NAME=PATH",
                   help="evaluate the selected checkpoint on a published subset list (repeatable)")
    g.add_argument("--train-on-valid", action="store_true",
                   help="the paper's protocol: train on train + valid and report the last epoch")
    g.add_argument("--hflip", action="store_true",
                   help="random horizontal flips of the training faces, on the device (the authors used no "
                        "augmentation; off by default)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--eval-batch-size", type=int, default=None)
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The destinations of the options actually given in ``argv`` (argparse leaves pre-set attributes alone)."""
    unset = object()
    ns = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_args(argv, namespace=ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def resolve_config(args: argparse.Namespace, recipes: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Command-line values over the recipe's defaults, as a JSON-friendly dict."""
    recipes = recipes or RECIPES
    cfg = dict(recipes[args.recipe])
    for key, value in vars(args).items():
        if value is None and key in cfg:
            continue
        cfg[key] = str(value) if isinstance(value, Path) else value
    if cfg.get("output_dir") is None:
        raise SystemExit("error: --output-dir is required")
    for key in ("epochs", "batch_size"):
        if cfg[key] is None or cfg[key] < 1:
            raise SystemExit(f"error: --{key.replace('_', '-')} must be >= 1, got {cfg[key]}")
    cfg["milestones"] = sorted(int(m) for m in cfg["milestones"])
    return cfg


# ------------------------------------------------------------------------------------------------------------
# Distributed set-up
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device_arg: str | None) -> Runtime:
    """Single process, or the process group ``torchrun`` describes in the environment."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg is None:
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda requested but CUDA is not available")
        if world_size > 1 or device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size, local_rank)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(rt: Runtime, tensor: Tensor) -> Tensor:
    if rt.distributed:
        device = rt.device if rt.device.type == "cuda" else torch.device("cpu")
        t = tensor.to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to(tensor.device)
    return tensor


# ------------------------------------------------------------------------------------------------------------
# Sampling: deterministic per (seed, epoch), sharded across ranks, so a resumed run sees the same batches
# ------------------------------------------------------------------------------------------------------------


class EpochSampler(Sampler[int]):
    """Shuffled (or class-weighted, with replacement) indices for one rank, a pure function of (seed, epoch).

    With ``weights`` the epoch draws ``len(weights)`` indices with replacement in proportion to them
    (oversampling); otherwise a permutation. The list is padded to a multiple of the world size and
    split round-robin, as ``DistributedSampler`` does.
    """

    def __init__(self, size: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 weights: Tensor | None = None) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.shuffle, self.weights, self.epoch = shuffle, weights, 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights.double(), self.size, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        order = order.tolist()
        order += order[: self.per_rank * self.world_size - len(order)]
        return iter(order[self.rank :: self.world_size])


class ShardSampler(Sampler[int]):
    """Evaluation: rank r sees indices r, r + world, ...; no padding, so every image counts once."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


# ------------------------------------------------------------------------------------------------------------
# Checkpoints: atomic, loadable with torch.load(weights_only=True), resumable exactly
# ------------------------------------------------------------------------------------------------------------


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path} with torch.load(weights_only=True): {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of the region-attention examples (format {CHECKPOINT_FORMAT})")
    return ckpt


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's configuration and this run's, key by key (data options included)."""
    diffs = []
    for key in IDENTITY_KEYS:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}"
                      for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    return diffs


def lr_at(cfg: dict[str, Any], epoch: int) -> float:
    """Step schedule: ``lr * gamma ** (number of milestones <= epoch)`` (epochs counted from 0)."""
    return cfg["lr"] * cfg["gamma"] ** sum(1 for m in cfg["milestones"] if epoch >= m)


# ------------------------------------------------------------------------------------------------------------
# Training and evaluation
# ------------------------------------------------------------------------------------------------------------


def progress(iterable: Any, *, total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (images/s and ETA) on a terminal, silence elsewhere (logs, CI, non-zero ranks)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _unpack(batch: Sequence[Any], rt: Runtime) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    image, target, label, index = batch[:4]
    landmarks = batch[4].to(rt.device, non_blocking=True) if len(batch) > 4 else None
    image = image.to(rt.device, non_blocking=True)
    image = image.float().div_(255) if image.dtype == torch.uint8 else image.float()
    return image, target.to(rt.device, non_blocking=True), label, index, landmarks


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


def amp_context(cfg: dict[str, Any], rt: Runtime) -> contextlib.AbstractContextManager[Any]:
    if not cfg["amp"]:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=amp_dtype(rt))


def amp_dtype(rt: Runtime) -> torch.dtype:
    if rt.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, task: Task, rb: RegionBiasedLoss | None, cfg: dict[str, Any],
                    rt: Runtime, epoch: int) -> dict[str, float]:
    model.train()
    # Running sums stay on the device: no host synchronisation per step (the bar reads them every 20 steps).
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # total, classification, region biased, images
    start = time.perf_counter()
    steps = len(loader) if cfg.get("max_steps_per_epoch") is None else min(len(loader), cfg["max_steps_per_epoch"])
    bar = progress(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg['epochs']}", enabled=rt.is_main)
    for step, batch in enumerate(bar):
        if step >= steps:
            break
        image, target, _, _, landmarks = _unpack(batch, rt)
        if cfg.get("hflip"):
            image, landmarks = random_hflip(image, landmarks)
        with amp_context(cfg, rt):
            out = model(image, landmarks)
        cls = task.loss(out.logits.float(), target)
        if rb is not None and is_ran_output(out) and cfg["rb_weight"] > 0:
            rb_loss = rb(out.self_attention.gates, out.regions.mask).float()
        else:
            rb_loss = torch.zeros((), device=cls.device)
        loss = cls + cfg["rb_weight"] * rb_loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = image.shape[0]
        parts = torch.stack([loss.detach(), cls.detach(), rb_loss.detach()]).double() * n
        sums += torch.cat([parts, parts.new_tensor([n])])
        if hasattr(bar, "set_postfix") and step % 20 == 0:
            rate = float(sums[3]) * rt.world_size / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{float(sums[0] / sums[3]):.3f}", img_s=f"{rate:.0f}")
    elapsed = time.perf_counter() - start
    sums = all_reduce_sum(rt, sums).cpu()
    if not torch.isfinite(sums).all():
        raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1}: {sums[:3].tolist()}")
    images = max(float(sums[3]), 1.0)
    return {"train_loss": float(sums[0]) / images, "train_cls_loss": float(sums[1]) / images,
            "train_rb_loss": float(sums[2]) / images, "train_images": int(sums[3]),
            "train_images_per_s": float(sums[3]) / elapsed}


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, cfg: dict[str, Any], rt: Runtime,
            collect_attention: bool = False) -> dict[str, Tensor]:
    """Predictions for every image of ``dataset`` (gathered across ranks): ``pred`` (N,), ``probs`` (N, C)."""
    model.eval()
    n = len(dataset)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=cfg.get("eval_batch_size") or cfg["batch_size"],
                        sampler=ShardSampler(n, rt.rank, rt.world_size), num_workers=cfg["workers"],
                        pin_memory=rt.device.type == "cuda")
    probs: Tensor | None = None
    weights: Tensor | None = None
    for batch in progress(loader, total=len(loader), desc="evaluate", enabled=rt.is_main):
        image, _, _, index, landmarks = _unpack(batch, rt)
        with amp_context(cfg, rt):
            out = model(image, landmarks)
        p = torch.softmax(out.logits.float(), dim=-1).cpu().double()
        if probs is None:
            probs = torch.zeros(n, p.shape[1], dtype=torch.float64)
        probs[index] = p
        if collect_attention and is_ran_output(out):
            w = out.relation_attention.weights.float().cpu().double()
            if weights is None:
                weights = torch.zeros(n, w.shape[1], dtype=torch.float64)
            weights[index] = w
    if probs is None:  # this rank had no images; learn the class count from the others
        probs = torch.zeros(n, len(cfg["class_names"]), dtype=torch.float64)
    probs = all_reduce_sum(rt, probs)
    result = {"probs": probs.float(), "pred": probs.argmax(1)}
    if weights is not None:
        result["attention"] = all_reduce_sum(rt, weights).float()
    return result


def confusion(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    keep = labels >= 0
    flat = labels[keep] * num_classes + pred[keep]
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    total = int(cm.sum())
    correct = int(cm.diag().sum())
    per_class = {}
    present = []
    for i, name in enumerate(class_names):
        n = int(cm[i].sum())
        per_class[name] = None if n == 0 else float(cm[i, i]) / n
        if n:
            present.append(per_class[name])
    return {"images": total, "accuracy": correct / total if total else None,
            "mean_class_accuracy": sum(present) / len(present) if present else None,
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist()}


def evaluate(model: nn.Module, dataset: Dataset, labels: Tensor, cfg: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    out = predict(model, dataset, cfg, rt)
    cm = confusion(out["pred"], labels, len(cfg["class_names"]))
    return metrics_from_confusion(cm, cfg["class_names"])


# ------------------------------------------------------------------------------------------------------------
# The protocol
# ------------------------------------------------------------------------------------------------------------


def _log(rt: Runtime, message: str) -> None:
    if rt.is_main:
        print(message, flush=True)


def _class_histogram(labels: Tensor, class_names: Sequence[str]) -> dict[str, int]:
    counts = torch.bincount(labels[labels >= 0], minlength=len(class_names))
    return {name: int(c) for name, c in zip(class_names, counts, strict=True)}


def _parse_subsets(task: Task, specs: Sequence[str]) -> list[tuple[str, SubsetList]]:
    out = []
    for spec in specs:
        try:
            name, path = parse_subset_arg(spec)
        except argparse.ArgumentTypeError as err:
            raise SystemExit(f"error: --subset: {err}") from err
        if task.subset_parser is not None:
            out.append((name, task.subset_parser(name, path)))
        else:
            out.append((name, parse_subset_list(path, dataset=task.subset_dataset or task.name, name=name)))
    return out


def run(task: Task, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Train, select, test and report. Returns the summary on rank 0 (None elsewhere)."""
    rt = setup_runtime(cfg.get("device"))
    try:
        return _run(task, cfg, rt)
    finally:
        teardown_runtime(rt)


def _run(task: Task, cfg: dict[str, Any], rt: Runtime) -> dict[str, Any] | None:
    cfg = {**cfg, "task": task.name, "class_names": list(task.class_names), "world_size": rt.world_size,
           "device": str(rt.device), "data_identity": _jsonable(task.identity)}
    out_dir = Path(cfg["output_dir"])
    ckpt_dir = out_dir / "checkpoints"
    subsets = _parse_subsets(task, cfg.get("subset") or [])  # fail early on a bad list, before training
    if rt.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, default=str))

    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    model = build_model(cfg, len(task.class_names)).to(rt.device)
    if cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                weight_decay=cfg["weight_decay"])
    scaler = torch.amp.GradScaler(rt.device.type, enabled=bool(cfg["amp"]) and amp_dtype(rt) == torch.float16)
    rb = RegionBiasedLoss(cfg["margin"], whole_index=getattr(model, "whole_index", 0) or 0) \
        if cfg["model"] == "ran" else None

    start_epoch, best = 0, {"epoch": None, "accuracy": -1.0}
    history: list[dict[str, Any]] = []
    if cfg.get("resume"):
        ckpt = load_checkpoint_file(ckpt_dir / "last.pt")
        diffs = config_differences(ckpt["config"], cfg)
        if diffs:
            raise ValueError(f"{ckpt_dir / 'last.pt'} was written by another configuration: " + "; ".join(diffs))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best, history = ckpt["epoch"] + 1, dict(ckpt["best"]), list(ckpt["history"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        _log(rt, f"resumed from {ckpt_dir / 'last.pt'} after epoch {ckpt['epoch'] + 1}")
        if rt.is_main and (out_dir / "metrics.jsonl").exists():  # drop lines of epochs after the checkpoint
            lines = (out_dir / "metrics.jsonl").read_text().splitlines()
            kept = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= start_epoch]
            (out_dir / "metrics.jsonl").write_text("".join(ln + "\n" for ln in kept))

    train_model: nn.Module = model
    if rt.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if cfg.get("compile"):
        train_model = torch.compile(train_model)

    train_set: Dataset = task.train
    if cfg["train_on_valid"] and task.valid is not None:
        train_set = torch.utils.data.ConcatDataset([task.train, task.valid])
    weights = task.train_weights
    if weights is not None and cfg["train_on_valid"] and task.valid is not None:
        raise ValueError("--train-on-valid cannot be combined with a weighted training sampler")
    sampler = EpochSampler(len(train_set), seed=cfg["seed"], rank=rt.rank, world_size=rt.world_size,  # type: ignore[arg-type]
                           weights=weights)
    loader_gen = torch.Generator()
    loader = DataLoader(train_set, batch_size=cfg["batch_size"], sampler=sampler, num_workers=cfg["workers"],
                        pin_memory=rt.device.type == "cuda", drop_last=len(sampler) > cfg["batch_size"],
                        persistent_workers=False, generator=loader_gen)

    select_on_valid = task.valid is not None and not cfg["train_on_valid"]
    valid_labels = _labels_of(task.valid) if select_on_valid else None
    for epoch in range(start_epoch, cfg["epochs"]):
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sampler.set_epoch(epoch)
        # Everything random in an epoch (dropout, drawn targets, worker seeds) derives from (seed, epoch, rank),
        # so a run resumed from last.pt repeats exactly what the uninterrupted run did.
        torch.manual_seed(cfg["seed"] * 1_000_003 + epoch * 1009 + rt.rank)
        loader_gen.manual_seed(cfg["seed"] * 7919 + epoch)
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        record.update(train_one_epoch(train_model, loader, optimizer, scaler, task, rb, cfg, rt, epoch))
        if select_on_valid:
            val = evaluate(model, task.valid, valid_labels, cfg, rt)  # type: ignore[arg-type]
            record["valid_accuracy"] = val["accuracy"]
            record["valid_mean_class_accuracy"] = val["mean_class_accuracy"]
        history.append(record)
        improved = select_on_valid and record["valid_accuracy"] > best["accuracy"]
        if not select_on_valid or improved:
            best = {"epoch": epoch + 1, "accuracy": record.get("valid_accuracy", -1.0)}
        if rt.is_main:
            ckpt = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": {"milestones": cfg["milestones"], "gamma": cfg["gamma"], "last_epoch": epoch},
                    "scaler": scaler.state_dict(), "epoch": epoch, "best": best, "history": history,
                    "rng": rng_state(), "config": _jsonable(cfg), "class_names": list(task.class_names)}
            atomic_save(ckpt, ckpt_dir / "last.pt")
            if improved or not select_on_valid:
                atomic_save(ckpt, ckpt_dir / "best.pt")
            with open(out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            val_text = f", valid acc {record['valid_accuracy']:.4f}" if select_on_valid else ""
            _log(rt, f"epoch {epoch + 1}/{cfg['epochs']}: lr {lr:g}, loss {record['train_loss']:.4f} "
                     f"(cls {record['train_cls_loss']:.4f}, rb {record['train_rb_loss']:.4f}){val_text}, "
                     f"{record['train_images_per_s']:.0f} images/s")
        if rt.distributed:
            dist.barrier()

    # Test once, with the selected checkpoint.
    if rt.distributed:
        dist.barrier()
    selected = ckpt_dir / ("best.pt" if select_on_valid else "last.pt")
    ckpt = load_checkpoint_file(selected)
    model.load_state_dict(ckpt["model"])
    result = predict(model, task.test, cfg, rt, collect_attention=True)
    cm = confusion(result["pred"], task.test_labels, len(task.class_names))
    test = metrics_from_confusion(cm, task.class_names)
    subset_results = {}
    for name, subset in subsets:
        key_index = {k: i for i, k in enumerate(task.test_keys)}
        match = match_subset_with_labels(subset, key_index, task.test_labels.tolist())
        idx = torch.tensor(match.indices, dtype=torch.long)
        sub_cm = confusion(result["pred"][idx], task.test_labels[idx], len(task.class_names))
        entry = metrics_from_confusion(sub_cm, task.class_names)
        label_file = None if subset.label_path is None else str(subset.label_path)
        entry.update({"list": str(subset.path), "label_file": label_file, "format": subset.format,
                      "entries": len(subset.entries), "duplicates": subset.duplicates, "matched": len(match.indices),
                      "unmatched": len(match.unmatched), "unmatched_examples": match.unmatched[:10],
                      "label_disagreements": match.label_disagreements})
        by_kind = _accuracy_by_kind(subset, key_index, result["pred"], task.test_labels)
        if by_kind:
            entry["accuracy_by_type"] = by_kind
        subset_results[name] = entry
    if not rt.is_main:
        return None
    summary = {
        "task": task.name, "class_names": list(task.class_names),
        "protocol": ("trained on train+valid, last epoch reported (paper)" if cfg["train_on_valid"]
                     else "trained on train, best epoch selected on valid, test evaluated once"),
        "data": task.report,
        "class_histograms": {
            "train": _class_histogram(_labels_of(task.train), task.class_names),
            **({"valid": _class_histogram(valid_labels if valid_labels is not None else _labels_of(task.valid),
                                          task.class_names)} if task.valid is not None else {}),
            "test": _class_histogram(task.test_labels, task.class_names),
        },
        "selected_epoch": ckpt["epoch"] + 1, "selected_checkpoint": str(selected),
        "best_valid_accuracy": best["accuracy"] if select_on_valid else None,
        "test": test, "subsets": subset_results, "config": _jsonable(cfg), **task.notes,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    torch.save({"probs": result["probs"], "labels": task.test_labels, "keys": task.test_keys,
                **({"attention": result["attention"]} if "attention" in result else {})},
               out_dir / "test_predictions.pt")
    try:
        from .plots import plot_confusion_matrix, plot_curves

        plot_confusion_matrix(cm, task.class_names, out_dir / "confusion_matrix.png",
                              title=f"{task.name} test, {cfg['model']} (acc {test['accuracy']:.3f})")
        plot_curves(out_dir / "metrics.jsonl", out_dir / "training_curves.png")
    except ImportError as err:  # matplotlib is an examples extra
        print(f"warning: plots skipped ({err})", file=sys.stderr)
    print(f"test accuracy {test['accuracy']:.4f} (mean class {test['mean_class_accuracy']:.4f}) "
          f"with the checkpoint of epoch {ckpt['epoch'] + 1}")
    for name, entry in subset_results.items():
        acc = "n/a" if entry["accuracy"] is None else f"{entry['accuracy']:.4f}"
        print(f"  subset {name}: accuracy {acc} on {entry['matched']} images "
              f"({entry['unmatched']} list entries matched no test image, {entry['duplicates']} duplicates)")
    return summary


def _accuracy_by_kind(subset: SubsetList, key_index: dict[str, int], pred: Tensor, labels: Tensor) -> dict[str, Any]:
    """Accuracy per value of the list's extra column (the occlusion type of the occlusion lists)."""
    kinds: dict[str, list[int]] = {}
    for entry in subset.entries:
        if entry.kind is not None and entry.key in key_index:
            kinds.setdefault(str(entry.kind), []).append(key_index[entry.key])
    out = {}
    for kind, idx in sorted(kinds.items()):
        t = torch.tensor(idx)
        keep = labels[t] >= 0
        out[kind] = {"images": int(keep.sum()),
                     "accuracy": float((pred[t][keep] == labels[t][keep]).float().mean()) if keep.any() else None}
    return out


def _labels_of(dataset: Dataset | None) -> Tensor:
    if dataset is None:
        return torch.zeros(0, dtype=torch.long)
    labels = getattr(dataset, "labels", None)
    if callable(labels):
        return labels()
    if isinstance(labels, Tensor):
        return labels
    split = getattr(dataset, "split", None)
    if split is not None and hasattr(split, "labels"):
        return split.labels()
    raise TypeError(f"{type(dataset).__name__} must expose labels() or .labels for evaluation")


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(cfg, default=str))


__all__ = [
    "RECIPES",
    "EpochSampler",
    "Task",
    "add_engine_arguments",
    "atomic_save",
    "confusion",
    "explicit_options",
    "load_checkpoint_file",
    "metrics_from_confusion",
    "predict",
    "resolve_config",
    "run",
]
