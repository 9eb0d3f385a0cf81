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

from .runtime import log

CHECKPOINT_FORMAT = "region-attention-example/1"
#: Prefix of the temporary files of :func:`atomic_save` (``.NAME.tmp-PID``).
TMP_MARK = ".tmp-"

#: Configuration entries that must agree between a checkpoint and the run that resumes or reads it.
IDENTITY_KEYS = (
    "task",
    "model",
    "backbone",
    "image_size",
    "image_channels",
    "variant",
    "whole_position",
    "regions",
    "num_regions",
    "radius",
    "dropout",
    "label_mode",
    "class_names",
    "train_on_valid",
    "seed",
    "data_identity",
    "regions_on",
    "roi_size",
    "split_at",
    "data_fingerprint",
)


class RunError(ValueError):
    """A run that may not start or continue as asked (a refused resume, an unusable output folder, ...): the
    user's to fix, and the message says how. The scripts print it as one line, exit status 2."""


class CheckpointError(RunError):
    """A checkpoint that cannot be trusted: unreadable, changed on disk, without its checksum, holding
    non-finite values, another run's, or not the weights it claims to be."""


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
    except (OSError, RuntimeError) as err:  # torch.save on a full disk: "inline_container.cc:...: unexpected pos"
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        raise OSError(f"cannot write {path}: {reason} (is its disk full or read-only? {path} is unchanged)") from err
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
    """A checkpoint of the examples (``torch.load(weights_only=True)``), its checksum verified (a checkpoint
    without one is refused: every checkpoint these scripts write carries it) and every tensor finite (any
    dtype, complex included). Errors (:class:`CheckpointError`, a ``ValueError``) name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise CheckpointError(f"cannot read checkpoint {path} with torch.load(weights_only=True): {reason}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a checkpoint of the region-attention examples (format {CHECKPOINT_FORMAT})"
        )
    saved = ckpt.pop("checksum", None)
    if saved is None:
        raise CheckpointError(
            f"{path} has no checksum (every checkpoint of these scripts carries one), so its "
            "content cannot be verified; use a checkpoint the scripts wrote, or retrain"
        )
    if content_hash(ckpt) != saved:
        raise CheckpointError(
            f"{path} is damaged: its content does not match the checksum written with it "
            "(the file changed on disk); use another checkpoint or retrain"
        )
    missing = [k for k in ("model", "config", "class_names", "epoch", "best", "history") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a run checkpoint of these scripts")
    check_state_dict(ckpt["model"], path)
    bad = non_finite_tensors({k: v for k, v in ckpt.items() if k not in ("model", "rng")})
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or infinite values in {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; use another checkpoint or retrain"
        )
    return ckpt


def non_finite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """The names (dotted paths) of the floating-point or complex tensors in ``obj`` (nested dicts and lists)
    that hold a NaN or an infinity; a complex value counts when either part does."""
    if isinstance(obj, Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and obj.numel():
            values = torch.view_as_real(obj) if obj.is_complex() else obj
            if not bool(torch.isfinite(values).all()):
                return [prefix or "<tensor>"]
        return []
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in non_finite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [n for i, v in enumerate(obj) for n in non_finite_tensors(v, f"{prefix}[{i}]")]
    return []


def check_state_dict(state: Any, path: str | Path) -> None:
    """Refuse weights that cannot be loaded without guessing (:class:`CheckpointError` naming ``path``): not a
    mapping of names to tensors, a non-finite value (any dtype, complex included), or a name present both
    with and without the ``module.`` prefix of ``DataParallel`` (which of the two would load is arbitrary)."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: the weights are not a mapping of parameter names to tensors")
    both = sorted(k for k in state if k.startswith("module.") and k[len("module.") :] in state)
    if both:
        raise CheckpointError(
            f"{path} holds {len(both)} weight(s) both with and without the 'module.' prefix "
            f"(e.g. {both[0]!r} and {both[0][len('module.') :]!r}): which one is meant is "
            "ambiguous; keep one of each pair and save the file again"
        )
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or infinite weights in {len(bad)} tensor(s): "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; use another checkpoint"
        )


def read_pretrained(path: str | Path) -> None:
    """Check a ``--pretrained`` backbone file before it is loaded: readable with ``weights_only=True``, a state
    dict (or ``{'state_dict': ...}`` / ``{'model': ...}``) that :func:`check_state_dict` accepts."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"--pretrained: no file at {path}") from None
    except Exception as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise CheckpointError(
            f"--pretrained {path}: cannot read it with torch.load(weights_only=True): {reason}"
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    check_state_dict(obj, f"--pretrained {path}")


def load_weights(model: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``model.load_state_dict(state)``; weights of another architecture are a :class:`CheckpointError` naming
    ``path`` and the first mismatches (not a multi-line ``RuntimeError``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else "",
        ]
        raise CheckpointError(
            f"{path}: its weights do not fit the architecture its configuration records: "
            + ", ".join(p for p in parts if p)
            + "; the file was altered or mixed up"
        )
    model.load_state_dict(state)


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's run record and this run's, key by key (data options and the data
    fingerprint included)."""
    diffs = []
    for key in IDENTITY_KEYS:
        a, b = saved.get(key), current.get(key)
        if key == "data_fingerprint":
            diffs += fingerprint_differences(a or {}, b or {})
        elif isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)
            ]
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
            diffs.append(
                f"{name} split: checkpoint {'none' if a is None else 'present'} vs now "
                f"{'none' if b is None else 'present'}"
            )
            continue
        if a.get("images") != b.get("images"):
            diffs.append(f"{name} split: {a.get('images')} images vs now {b.get('images')}")
            continue
        what = [
            label
            for key, label in (
                ("keys", "other images (their names)"),
                ("labels", "other labels (votes, classes, boxes or landmarks)"),
                ("content", "other image content (pixels or image files changed)"),
            )
            if a.get(key) != b.get(key)
        ]
        diffs.append(f"{name} split: " + "; ".join(what or ["other data"]))
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
            problems.append(
                f"its epoch {epoch} validation accuracy {recorded} differs from the recorded {best['accuracy']}"
            )
    if problems:
        raise CheckpointError(
            f"{path} does not hold the selected weights: "
            + "; ".join(problems)
            + f". Epoch {best.get('epoch')}'s weights are lost: retrain the run (--overwrite)"
        )


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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def make_checkpoint(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
    epoch: int,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    record: dict[str, Any],
    class_names: tuple[str, ...],
) -> dict[str, Any]:
    """Everything :func:`restore` needs to continue after ``epoch`` (0-based)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best": best,
        "history": history,
        "rng": rng_state(),
        "config": record,
        "class_names": list(class_names),
    }


def config_hash(record: dict[str, Any]) -> str:
    """The :func:`content_hash` of a run record's :data:`IDENTITY_KEYS`: equal for two records exactly when
    :func:`config_differences` finds nothing."""
    return content_hash({key: record.get(key) for key in IDENTITY_KEYS})


class Restored(NamedTuple):
    """What :func:`restore` hands back: the epoch to start at (0-based), the best-so-far record, the history,
    the run record the run started with (its ``config``; options changed at a resume are recorded per epoch),
    the checkpoint resumed from (None: the run restarts from its first epoch), and whether ``best.pt`` must be
    written again from it (it was damaged or missing and holds the same weights)."""

    start_epoch: int
    best: dict[str, Any]
    history: list[dict[str, Any]]
    config: dict[str, Any]
    path: Path | None
    checkpoint: dict[str, Any] | None = None
    rewrite_best: bool = False


def _owner(path: Path, ckpt: dict[str, Any], run: dict[str, Any], what: str) -> None:
    """Refuse ``ckpt`` unless it was written by the run ``run`` (same run id and configuration hash)."""
    config = ckpt["config"]
    theirs, ours = config.get("run_id"), run.get("run_id")
    if (
        theirs != ours
        or config.get("config_hash") != run.get("config_hash")
        or config_hash(config) != config.get("config_hash")
    ):
        why = f"run id {theirs} vs {ours}" if theirs != ours else "its configuration differs"
        raise CheckpointError(
            f"{path} belongs to another run than {what} ({why}): move it out of {path.parent} "
            "and resume again, or start afresh with --overwrite"
        )


def _fits(newer: dict[str, Any], older: dict[str, Any]) -> bool:
    """Can ``older`` and ``newer`` be two checkpoints of one training history (the older's history a prefix of
    the newer's, and the newer at most one epoch ahead when ``best.pt`` is the newer)?"""
    n = int(older["epoch"]) + 1
    return bool(
        len(older["history"]) == n
        and len(newer["history"]) == newer["epoch"] + 1
        and newer["history"][:n] == older["history"]
    )


def plan_resume(folder: Path, run: dict[str, Any] | None) -> Restored:
    """What a resume continues from in the checkpoint ``folder`` of a run whose ``config.json`` holds ``run``
    (None: absent or unreadable; the run record of ``last.pt`` then stands for it).

    * ``last.pt`` and ``best.pt`` must belong to the run (its run id and configuration hash) and to one
      training history (``best.pt`` is written first, so it may be one epoch ahead of ``last.pt``): anything
      else is refused, never adopted.
    * the newest intact checkpoint is resumed from (``best.pt`` when a kill came between the two writes, or
      when ``last.pt`` is damaged: training is deterministic, so the epochs after it are trained again alike);
    * a damaged or missing ``best.pt`` does not block the resume: when ``last.pt`` holds the selected weights it
      is written again from it, otherwise a later epoch that improves on it replaces it (and a run that ends
      without one says that epoch's weights are lost);
    * no checkpoint, but ``config.json``: the run died before its first checkpoint and restarts from epoch 1.
    """
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    damaged: dict[str, str] = {}
    for name in ("last.pt", "best.pt"):
        path = folder / name
        if path.exists():
            try:
                found[name] = (path, load_checkpoint_file(path))
            except CheckpointError as err:
                damaged[name] = str(err)
    if run is None:
        if "last.pt" not in found:
            why = "" if "last.pt" not in damaged else f" ({damaged['last.pt']})"
            raise RunError(
                f"nothing to resume in {folder.parent}: no readable config.json and no intact "
                f"checkpoints/last.pt{why}; start the run afresh with --overwrite"
            )
        run = found["last.pt"][1]["config"]
    what = f"{folder.parent / 'config.json'}"
    for path, ckpt in found.values():
        _owner(path, ckpt, run, what)
    warnings = [f"warning: {message}" for message in damaged.values()]
    if "last.pt" in found and "best.pt" in found:
        last, best = found["last.pt"][1], found["best.pt"][1]
        newer, older = (best, last) if best["epoch"] > last["epoch"] else (last, best)
        if not _fits(newer, older) or best["epoch"] > last["epoch"] + 1:
            path = found["best.pt"][0]
            raise CheckpointError(
                f"{path} (epoch {best['epoch'] + 1}) does not fit {found['last.pt'][0]} (epoch "
                f"{last['epoch'] + 1}): their histories differ, so they come from two attempts "
                f"of the run; move {path.name} out of {folder} and resume again"
            )
    if not found:
        if "last.pt" in damaged:
            raise CheckpointError(
                f"{damaged['last.pt']}; no intact checkpoint is left: move it out of {folder} "
                "and resume again to restart the run from its first epoch, or use --overwrite"
            )
        return Restored(0, {"epoch": None, "accuracy": -1.0}, [], dict(run), None)
    name = max(found, key=lambda n: found[n][1]["epoch"])
    path, ckpt = found[name]
    best = dict(ckpt["best"])
    rewrite = False
    if "best.pt" not in found and best.get("model_hash") is not None:
        why = "is damaged" if "best.pt" in damaged else "is missing"
        if best.get("epoch") == ckpt["epoch"] + 1:
            rewrite = True  # the selected weights are those of the checkpoint resumed from
            warnings.append(f"warning: {folder / 'best.pt'} {why}; written again from {path} (the same epoch)")
        else:
            warnings.append(
                f"warning: {folder / 'best.pt'} {why}: epoch {best.get('epoch')}'s weights are lost; "
                "a later epoch that improves on its validation accuracy replaces it, otherwise the "
                "run ends without a test result"
            )
    for line in warnings:
        log(line, error=True)
    return Restored(ckpt["epoch"] + 1, best, list(ckpt["history"]), dict(ckpt["config"]), path, ckpt, rewrite)


#: Parameter-group entries that :func:`restore` takes from the checkpoint (the schedule then sets them from this
#: run's ``--lr``): every other entry keeps this run's value.
_SCHEDULED = ("params", "lr", "initial_lr")


def restore(
    plan: Restored,
    record: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: torch.amp.GradScaler,
) -> None:
    """Check that the run resumed (``plan.config``) has this run's configuration and data fingerprint
    (:class:`RunError` listing every difference), then load the checkpoint of ``plan`` into the run's
    objects: everything it holds is restored, the random state included, except the optimiser's
    hyper-parameters, which are this run's (``--momentum`` and ``--weight-decay`` given anew apply from the
    resumed epoch on; the learning rate follows this run's ``--lr`` through the schedule)."""
    diffs = config_differences(plan.config, record)
    if diffs:
        where = plan.path or "config.json"
        raise RunError(
            f"{where} was written by another configuration or other data: "
            + "; ".join(diffs)
            + " (resume with the run's options and data, or start afresh with --overwrite)"
        )
    if plan.path is None or plan.checkpoint is None:
        return
    ckpt = plan.checkpoint
    load_weights(model, ckpt["model"], plan.path)
    # This run's hyper-parameters (momentum, weight decay, ...), which ``load_state_dict`` would replace with the
    # checkpoint's: put back after it, so an option given anew at a resume applies from the resumed epoch on, as
    # ``--lr`` does (the schedule sets every group's rate from this run's ``--lr``).
    ours = [{k: v for k, v in group.items() if k not in _SCHEDULED} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, hyper in zip(optimizer.param_groups, ours, strict=True):
            group.update(hyper)
        schedule.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] or not scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        # else: --amp given at this resume where the run trained without float16 scaling: a new scaler, as a new
        # run's (torch refuses the disabled scaler's empty state)
        restore_rng(ckpt["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"{plan.path}: its optimiser, schedule or random state does not fit this run "
            f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
            "; start afresh with --overwrite"
        ) from err


__all__ = [
    "CHECKPOINT_FORMAT",
    "IDENTITY_KEYS",
    "CheckpointError",
    "Restored",
    "RunError",
    "atomic_save",
    "atomic_write_text",
    "check_selected",
    "check_state_dict",
    "config_differences",
    "config_hash",
    "content_hash",
    "fingerprint_differences",
    "load_checkpoint_file",
    "load_weights",
    "make_checkpoint",
    "model_identity",
    "non_finite_tensors",
    "plan_resume",
    "read_pretrained",
    "remove_stale_temporaries",
    "restore",
    "restore_rng",
    "rng_state",
]
