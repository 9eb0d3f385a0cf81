"""The options that the example tests' training runs share: the small CNN on tiny faces, on the CPU, no workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from examples.common.synthetic import Splits, generate_ferplus


def fast_options(image_size: int, *, max_steps: int | None = None) -> list[str]:
    """``--backbone small`` at ``image_size`` pixels, batch 16, lr 0.05 on the CPU; ``max_steps`` caps the steps
    of an epoch (``--max-steps-per-epoch``)."""
    options = ["--backbone", "small", "--image-size", str(image_size), "--batch-size", "16", "--workers", "0"]
    options += ["--device", "cpu", "--lr", "0.05"]
    if max_steps is not None:
        options += ["--max-steps-per-epoch", str(max_steps)]
    return options


def metrics_lines(out: Path, *drop: str) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` lines of the run in ``out``, without their throughput (it differs between runs) and
    the keys in ``drop``."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        for key in ("train_images_per_s", *drop):
            line.pop(key, None)
    return lines


def tiny_ferplus(out: Path, seed: int) -> Path:
    """A generated FERPlus of 48 / 16 / 16 rows in ``out / "data"``, for runs of a few steps."""
    generate_ferplus(out / "data", Splits(train=48, valid=16, test=16), seed=seed)
    return out / "data"


def run_argv(data: Path, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    """A FERPlus run's command line on ``data`` into ``out``: :func:`fast_options` at 16 px, two steps an epoch."""
    return [
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--epochs",
        str(epochs),
        *fast_options(16, max_steps=2),
        *extra,
    ]
