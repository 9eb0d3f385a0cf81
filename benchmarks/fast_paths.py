"""Does each fast path of the library earn its place? Each one against the plain path, in the same run.

    python benchmarks/fast_paths.py            # CPU, one thread, ~5 minutes on a shared 2-core machine
    python benchmarks/fast_paths.py --quick    # smoke run

Issue 21's rule: a fast path stays only where it is at least 1.25x faster than the plain path on the
platform where it runs. The plain paths are the ones the tests compare against:

- cropping: ``_crop_dense`` (dense interpolation matrices and two batched products: any device, autograd,
  ``torch.compile``); the candidates were the banded CPU path for shared host boxes (``_crop_host_boxes``)
  and the two-tap gather path for boxes without gradients (``_crop_taps``), each with and without the
  ``madvise(MADV_HUGEPAGE)`` advice of ``_hugepages.empty_cpu``;
- gated pool: the plain expression ``w(tanh(V x) * sigmoid(U x))`` under autograd; the candidate was the
  hand-written autograd Function ``_GatedScores`` (eager CPU/CUDA, which also scores only present rows on
  the CPU).

Every case is timed round-robin (each variant in turn, ``--repeats`` times, medians reported), so drift on a
shared machine hits all variants alike. Variants that the library no longer has are skipped: the figures
that decided their removal are in ``benchmarks/results/fast_paths.txt`` with the commit they were measured at.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, print_table
from region_attention import GatedAttentionPool, pad_bags
from region_attention.functional import BOX_PRESETS, random_boxes
from region_attention.functional import crop as crop_mod
from region_attention.functional import gated as gated_mod

CPU = torch.device("cpu")


def _ratio_rows(times: dict[str, float], plain: str) -> list[list[str]]:
    return [[name, f"{1e3 * t:.1f}", f"{times[plain] / t:.2f}"] for name, t in times.items()]


def crop_cases(batch: int, size: int, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=gen)
    images_u8 = (images * 255).to(torch.uint8)
    unit = torch.tensor(BOX_PRESETS["paper"])
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    fixed = torch.cat([whole, unit]) * size  # (K, 4) pixels, shared by the batch
    host = tuple((float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in fixed.tolist())
    per_image = torch.cat([whole.expand(batch, 1, 4), random_boxes(batch, 5, generator=gen)], dim=1) * size
    out = (size, size)
    # the advice, removed in issue 21: a module the library may no longer have, so untyped here
    hp: Any = sys.modules.get("region_attention.functional._hugepages")
    advice = ", huge-page advice" if hp is not None else ""

    def with_advice(fn: Callable[[], object], advise: bool) -> Callable[[], object]:
        def run() -> object:
            if hp is not None:
                hp.ADVISE = advise
            try:
                return fn()
            finally:
                if hp is not None:
                    hp.ADVISE = True

        return run

    for label, imgs in (("float32", images), ("uint8", images_u8)):
        fns: dict[str, Callable[[], object]] = {
            "plain: _crop_dense": partial(crop_mod._crop_dense, imgs, fixed, out, False, torch.float32, True)
        }
        if hasattr(crop_mod, "_crop_host_boxes"):
            fns[f"_crop_host_boxes (banded){advice}"] = with_advice(
                partial(crop_mod._crop_host_boxes, imgs, host, out, False, torch.float32, True), True
            )
            if hp is not None:
                fns["_crop_host_boxes (banded), no advice"] = with_advice(
                    partial(crop_mod._crop_host_boxes, imgs, host, out, False, torch.float32, True), False
                )
        if hasattr(crop_mod, "_crop_taps"):
            fns[f"_crop_taps (two taps){advice}"] = with_advice(
                partial(crop_mod._crop_taps, imgs, fixed, out, torch.float32, True), True
            )
            if hp is not None:
                fns["_crop_taps (two taps), no advice"] = with_advice(
                    partial(crop_mod._crop_taps, imgs, fixed, out, torch.float32, True), False
                )
        with torch.no_grad():
            times = interleaved_medians(fns, repeats, 1, CPU)
        print_table(
            f"crop, fixed boxes shared by the batch, {label} images {batch}x3x{size}x{size}, K=6, no grad",
            ["path", "ms", "x plain"],
            _ratio_rows(times, "plain: _crop_dense"),
        )
    fns = {"plain: _crop_dense": lambda: crop_mod._crop_dense(images, per_image, out, False, torch.float32, True)}
    if hasattr(crop_mod, "_crop_taps"):
        fns[f"_crop_taps (two taps){advice}"] = with_advice(
            lambda: crop_mod._crop_taps(images, per_image, out, torch.float32, True), True
        )
        if hp is not None:
            fns["_crop_taps (two taps), no advice"] = with_advice(
                lambda: crop_mod._crop_taps(images, per_image, out, torch.float32, True), False
            )
    with torch.no_grad():
        times = interleaved_medians(fns, repeats, 1, CPU)
    print_table(
        f"crop, per-image random boxes, float32 images {batch}x3x{size}x{size}, K=6, no grad",
        ["path", "ms", "x plain"],
        _ratio_rows(times, "plain: _crop_dense"),
    )


def gated_cases(quick: bool, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    dim = 512
    torch.manual_seed(0)
    pool = GatedAttentionPool(dim, 128)
    cases: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    n = 512 if quick else 4096
    cases[f"8 bags x {n} instances, no mask"] = (torch.randn(8, n, dim, generator=gen), None)
    sizes = torch.randint(16 if quick else 19, (128 if quick else 1023) + 1, (64,), generator=gen).tolist()
    ragged, present = pad_bags([torch.randn(s, dim, generator=gen) for s in sizes])
    cases[f"64 ragged bags, {100 * sum(sizes) / present.numel():.0f} % present"] = (ragged, present)
    has_fused = hasattr(gated_mod, "_use_fused")

    def step(x: torch.Tensor, mask: torch.Tensor | None, fused: bool) -> Callable[[], object]:
        """One forward and backward pass: with ``fused=False`` through the plain path (every row scored by the
        autograd expression), else through the library's own dispatch."""
        plain = {"_use_fused": lambda x: False} if has_fused else {"_present": lambda x, m: None}

        def run() -> object:
            saved = {name: getattr(gated_mod, name) for name in plain}
            if not fused:
                for name, fn in plain.items():
                    setattr(gated_mod, name, fn)
            try:
                pool.zero_grad(set_to_none=True)
                out = pool(x, mask)
                out.pooled.sum().backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
                return out
            finally:
                for name, fn in saved.items():
                    setattr(gated_mod, name, fn)

        return run

    def present_rows(x: torch.Tensor, mask: torch.Tensor) -> Callable[[], object]:
        """The plain expression on the present rows only (index_select under autograd), scattered back."""

        def run() -> object:
            pool.zero_grad(set_to_none=True)
            flat = x.reshape(-1, x.shape[-1])
            keep = mask.reshape(-1).nonzero().squeeze(1)
            xs = flat.index_select(0, keep)
            assert pool.U is not None
            s = pool.w(torch.tanh(pool.V(xs)) * torch.sigmoid(pool.U(xs)))
            scores = flat.new_full((flat.shape[0], 1), float("-inf")).index_copy(0, keep, s)
            weights = torch.softmax(scores.view(x.shape[0], x.shape[1], 1), dim=1)
            pooled = torch.bmm(weights.transpose(1, 2), x).squeeze(1)
            pooled.sum().backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            return pooled

        return run

    for label, (x, mask) in cases.items():
        fns = {"plain: autograd expression": step(x, mask, False)}
        if has_fused:  # the decision run: the Function against scoring the present rows with plain autograd
            if mask is not None:
                fns["plain expression on present rows only"] = present_rows(x, mask)
            fns["fused autograd Function (_GatedScores)"] = step(x, mask, True)
        elif mask is not None:
            fns["library: present rows only (CPU)"] = step(x, mask, True)
        times = interleaved_medians(fns, repeats, 1, CPU)
        print_table(
            f"GatedAttentionPool(512, 128) forward + backward on CPU, {label}",
            ["path", "ms", "x plain"],
            _ratio_rows(times, "plain: autograd expression"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs and few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 9, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1; the machine is shared)")
    parser.add_argument("--only", choices=("crop", "gated"), default=None, help="run one half only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 9)
    print(f"torch {torch.__version__}, {args.threads} thread(s), medians of {repeats} interleaved rounds")
    if args.only in (None, "crop"):
        crop_cases(4 if args.quick else 32, 224, repeats)
    if args.only in (None, "gated"):
        gated_cases(args.quick, repeats)


if __name__ == "__main__":
    main()
