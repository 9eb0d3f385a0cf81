"""Checkpoints: atomic, loadable with ``torch.load(weights_only=True)``, resumable exactly.

Guarantees:

* :func:`atomic_save` writes a temporary file beside the target, flushes it to disk and renames it into
  place, so ``last.pt`` / ``best.pt`` are always complete (an interrupted write leaves the old file).
* A checkpoint holds the model, optimiser, learning-rate schedule, gradient scaler, epoch, best validation
  result, history, random state (torch, Python, CUDA), the run's configuration and its class names; resuming
  restores every one of them (:func:`restore`).
* :func:`config_differences` refuses a resume (or a reuse) under another configuration: the keys of
  :data:`IDENTITY_KEYS` and the task's data options must agree.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig

CHECKPOINT_FORMAT = "region-attention-example/1"

#: Configuration entries that must agree between a checkpoint and the run that resumes or reads it.
IDENTITY_KEYS = ("task", "model", "backbone", "image_size", "variant", "whole_position", "regions", "num_regions",
                 "radius", "dropout", "label_mode", "class_names", "train_on_valid", "seed", "data_identity")


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


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """A checkpoint of the examples (``torch.load(weights_only=True)``); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path} with torch.load(weights_only=True): {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of the region-attention examples (format {CHECKPOINT_FORMAT})")
    return ckpt


def _normalised(record: dict[str, Any]) -> dict[str, Any]:
    """A saved run record with the defaults of options it predates filled in (a checkpoint written before
    ``--regions`` existed for FERPlus ran with the fixed regions)."""
    return {**record, **RunConfig.from_dict(record).to_dict()}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's run record and this run's, key by key (data options included)."""
    saved, current = _normalised(saved), _normalised(current)
    diffs = []
    for key in IDENTITY_KEYS:
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}"
                      for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    return diffs


def rng_state() -> dict[str, Any]:
    """torch, Python and (when present) CUDA random state, in a form ``weights_only`` loading accepts."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo :func:`rng_state` (CUDA state only when this process sees the same number of GPUs)."""
    torch.set_rng_state(state["torch"])
    python = state.get("python")
    if python is not None:
        if len(python) == 3 and isinstance(python[1], list):
            random.setstate((python[0], tuple(python[1]), python[2]))
        else:  # checkpoints before Python's full state was saved: the 625 state words only
            random.setstate((3, tuple(python), None))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def make_checkpoint(*, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                    scaler: torch.amp.GradScaler, epoch: int, best: dict[str, Any], history: list[dict[str, Any]],
                    record: dict[str, Any], class_names: tuple[str, ...]) -> dict[str, Any]:
    """Everything :func:`restore` needs to continue after ``epoch`` (0-based)."""
    return {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "best": best,
            "history": history, "rng": rng_state(), "config": record, "class_names": list(class_names)}


def restore(path: Path, record: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
            schedule: Any, scaler: torch.amp.GradScaler) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Load ``path`` into the run's objects after checking its configuration; returns ``(epoch to start at,
    best, history)``. Everything the checkpoint holds is restored, the random state included."""
    ckpt = load_checkpoint_file(path)
    diffs = config_differences(ckpt["config"], record)
    if diffs:
        raise ValueError(f"{path} was written by another configuration: " + "; ".join(diffs))
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"])
    return ckpt["epoch"] + 1, dict(ckpt["best"]), list(ckpt["history"])


__all__ = ["CHECKPOINT_FORMAT", "IDENTITY_KEYS", "atomic_save", "config_differences", "load_checkpoint_file",
           "make_checkpoint", "restore", "restore_rng", "rng_state"]
