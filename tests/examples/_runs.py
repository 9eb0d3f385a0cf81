"""The options that the example tests' training runs share: the small CNN on tiny faces, on the CPU, no workers."""

from __future__ import annotations


def fast_options(image_size: int, *, max_steps: int | None = None) -> list[str]:
    """``--backbone small`` at ``image_size`` pixels, batch 16, lr 0.05 on the CPU; ``max_steps`` caps the steps
    of an epoch (``--max-steps-per-epoch``)."""
    options = ["--backbone", "small", "--image-size", str(image_size), "--batch-size", "16", "--workers", "0"]
    options += ["--device", "cpu", "--lr", "0.05"]
    if max_steps is not None:
        options += ["--max-steps-per-epoch", str(max_steps)]
    return options
