"""Checkpoints: atomic, loadable with ``torch.load(weights_only=True)``, resumable exactly.

Guarantees:

* :func:`atomic_save` writes a temporary file beside the target, flushes it to disk and renames it into
  place, so ``last.pt`` / ``best.pt`` are always complete (an interrupted write leaves the old file).
* A checkpoint holds the model, optimiser, learning-rate schedule, gradient scaler, epoch, best validation
  result, history, random state (torch, Python, CUDA), the run's configuration and its class names; resuming
  restores every one of them (:func:`restore`).
* :func:`config_differences` refuses a resume (or a reuse) under another configuration: the keys of
  :data:`IDENTITY_KEYS`, the task's data options and the data fingerprint (hash of every split's image keys and
  labels, and the data options that change them) must agree.
* Every checkpoint carries a checksum of its content (:func:`content_hash`), verified by
  :func:`load_checkpoint_file`: a file changed on disk is an error naming it, never silently loaded.
* ``best`` records the identity of the selected weights (epoch and :func:`content_hash` of the model), so
  :func:`check_selected` can prove that ``best.pt`` holds what ``last.pt`` says it does.
* :func:`remove_stale_temporaries` deletes the temporary files of writes killed half-way.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import torch
from torch import Tensor, nn

from .config import RunConfig

CHECKPOINT_FORMAT = "region-attention-example/1"
#: Prefix of the temporary files of :func:`atomic_save` (``.NAME.tmp-PID``).
TMP_MARK = ".tmp-"

#: Configuration entries that must agree between a checkpoint and the run that resumes or reads it.
IDENTITY_KEYS = ("task", "model", "backbone", "image_size", "variant", "whole_position", "regions", "num_regions",
                 "radius", "dropout", "label_mode", "class_names", "train_on_valid", "seed", "data_identity",
                 "regions_on", "roi_size", "split_at", "data_fingerprint")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: unreadable, changed on disk, or not the weights it claims to be."""


def content_hash(obj: Any) -> str:
    """A SHA-256 of ``obj``'s content (nested dicts, lists, tensors, numbers, strings), independent of how
    ``torch.save`` lays it out: the same values give the same hash after a save/load round trip."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, float):
        h.update(b"F" + (obj.hex() if math.isfinite(obj) else repr(obj)).encode())
    else:  # None, bool, int, str; torch.Size, dtypes, devices ...
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def atomic_save(obj: Any, path: Path, *, checksum: bool = True) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it into place (and flush the
    folder, so the rename survives a power cut). With ``checksum`` a dict gets a ``checksum`` entry:
    :func:`content_hash` of the rest, verified on load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if checksum and isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != "checksum"}}
        obj["checksum"] = content_hash(obj)
    _atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(text: str, path: Path) -> None:
    """``path.write_text(text)``, atomically (temporary file, flush, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write`` into a temporary file beside ``path``, flush it to disk, rename it into place
    and flush the folder; a killed write leaves only the temporary file (removed at the next start)."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(*folders: Path) -> list[Path]:
    """Delete the temporary files (``.NAME.tmp-PID``) that writes killed half-way left in ``folders``;
    returns what was removed. Only one run writes into a folder, so none of them is still being written."""
    removed = []
    for folder in folders:
        for name in glob.glob(os.path.join(glob.escape(str(folder)), f".*{TMP_MARK}*")):
            try:
                os.unlink(name)
                removed.append(Path(name))
            except FileNotFoundError:
                pass
    return removed


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """A checkpoint of the examples (``torch.load(weights_only=True)``), its checksum verified; errors
    (:class:`CheckpointError`, a ``ValueError``) name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise CheckpointError(f"cannot read checkpoint {path} with torch.load(weights_only=True): {reason}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of the region-attention examples "
                              f"(format {CHECKPOINT_FORMAT})")
    saved = ckpt.pop("checksum", None)
    if saved is not None and content_hash(ckpt) != saved:
        raise CheckpointError(f"{path} is damaged: its content does not match the checksum written with it "
                              "(the file changed on disk); use another checkpoint or retrain")
    return ckpt


def _normalised(record: dict[str, Any]) -> dict[str, Any]:
    """A saved run record with the defaults of options it predates filled in (a checkpoint written before
    ``--regions`` existed for FERPlus ran with the fixed regions)."""
    return {**record, **RunConfig.from_dict(record).to_dict()}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's run record and this run's, key by key (data options and the data
    fingerprint included; a checkpoint written before fingerprints existed is compared on the rest)."""
    saved, current = _normalised(saved), _normalised(current)
    diffs = []
    for key in IDENTITY_KEYS:
        a, b = saved.get(key), current.get(key)
        if key == "data_fingerprint":
            if a is not None and b is not None:
                diffs += fingerprint_differences(a, b)
        elif isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}"
                      for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    return diffs


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The data options and splits that differ between two data fingerprints (see ``protocol.data_fingerprint``)."""
    diffs = []
    a_opts, b_opts = saved.get("options", {}), current.get("options", {})
    for k in sorted({*a_opts, *b_opts}):
        if a_opts.get(k) != b_opts.get(k):
            diffs.append(f"data option {k}: checkpoint {a_opts.get(k)!r} vs now {b_opts.get(k)!r}")
    a_splits, b_splits = saved.get("splits", {}), current.get("splits", {})
    for name in sorted({*a_splits, *b_splits}):
        a, b = a_splits.get(name), b_splits.get(name)
        if a == b:
            continue
        if a is None or b is None:
            diffs.append(f"{name} split: checkpoint {'none' if a is None else 'present'} vs now "
                         f"{'none' if b is None else 'present'}")
        else:
            what = ("other images or labels" if a.get("images") == b.get("images")
                    else f"{a.get('images')} images vs now {b.get('images')}")
            diffs.append(f"{name} split: {what} (keys and labels hash {str(a.get('sha256'))[:12]} vs now "
                         f"{str(b.get('sha256'))[:12]})")
    return diffs


def model_identity(epoch: int, model_state: dict[str, Any]) -> dict[str, Any]:
    """What names a set of weights: the 1-based epoch after which they were saved and their content hash."""
    return {"epoch": epoch, "model_hash": content_hash(model_state)}


def check_selected(path: Path, ckpt: dict[str, Any], best: dict[str, Any]) -> None:
    """Refuse to report from ``ckpt`` (read from ``path``) unless it holds the weights ``best`` names: the same
    epoch, the same weights (content hash) and the validation accuracy recorded for that epoch."""
    epoch = ckpt["epoch"] + 1
    problems = []
    if best.get("epoch") is not None and epoch != best["epoch"]:
        problems.append(f"it holds epoch {epoch}, but the run's record selects epoch {best['epoch']}")
    want = best.get("model_hash")
    if want is not None and content_hash(ckpt["model"]) != want:
        problems.append("its weights are not the selected epoch's (content hash differs)")
    history = ckpt.get("history") or []
    if "accuracy" in best and best.get("epoch") is not None and len(history) >= epoch:
        recorded = history[epoch - 1].get("valid_accuracy")
        if recorded is not None and best["accuracy"] >= 0 and recorded != best["accuracy"]:
            problems.append(f"its epoch {epoch} validation accuracy {recorded} differs from the recorded "
                            f"{best['accuracy']}")
    if problems:
        raise CheckpointError(f"{path} does not hold the selected weights: " + "; ".join(problems)
                              + ". Resume the run (--resume) to rewrite it, or start afresh (--overwrite)")


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


class Restored(NamedTuple):
    """What :func:`restore` hands back: the epoch to start at (0-based), the best-so-far record, the history and
    the run record the run started with (its ``config``; options changed at a resume are recorded per epoch)."""

    start_epoch: int
    best: dict[str, Any]
    history: list[dict[str, Any]]
    config: dict[str, Any]
    path: Path


def resume_point(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to resume from in ``folder``: ``last.pt``, or ``best.pt`` when it is newer (``best.pt``
    is written first, so a run killed between the two writes has a newer, complete ``best.pt``)."""
    last_path, best_path = folder / "last.pt", folder / "best.pt"
    last = load_checkpoint_file(last_path) if last_path.is_file() or not best_path.is_file() else None
    if best_path.is_file():
        best = load_checkpoint_file(best_path)
        if last is None or best["epoch"] > last["epoch"]:
            return best_path, best
    assert last is not None
    return last_path, last


def restore(folder: Path, record: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
            schedule: Any, scaler: torch.amp.GradScaler) -> Restored:
    """Load the checkpoint of :func:`resume_point` into the run's objects after checking its configuration and
    data fingerprint (:class:`ValueError` listing every difference). Everything the checkpoint holds is
    restored, the random state included."""
    path, ckpt = resume_point(folder)
    diffs = config_differences(ckpt["config"], record)
    if diffs:
        raise ValueError(f"{path} was written by another configuration: " + "; ".join(diffs))
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"])
    return Restored(ckpt["epoch"] + 1, dict(ckpt["best"]), list(ckpt["history"]), dict(ckpt["config"]), path)


__all__ = [
    "CHECKPOINT_FORMAT",
    "IDENTITY_KEYS",
    "CheckpointError",
    "Restored",
    "atomic_save",
    "atomic_write_text",
    "check_selected",
    "config_differences",
    "content_hash",
    "fingerprint_differences",
    "load_checkpoint_file",
    "make_checkpoint",
    "model_identity",
    "remove_stale_temporaries",
    "restore",
    "restore_rng",
    "resume_point",
    "rng_state",
]
