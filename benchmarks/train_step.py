"""Training-step and inference benchmark of RegionAttentionNetwork against the authors' approach.

Run on our 2-core CPU (the defaults) or a GPU (``--device cuda``)::

    python benchmarks/train_step.py                 # full run, ~10 minutes on 2 cores
    python benchmarks/train_step.py --quick         # smoke run (small images, few repeats)
    python benchmarks/train_step.py --device cuda --amp bf16 --channels-last --loader-workers 8

What it measures (medians of interleaved runs; ResNet-18, 224 x 224, batch 16, paper regions + whole face):

1. a full training step (forward, loss, backward, SGD step) of ``RegionAttentionNetwork`` starting from
   the batch of face images, against the authors' approach: per image and region a PIL crop, resize and
   ``ToTensor``, then one backbone call per region and their head (softmax over sigmoid gates) with
   their loss. On CUDA with ``--loader-workers N`` the authors' PIL work runs in a ``DataLoader`` with N
   workers (as in their code) and the figure is images/s of the whole pipeline, fed from JPEG bytes.
2. the RAN overhead: our step divided by the best bare-backbone step (joint or per region) on the same
   pre-cropped region images, with a linear head on the mean feature and cross-entropy.
3. batch-1 inference latency of RAN against the backbone on the whole face alone, and the peak memory
   of both (CPU: peak resident set size of a fresh process; CUDA: peak allocated memory).
5. the one-pass model (``FeatureRegionAttentionNetwork``, regions pooled from the ResNet-18 ``layer3`` map,
   default ``roi_size`` 7 and split): batch-1 inference against the bare ResNet-18 on the whole face and the
   image-level RAN; a training step at ``--one-pass-batch-size`` (8) against the bare backbone's step on the
   whole faces and the image-level RAN with per-region batching; the peak memory of one training step of
   each (fresh processes); and (5d) batch-1 inference of the one-pass ResNet-18 split at ``layer3`` with
   ``roi_size`` 6 and 7 and at ``layer4`` with 7, beside the multiply-accumulates each counts
   (``torch.utils.flop_counter``), against the bare model. Only this part:
   ``--skip training inference memory pipeline timm``.
6. timm backbones at the image size (224 px): ConvNeXt-T and ViT-S/16 (``--timm-models``), split by
   ``timm_split`` at its default (the last stage or block: the head is the model's own final norm and pooling),
   in the one-pass model against the bare timm model with a linear classifier on the whole face: batch-1
   inference and a training step at ``--one-pass-batch-size``. Only this part:
   ``--skip training inference memory pipeline one-pass`` (needs timm).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from _common import interleaved_medians, machine_description, print_table, sync
from region_attention import FeatureRegionAttentionNetwork, RegionAttentionLoss, RegionAttentionNetwork, RegionCropper
from region_attention.backbones import resnet18, resnet18_split, timm_split

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: The paper's five regions as (left, top, right, bottom) fractions; the authors put the whole face last.
PAPER_BOXES = [
    (0, 0, 0.75, 0.75),
    (0.25, 0, 1, 0.75),
    (0.125, 0.25, 0.875, 1),
    (0.05, 0.05, 0.95, 0.95),
    (0.075, 0.075, 0.925, 0.925),
]


# ------------------------------------------------------------------------------------------------------
# The authors' approach, rebuilt from the description of their released code (not their code).
# ------------------------------------------------------------------------------------------------------


def pil_regions(image: PILImage, size: int) -> torch.Tensor:
    """Their data path for one face: a PIL crop + resize + ToTensor per region, whole face last."""
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    w, h = image.size
    tensors = []
    for left, top, right, bottom in PAPER_BOXES:
        box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
        tensors.append(to_tensor(image.crop(box).resize((size, size), Image.Resampling.BILINEAR)))
    tensors.append(to_tensor(image.resize((size, size), Image.Resampling.BILINEAR)))
    return torch.stack(tensors, dim=-1)  # (3, size, size, K), their layout


class AuthorsRAN(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.alpha = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(2 * dim, 1), nn.Sigmoid())
        self.fc = nn.Linear(2 * dim, num_classes)

    def forward(self, x5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [self.backbone(x5[..., i]) for i in range(x5.shape[-1])]  # one call per region
        alphas = torch.softmax(torch.cat([self.alpha(f) for f in feats], 1), dim=1)
        stacked = torch.stack(feats, 2)
        fm = (stacked * alphas.unsqueeze(1)).sum(2) / alphas.sum(1, keepdim=True)
        cat = torch.stack([torch.cat([f, fm], 1) for f in feats], 2)
        betas = torch.softmax(torch.cat([self.beta(cat[..., i]) for i in range(cat.shape[-1])], 1), dim=1)
        w = alphas * betas
        return self.fc((cat * w.unsqueeze(1)).sum(2) / w.sum(1, keepdim=True)), alphas


def authors_loss(
    logits: torch.Tensor, alphas: torch.Tensor, target: torch.Tensor, margin: float = 0.02
) -> torch.Tensor:
    ce = F.cross_entropy(logits, target)
    best_crop, whole = alphas[:, :-1].max(1).values, alphas[:, -1]
    rb = F.margin_ranking_loss(best_crop, whole, torch.ones_like(whole), margin=margin)
    return ce + rb


class JpegFaces(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Faces stored as JPEG bytes; ``mode="authors"`` returns their region stack, ``"ours"`` one tensor."""

    def __init__(self, jpegs: list[bytes], size: int, mode: str) -> None:
        self.jpegs, self.size, self.mode = jpegs, size, mode

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        image = Image.open(io.BytesIO(self.jpegs[i])).convert("RGB")
        if self.mode == "authors":
            return pil_regions(image, self.size), 0
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return pil_to_tensor(image), 0  # uint8; converted and cropped on the device


def make_faces(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, list[PILImage], list[bytes]]:
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    # smooth random images compress like photographs rather than like noise
    small = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    images = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    pils = [Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()) for img in images]
    jpegs = []
    for p in pils:
        buf = io.BytesIO()
        p.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    return images, pils, jpegs


# ------------------------------------------------------------------------------------------------------


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)


def autocast(device: torch.device, amp: str | None) -> torch.autocast:
    if amp is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def run_training(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    size, bsz = args.image_size, args.batch_size
    images, pils, _ = make_faces(bsz, size)
    target = torch.randint(0, 8, (bsz,), generator=torch.Generator().manual_seed(1)).to(device)
    images = images.to(device)
    cropper = RegionCropper(size)
    k = 6

    models = {}
    for batching in ("joint", "per_region"):
        torch.manual_seed(0)
        m = RegionAttentionNetwork(resnet18(), 512, 8, cropper=cropper, region_batching=batching).to(device)
        models[batching] = (m, sgd(m), RegionAttentionLoss(0.02, whole_index=m.whole_index))
    torch.manual_seed(0)
    theirs = AuthorsRAN(resnet18(), 512, 8).to(device)
    their_opt = sgd(theirs)
    with torch.no_grad():
        crops = cropper(images).crops  # pre-cropped region images for the bare backbone
    assert crops is not None  # RegionCropper always crops
    bare = resnet18().to(device)
    bare_head = nn.Linear(512, 8).to(device)
    bare_opt = torch.optim.SGD([*bare.parameters(), *bare_head.parameters()], lr=1e-3, momentum=0.9)

    def ours(batching: str) -> Callable[[], None]:
        model, opt, crit = models[batching]

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = model(images)
            crit(out, target).total.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            opt.step()

        return step

    def authors() -> None:
        x5 = torch.stack([pil_regions(p, size) for p in pils]).to(device)
        their_opt.zero_grad(set_to_none=True)
        logits, alphas = theirs(x5)
        authors_loss(logits, alphas, target).backward()  # type: ignore[no-untyped-call]  # torch: backward unannotated
        their_opt.step()

    def bare_step(batching: str) -> Callable[[], None]:
        def step() -> None:
            bare_opt.zero_grad(set_to_none=True)
            if batching == "joint":
                feats = bare(crops.flatten(0, 1)).unflatten(0, (bsz, k))
            else:
                feats = torch.stack([bare(crops[:, i]) for i in range(k)], 1)
            F.cross_entropy(bare_head(feats.mean(1)), target).backward()  # type: ignore[no-untyped-call]  # torch
            bare_opt.step()

        return step

    fns = {
        "RAN, region_batching='joint'": ours("joint"),
        "RAN, region_batching='per_region'": ours("per_region"),
        "authors (PIL crops + per-region calls)": authors,
        "bare backbone, joint (pre-cropped)": bare_step("joint"),
        "bare backbone, per region (pre-cropped)": bare_step("per_region"),
    }
    return interleaved_medians(fns, args.repeats, args.warmup, device)


def run_inference(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    size = args.image_size
    image = torch.rand(1, 3, size, size, device=device)
    results = {}
    fns: dict[str, Callable[[], object]] = {}
    for batching in ("joint", "per_region"):
        torch.manual_seed(0)
        m = RegionAttentionNetwork(resnet18(), 512, 8, cropper=RegionCropper(size), region_batching=batching)
        m = m.to(device).eval()
        fns[f"RAN batch-1, {batching}"] = functools.partial(m, image)
    backbone = resnet18().to(device).eval()
    fns["backbone on the whole face"] = lambda: backbone(image)
    with torch.inference_mode():
        results = interleaved_medians(fns, args.repeats * 4, args.warmup * 2, device)
    return results


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> int:
    """Reset the peak to the current RSS where Linux allows it (writing 5 to clear_refs), and return it.

    ru_maxrss alone would carry the parent's peak across fork/exec and hide what inference adds."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _peak_rss()


def memory_child(which: str, size: int, device_name: str) -> None:
    device = torch.device(device_name)
    image = torch.rand(1, 3, size, size, device=device)
    if which == "backbone":
        model: nn.Module = resnet18().to(device).eval()
    else:
        model = RegionAttentionNetwork(resnet18(), 512, 8, cropper=RegionCropper(size), region_batching=which)
        model = model.to(device).eval()
    if device.type == "cuda":
        with torch.inference_mode():
            model(image)  # warm-up: cuDNN, lazy initialisation; the peak below counts one forward's allocations
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _reset_peak_rss()
    with torch.inference_mode():
        model(image)
    total = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss()
    peak = total - base
    print(json.dumps({"peak_bytes": total, "increase_bytes": peak}))


def run_memory(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    out = {}
    for which in ("backbone", "joint", "per_region"):
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--_memory-child",
                which,
                "--image-size",
                str(args.image_size),
                "--device",
                args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        out[which] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------------------------------------------
# 5. The one-pass model against the bare backbone and the image-level RAN.
# ------------------------------------------------------------------------------------------------------

ONE_PASS_MODELS = ("one-pass", "bare", "image-level")


def one_pass_model(which: str, size: int, device: torch.device, channels_last: bool = False) -> nn.Module:
    """``one-pass``: FeatureRegionAttentionNetwork on resnet18_split() (layer3, roi_size 7); ``bare``: ResNet-18
    and a linear classifier on the whole face; ``image-level``: RegionAttentionNetwork, per-region batching."""
    torch.manual_seed(0)
    cropper = RegionCropper(size)
    if which == "one-pass":
        trunk, head = resnet18_split("layer3")
        model: nn.Module = FeatureRegionAttentionNetwork(
            trunk, head, 512, 8, cropper=cropper, channels_last=channels_last
        )
    elif which == "bare":
        model = nn.Sequential(resnet18(), nn.Linear(512, 8))
    else:
        model = RegionAttentionNetwork(
            resnet18(), 512, 8, cropper=cropper, region_batching="per_region", channels_last=channels_last
        )
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def one_pass_step(
    which: str, model: nn.Module, device: torch.device, amp: str | None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step (forward, loss, backward, SGD step) of ``model`` as a closure over a fixed batch."""
    opt = sgd(model)
    crit = RegionAttentionLoss(0.02, whole_index=0)

    def step(images: torch.Tensor, target: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = model(images)
            loss = F.cross_entropy(out, target) if which == "bare" else crit(out, target).total
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
        opt.step()

    return step


def run_one_pass(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    size, bsz = args.image_size, args.one_pass_batch_size
    cl = args.channels_last
    gen = torch.Generator().manual_seed(0)
    models = {which: one_pass_model(which, size, device, cl) for which in ONE_PASS_MODELS}

    image = torch.rand(1, 3, size, size, generator=gen).to(device)
    for m in models.values():
        m.eval()
    infer = {which: functools.partial(m, image) for which, m in models.items()}
    with torch.inference_mode(), autocast(device, args.amp):
        inference = interleaved_medians(infer, args.repeats * 4, args.warmup * 2, device)

    images = torch.rand(bsz, 3, size, size, generator=gen).to(device)
    target = torch.randint(0, 8, (bsz,), generator=gen).to(device)
    for m in models.values():
        m.train()
    steps = {which: one_pass_step(which, m, device, args.amp) for which, m in models.items()}
    training = interleaved_medians(
        {which: functools.partial(s, images, target) for which, s in steps.items()}, args.repeats, args.warmup, device
    )
    return {"inference_s": inference, "training_step_s": training}


def one_pass_memory_child(which: str, size: int, bsz: int, device_name: str, amp: str | None, cl: bool) -> None:
    """Peak memory of a training step of ``which`` in this fresh process.

    CUDA: peak allocated memory of the second step over what is allocated before it (activations, gradients).
    CPU: peak resident set over the loaded model during the first two steps; the CPU allocator keeps freed
    memory, so a warm-up step would hide the activations. It includes the optimizer's momentum buffers, about
    the same for the three models (each holds one ResNet-18)."""
    device = torch.device(device_name)
    model = one_pass_model(which, size, device, cl).train()
    step = one_pass_step(which, model, device, amp)
    images = torch.rand(bsz, 3, size, size, device=device)
    target = torch.zeros(bsz, dtype=torch.long, device=device)
    if device.type == "cuda":
        step(images, target)  # warm-up: lazy initialisation, cuDNN, optimizer state
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _reset_peak_rss()
        step(images, target)
    step(images, target)
    sync(device)
    total = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss()
    print(json.dumps({"peak_bytes": total, "increase_bytes": total - base}))


def run_one_pass_memory(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    out = {}
    for which in ONE_PASS_MODELS:
        cmd = [
            sys.executable,
            __file__,
            "--_one-pass-memory-child",
            which,
            "--image-size",
            str(args.image_size),
            "--one-pass-batch-size",
            str(args.one_pass_batch_size),
            "--device",
            args.device,
        ]
        cmd += ["--amp", args.amp] if args.amp else []
        cmd += ["--channels-last"] if args.channels_last else []
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        out[which] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def report_one_pass(args: argparse.Namespace, device: torch.device, figures: dict[str, object]) -> None:
    res = run_one_pass(args, device)
    mem = run_one_pass_memory(args)
    res["training_step_memory"] = mem  # type: ignore[assignment]
    figures["one_pass"] = res
    names = {
        "one-pass": "one-pass RAN (layer3 map, roi_size 7)",
        "bare": "bare ResNet-18 on the whole face",
        "image-level": "image-level RAN (per-region batching)",
    }
    t = res["inference_s"]
    rows = [
        [names[w], f"{t[w] * 1000:.1f}", f"{t[w] / t['bare']:.2f}x", f"{t['image-level'] / t[w]:.2f}x"]
        for w in ONE_PASS_MODELS
    ]
    print_table("5a. one-pass model: batch-1 inference", ["model", "ms", "vs bare", "image-level / this"], rows)
    s = res["training_step_s"]
    bsz = args.one_pass_batch_size
    rows = [
        [
            names[w],
            f"{s[w] * 1000:.0f}",
            f"{bsz / s[w]:.1f}",
            f"{s[w] / s['bare']:.2f}x",
            f"{s['image-level'] / s[w]:.2f}x",
        ]
        for w in ONE_PASS_MODELS
    ]
    print_table(
        f"5b. one-pass model: training step, batch {bsz}",
        ["model", "ms/step", "images/s", "vs bare", "image-level / this"],
        rows,
    )
    rows = [
        [
            names[w],
            f"{mem[w]['peak_bytes'] / 2**20:.0f}",
            f"{mem[w]['increase_bytes'] / 2**20:.0f}",
            f"{mem[w]['increase_bytes'] / max(mem['image-level']['increase_bytes'], 1):.2f}",
        ]
        for w in ONE_PASS_MODELS
    ]
    print_table(
        f"5c. one-pass model: peak memory of a training step, batch {bsz} (MiB)",
        ["model", "peak", "increase during the step", "vs image-level"],
        rows,
    )
    sweep = run_one_pass_sweep(args, device)
    figures["one_pass_sweep"] = sweep
    print_table(
        "5d. one-pass ResNet-18 by split and roi_size: batch-1 inference against the bare model",
        ["split/roi_size", "GMAC", "GMAC vs bare", "ms", "time vs bare"],
        sweep,
    )
    print(f"one-pass inference / bare backbone: {t['one-pass'] / t['bare']:.2f}x (target <= 1.3)")
    print(f"one-pass step / bare step: {s['one-pass'] / s['bare']:.2f}x (target <= 1.4)")
    print(f"image-level step / one-pass step: {s['image-level'] / s['one-pass']:.2f}x (target >= 3)")


#: Part 5d: (split point, roi_size) of the one-pass ResNet-18 against the bare model, batch-1 inference.
ONE_PASS_SWEEP = (("layer3", 6), ("layer3", 7), ("layer4", 7))


def forward_gmac(model: nn.Module, image: torch.Tensor) -> float:
    """Multiply-accumulates (GMAC) of one forward pass of ``model`` on ``image``, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; two FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(image)
    return counter.get_total_flops() / 2e9


def run_one_pass_sweep(args: argparse.Namespace, device: torch.device) -> list[list[str]]:
    """5d: batch-1 inference of the one-pass ResNet-18 at each (split, roi_size) of :data:`ONE_PASS_SWEEP`
    against the bare model, measured time beside the ratio of counted multiply-accumulates: the head runs once
    per region on ``roi_size`` cells, so the arithmetic sets a floor under the time ratio that no faster
    region pooling can beat."""
    size = args.image_size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"bare": nn.Sequential(resnet18(), nn.Linear(512, 8))}
    for at, roi in ONE_PASS_SWEEP:
        trunk, head = resnet18_split(at)
        models[f"{at}/{roi}"] = FeatureRegionAttentionNetwork(
            trunk, head, 512, 8, cropper=RegionCropper(size), roi_size=roi
        )
    for m in models.values():
        m.to(device).eval()
    gmac = {name: forward_gmac(m, image) for name, m in models.items()}
    infer = {name: functools.partial(m, image) for name, m in models.items()}
    with torch.inference_mode(), autocast(device, args.amp):
        t = interleaved_medians(infer, args.repeats * 4, args.warmup * 2, device)
    return [
        [
            name,
            f"{gmac[name]:.3f}",
            f"{gmac[name] / gmac['bare']:.2f}x",
            f"{t[name] * 1000:.1f}",
            f"{t[name] / t['bare']:.2f}x",
        ]
        for name in models
    ]


# ------------------------------------------------------------------------------------------------------
# 6. timm backbones: the one-pass model against the bare timm model.
# ------------------------------------------------------------------------------------------------------

#: Row label -> timm model name of part 6.
TIMM_MODELS = {"convnext_tiny": "ConvNeXt-T", "vit_small_patch16_224": "ViT-S/16"}


def timm_pair(
    name: str, size: int, device: torch.device, channels_last: bool = False, at: int | None = None
) -> dict[str, nn.Module]:
    """``one-pass``: FeatureRegionAttentionNetwork on ``timm_split(model, at)`` (default: the last; roi_size 7);
    ``bare``: the same timm model (no classifier) and a linear classifier on the whole face. Random weights."""
    import timm

    def create() -> nn.Module:
        torch.manual_seed(0)
        kwargs: dict[str, Any] = {"img_size": size} if "vit" in name else {}
        model: nn.Module = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        return model

    backbone = create()
    dim: Any = backbone.num_features
    bare: nn.Module = nn.Sequential(backbone, nn.Linear(int(dim), 8))
    trunk, head = timm_split(create(), at)
    one: nn.Module = FeatureRegionAttentionNetwork(
        trunk, head, num_classes=8, cropper=RegionCropper(size), channels_last=channels_last
    )
    models = {"one-pass": one.to(device), "bare": bare.to(device)}
    if channels_last:
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    return models


def run_timm(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, dict[str, float]]]:
    size, bsz = args.image_size, args.one_pass_batch_size
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=gen).to(device)
    images = torch.rand(bsz, 3, size, size, generator=gen).to(device)
    target = torch.randint(0, 8, (bsz,), generator=gen).to(device)
    out: dict[str, dict[str, dict[str, float]]] = {}
    splits = args.timm_split_at or [None] * len(args.timm_models)
    if len(splits) != len(args.timm_models):
        raise SystemExit(f"--timm-split-at: one index per --timm-models entry ({len(args.timm_models)}), got {splits}")
    for name, at in zip(args.timm_models, splits, strict=True):
        models = timm_pair(name, size, device, args.channels_last, at)
        for m in models.values():
            m.eval()
        infer: dict[str, Callable[[], object]] = {which: functools.partial(m, image) for which, m in models.items()}
        with torch.inference_mode(), autocast(device, args.amp):
            inference = interleaved_medians(infer, args.repeats * 4, args.warmup * 2, device)
        for m in models.values():
            m.train()
        steps: dict[str, Callable[[], object]] = {
            which: functools.partial(one_pass_step(which, m, device, args.amp), images, target)
            for which, m in models.items()
        }
        training = interleaved_medians(steps, args.repeats, args.warmup, device)
        out[name] = {"inference_s": inference, "training_step_s": training}
        del models, steps
    return out


def report_timm(args: argparse.Namespace, device: torch.device, figures: dict[str, object]) -> None:
    res = run_timm(args, device)
    figures["timm"] = res
    rows = []
    for name, r in res.items():
        t, s = r["inference_s"], r["training_step_s"]
        label = TIMM_MODELS.get(name, name)
        rows.append(
            [
                label,
                f"{t['bare'] * 1000:.1f}",
                f"{t['one-pass'] * 1000:.1f}",
                f"{t['one-pass'] / t['bare']:.2f}x",
                f"{s['bare'] * 1000:.0f}",
                f"{s['one-pass'] * 1000:.0f}",
                f"{s['one-pass'] / s['bare']:.2f}x",
            ]
        )
    print_table(
        f"6. timm backbones at {args.image_size}px, split at {args.timm_split_at or 'the last'} (batch-1 inference; "
        "training step, batch "
        f"{args.one_pass_batch_size})",
        ["backbone", "bare ms", "one-pass ms", "ratio", "bare ms/step", "one-pass ms/step", "ratio"],
        rows,
    )
    for name, r in res.items():
        t = r["inference_s"]
        print(
            f"{TIMM_MODELS.get(name, name)} one-pass inference / bare: {t['one-pass'] / t['bare']:.2f}x (target <= 1.3)"
        )


def _pipeline_epoch(
    name: str,
    loader: torch.utils.data.DataLoader[tuple[torch.Tensor, int]],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    crit: RegionAttentionLoss | None,
    target: torch.Tensor,
    device: torch.device,
    amp: str | None,
    limit: int | None = None,
) -> int:
    seen = 0
    for i, (x, _) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        x = x.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        if name == "authors":  # their loop: fp32, PIL regions from the loader, one backbone call per region
            logits, alphas = model(x)
            authors_loss(logits, alphas, target).backward()  # type: ignore[no-untyped-call]  # torch: unannotated
            opt.step()
        else:
            assert crit is not None  # our loop always has its loss
            x = x.float().div_(255)
            with autocast(device, amp):
                loss = crit(model(x), target).total
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            scaler.step(opt)
            scaler.update()
        seen += x.shape[0]
    return seen


def run_gpu_pipeline(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Images/s of whole training pipelines on a GPU: the authors' (DataLoader with PIL regions, per-region
    calls, fp32) against ours (DataLoader of uint8 faces, cropping on the GPU, autocast, channels-last)."""
    import time

    size, bsz = args.image_size, args.batch_size
    n = bsz * args.gpu_batches
    _, _, jpegs = make_faces(min(n, 256), size)
    jpegs = (jpegs * (n // len(jpegs) + 1))[:n]
    results = {}
    for name in ("authors", "ours"):
        loader = torch.utils.data.DataLoader(
            JpegFaces(jpegs, size, name),
            batch_size=bsz,
            num_workers=args.loader_workers,
            pin_memory=True,
            persistent_workers=args.loader_workers > 0,
            drop_last=True,
        )
        torch.manual_seed(0)
        if name == "authors":
            model: nn.Module = AuthorsRAN(resnet18(), 512, 8).to(device)
        else:
            model = RegionAttentionNetwork(
                resnet18(),
                512,
                8,
                cropper=RegionCropper(size),
                region_batching=args.region_batching,
                channels_last=args.channels_last,
            )
            model = model.to(device)
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last)
            crit = RegionAttentionLoss(0.02)
        opt = sgd(model)
        scaler = torch.amp.GradScaler(enabled=args.amp == "fp16")
        target = torch.zeros(bsz, dtype=torch.long, device=device)

        run = (name, loader, model, opt, scaler, None if name == "authors" else crit, target, device, args.amp)
        _pipeline_epoch(*run, limit=3)  # warm-up: workers, cuDNN autotuning
        sync(device)
        start = time.perf_counter()
        seen = _pipeline_epoch(*run)
        sync(device)
        results[name] = seen / (time.perf_counter() - start)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small images and few repeats, for a smoke test")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["training", "inference", "memory", "pipeline", "one-pass", "timm"]
    )
    parser.add_argument(
        "--timm-models",
        nargs="*",
        default=list(TIMM_MODELS),
        metavar="NAME",
        help="timm models of part 6 (default: %(default)s)",
    )
    parser.add_argument(
        "--timm-split-at",
        nargs="*",
        type=int,
        default=None,
        metavar="AT",
        help="part 6: timm_split index per --timm-models entry (default: the last of each)",
    )
    parser.add_argument("--one-pass-batch-size", type=int, default=8, help="training batch of part 5")
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="autocast for our GPU pipeline")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--region-batching", default="joint", choices=["joint", "per_region"])
    parser.add_argument("--loader-workers", type=int, default=8)
    parser.add_argument("--gpu-batches", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_one-pass-memory-child", dest="one_pass_memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.image_size, args.device)
        return
    if args.one_pass_memory_child:
        one_pass_memory_child(
            args.one_pass_memory_child,
            args.image_size,
            args.one_pass_batch_size,
            args.device,
            args.amp,
            args.channels_last,
        )
        return
    if args.quick:
        args.image_size, args.batch_size, args.repeats, args.warmup, args.gpu_batches = 64, 4, 2, 1, 4
        args.one_pass_batch_size = 2
    device = torch.device(args.device)
    figures: dict[str, object] = {
        "machine": machine_description(device),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
    }
    print(f"# {figures['machine']}; ResNet-18, {args.image_size}px, batch {args.batch_size}, 5 regions + whole face")

    if "training" not in args.skip:
        t = run_training(args, device)
        figures["training_step_s"] = t
        ours = min(t["RAN, region_batching='joint'"], t["RAN, region_batching='per_region'"])
        bare = min(t["bare backbone, joint (pre-cropped)"], t["bare backbone, per region (pre-cropped)"])
        theirs = t["authors (PIL crops + per-region calls)"]
        rows = [[name, f"{s * 1000:.0f}", f"{args.batch_size / s:.1f}"] for name, s in t.items()]
        print_table("1-2. training step (median of interleaved runs)", ["path", "ms/step", "images/s"], rows)
        figures["authors_over_ours"] = theirs / ours
        overhead = {b: t[f"RAN, region_batching='{b}'"] / bare for b in ("joint", "per_region")}
        figures["ran_overhead"] = overhead
        print(f"authors' step / our best step: {theirs / ours:.2f}x (target >= 1: not slower)")
        for b, v in overhead.items():
            print(f"RAN overhead, {b}: our step / best bare-backbone step = {v:.3f} (target <= 1.05)")

    if "inference" not in args.skip:
        t = run_inference(args, device)
        figures["inference_s"] = t
        base = t["backbone on the whole face"]
        rows = [[name, f"{s * 1000:.1f}", f"{s / base:.2f}x"] for name, s in t.items()]
        print_table("3. batch-1 inference latency", ["path", "ms", "vs backbone"], rows)

    if "memory" not in args.skip:
        mem = run_memory(args)
        figures["memory"] = mem
        rows = [[k, f"{v['peak_bytes'] / 2**20:.0f}", f"{v['increase_bytes'] / 2**20:.0f}"] for k, v in mem.items()]
        print_table("3. batch-1 inference peak memory (MiB)", ["model", "peak", "increase over the loaded model"], rows)

    if device.type == "cuda" and "pipeline" not in args.skip:
        ips = run_gpu_pipeline(args, device)
        figures["gpu_pipeline_images_per_s"] = ips
        print_table(
            f"4. GPU training pipeline from JPEG ({args.loader_workers} loader workers)",
            ["pipeline", "images/s"],
            [
                ["authors: PIL regions in the DataLoader, fp32", f"{ips['authors']:.0f}"],
                [f"ours: crop on GPU, amp={args.amp}, channels_last={args.channels_last}", f"{ips['ours']:.0f}"],
            ],
        )
        print(f"ours / authors: {ips['ours'] / ips['authors']:.2f}x (target >= 3)")

    if "one-pass" not in args.skip:
        report_one_pass(args, device, figures)

    if "timm" not in args.skip and args.timm_models:
        report_timm(args, device, figures)

    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
