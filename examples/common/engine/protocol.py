"""The protocol, written once for every example script: build, resume, then for each epoch train, validate and
checkpoint; select the checkpoint, test it once, report.

Model selection: with a validation split the best epoch (validation accuracy) is kept in ``best.pt`` and the
test split is evaluated once with it; ``--train-on-valid`` (or a task without a validation split) trains on
everything and reports the last epoch, the paper's protocol. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import uuid
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..folder_data import class_counts
from ..models import build_model
from ..subsets import SubsetList
from .checkpoints import (
    IDENTITY_KEYS,
    Restored,
    RunError,
    atomic_save,
    check_selected,
    config_hash,
    load_checkpoint_file,
    load_weights,
    make_checkpoint,
    model_identity,
    plan_resume,
    read_pretrained,
    restore,
)
from .config import RunConfig
from .evaluation import (
    confusion,
    evaluate,
    evaluate_subset,
    labels_of,
    metrics_from_confusion,
    parse_subsets,
    predict,
)
from .reporting import RunFiles, closing_lines, epoch_line, output_folder_problem
from .runtime import Runtime, log, setup_runtime, teardown_runtime
from .sampling import EpochSampler
from .task import Task
from .training import ClosedFormMultiStepLR, amp_dtype, build_criterion, build_optimizer, train_one_epoch


def run(task: Task, cfg: RunConfig) -> dict[str, Any] | None:
    """Train, select, test and report. Returns the summary on rank 0 (None elsewhere)."""
    rt = setup_runtime(cfg.device)
    try:
        return _protocol(task, cfg, rt)
    finally:
        teardown_runtime(rt)


def _protocol(task: Task, cfg: RunConfig, rt: Runtime) -> dict[str, Any] | None:
    files, subsets, plan = check_run(task, cfg)
    record = run_record(task, cfg, rt)
    parts = build(task, cfg, rt, from_checkpoint=plan is not None and plan.path is not None)
    state = resume(parts, plan, record) if plan is not None else TrainingState(config=record)
    rt.barrier()
    if rt.is_main:
        start_writing(files, cfg, state)
        if plan is not None and plan.rewrite_best and plan.checkpoint is not None:
            atomic_save({k: v for k, v in plan.checkpoint.items() if k != "checksum"}, files.checkpoints / "best.pt")
    rt.barrier()
    train_epochs(parts, state, task, cfg, rt, files, changed=changed_options(state.config, record))
    rt.barrier()
    selected = files.checkpoints / ("best.pt" if selects_on_valid(task, cfg) else "last.pt")
    test, subset_results, selected_epoch = test_selected(parts.model, selected, subsets, task, cfg, rt, files, state)
    if not rt.is_main:
        return None
    summary = make_summary(task, cfg, state.config, state, test, subset_results, selected, selected_epoch)
    files.write_summary(summary)
    log(closing_lines(test, subset_results, selected_epoch))
    return summary


def check_run(task: Task, cfg: RunConfig) -> tuple[RunFiles, list[tuple[str, SubsetList]], Restored | None]:
    """Everything checked before the first write, so that a refused run or resume leaves the folder as it was:
    the splits, the output folder, the ``--subset`` lists (read now, so a bad list fails before training) and,
    with ``--resume``, what the run continues from. Returns the run's files, the subset lists and the resume
    plan (None: a new run)."""
    check_splits(task, cfg)
    if cfg.output_dir is None:
        raise RunError("--output-dir is required")
    files = RunFiles(cfg.output_dir)
    problem = output_folder_problem(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
    if problem:
        raise RunError(problem)
    try:
        subsets = parse_subsets(task, cfg.subsets)
    except ValueError as err:
        raise RunError(f"--subset: {err}") from None
    plan = plan_resume(files.checkpoints, files.read_config()) if cfg.resume else None
    if plan is not None and plan.start_epoch > cfg.epochs:
        raise RunError(
            f"the run in {files.root} has trained {plan.start_epoch} epochs; --epochs {cfg.epochs} is "
            f"below that: give --epochs {plan.start_epoch} or more to continue it, or start afresh "
            "with --overwrite"
        )
    return files, subsets, plan


def train_epochs(
    parts: Parts,
    state: TrainingState,
    task: Task,
    cfg: RunConfig,
    rt: Runtime,
    files: RunFiles,
    *,
    changed: dict[str, Any],
) -> None:
    """Every epoch from ``state.start_epoch`` on: train, validate (when the run selects on it), checkpoint and
    log on rank 0. ``changed``: the options changed at a resume, recorded in every epoch's metrics."""
    select = selects_on_valid(task, cfg)
    loader, sampler = training_loader(task, cfg, rt)
    for epoch in range(state.start_epoch, cfg.epochs):
        metrics = train_epoch(parts, loader, sampler, cfg, rt, epoch)
        if select:
            val = evaluate(
                parts.model,
                _valid_set(task),
                state.valid_labels(task),
                task.class_names,
                cfg,
                rt,
                what=f"the validation split after epoch {epoch + 1}",
            )
            metrics.update(valid_accuracy=val["accuracy"], valid_mean_class_accuracy=val["mean_class_accuracy"])
        if changed:
            metrics["changed_options"] = changed
        improved = state.add_epoch(epoch, metrics, select)
        if rt.is_main:
            save_epoch(parts, state, files, state.config, task.class_names, epoch, best=improved or not select)
            log(epoch_line(metrics, cfg.epochs))
        rt.barrier()


def start_writing(files: RunFiles, cfg: RunConfig, state: TrainingState) -> None:
    """The first writes of an accepted run (rank 0): temporary files of killed writes removed, the old outputs
    removed (``--overwrite``), ``config.json`` (the record the run started with; a resume keeps it), and on a
    resume ``metrics.jsonl`` rebuilt from the checkpoint's history."""
    removed = files.remove_temporaries()
    if removed:
        log(
            f"removed {len(removed)} temporary file(s) of interrupted writes: " + ", ".join(p.name for p in removed[:5])
        )
    if cfg.overwrite and not cfg.resume:
        old = files.remove_outputs()
        if old:
            log(f"--overwrite: removed the previous run's outputs in {files.root} ({len(old)} files)")
    files.write_config(state.config)
    if cfg.resume:
        files.rewrite_metrics(state.history)
        if state.start_epoch < cfg.epochs:
            files.remove_results()
    elif files.metrics.exists():
        files.metrics.unlink()


# ------------------------------------------------------------------------------------------------------------
# The steps


@dataclass
class Parts:
    """The objects a run trains: the model (and the wrapper that trains it), optimiser, schedule, scaler,
    objective."""

    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: ClosedFormMultiStepLR
    scaler: torch.amp.GradScaler
    criterion: nn.Module


@dataclass
class TrainingState:
    """Where training stands: the next epoch, the best validation result so far, the per-epoch history."""

    start_epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "accuracy": -1.0})
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the run record the run started with (config.json, every checkpoint's ``config``)
    config: dict[str, Any] = field(default_factory=dict)
    _valid_labels: torch.Tensor | None = None

    def valid_labels(self, task: Task) -> torch.Tensor:
        if self._valid_labels is None:
            self._valid_labels = labels_of(task.valid)
        return self._valid_labels

    def add_epoch(self, epoch: int, metrics: dict[str, Any], select_on_valid: bool) -> bool:
        """Record an epoch; True when it is the best so far on validation."""
        self.history.append(metrics)
        improved = select_on_valid and metrics["valid_accuracy"] > self.best["accuracy"]
        if not select_on_valid or improved:
            self.best = {"epoch": epoch + 1, "accuracy": metrics.get("valid_accuracy", -1.0)}
        return improved


def selects_on_valid(task: Task, cfg: RunConfig) -> bool:
    return task.valid is not None and not cfg.train_on_valid


def run_record(task: Task, cfg: RunConfig, rt: Runtime) -> dict[str, Any]:
    """The configuration as written to config.json and every checkpoint: the options, the task, how its images
    are read (``image_channels``), the device, the data fingerprint, a new ``run_id`` and the ``config_hash`` of
    the identity (a resumed run keeps the record, and so the run id, it started with)."""
    record = {
        **cfg.to_dict(),
        "task": task.name,
        "class_names": list(task.class_names),
        "image_channels": task.image_channels,
        "world_size": rt.world_size,
        "device": str(rt.device),
        "data_identity": json.loads(json.dumps(task.identity, default=str)),
        "data_fingerprint": data_fingerprint(task, cfg),
        "run_id": uuid.uuid4().hex,
    }
    record["config_hash"] = config_hash(record)
    return record


#: Data options that change which images a split holds, their labels or how they are read and sampled: a
#: resumed run must use the values it started with (the data folder itself may move).
DATA_FINGERPRINT_OPTIONS = (
    "layout",
    "images",
    "face_margin",
    "holdout_fraction",
    "balance",
    "classes",
    "fit",
    "label_mode",
)


def data_fingerprint(task: Task, cfg: RunConfig) -> dict[str, Any]:
    """What a resume must find again: the data options that are set, and per split its size and three
    SHA-256 hashes: ``keys`` (the image names, relative to the data folder, so a moved folder has the same
    fingerprint), ``labels`` (the evaluation labels and the dataset's full label information: FERPlus votes,
    face boxes, landmarks) and ``content`` (the pixels, or the bytes of every image file), from the dataset's
    ``fingerprint()``, computed as it reads the data."""
    splits: dict[str, Any] = {}
    for name, dataset in (("train", task.train), ("valid", task.valid), ("test", task.test)):
        if dataset is None:
            continue
        fingerprint = getattr(dataset, "fingerprint", None)
        if not callable(fingerprint):
            raise TypeError(
                f"task {task.name!r}: the {name} dataset ({type(dataset).__name__}) has no "
                "fingerprint() (the hashes of its image content and labels a resume checks)"
            )
        own = fingerprint()
        keys = task.test_keys if dataset is task.test else _keys_of(dataset)
        labels = task.test_labels if dataset is task.test else labels_of(dataset)
        label_hash = hashlib.sha256(json.dumps([[int(v) for v in labels.tolist()], own["labels"]]).encode())
        splits[name] = {
            "images": len(dataset),  # type: ignore[arg-type]
            "keys": hashlib.sha256(json.dumps(keys).encode()).hexdigest(),
            "labels": label_hash.hexdigest(),
            "content": own["images"],
        }
    options = {k: getattr(cfg, k) for k in DATA_FINGERPRINT_OPTIONS if getattr(cfg, k, None) is not None}
    return json.loads(json.dumps({"options": options, "splits": splits}, default=str))  # type: ignore[no-any-return]


def _valid_set(task: Task) -> Dataset[Any]:
    """The validation set, for a run that selects its model on it."""
    if task.valid is None:
        raise ValueError(f"the {task.name} task has no validation set to select the model on")
    return task.valid


def _keys_of(dataset: Dataset[Any]) -> list[str] | None:
    keys = getattr(dataset, "keys", None)
    if callable(keys):
        return list(keys())
    split = getattr(dataset, "split", None)
    if split is not None and callable(getattr(split, "keys", None)):
        return list(split.keys())
    return None


def check_splits(task: Task, cfg: RunConfig) -> None:
    """Empty splits are errors before training (an empty training split trains nothing, an empty validation
    or test split has no accuracy)."""
    sizes = {"training": len(task.train), "test": len(task.test)}  # type: ignore[arg-type]
    if task.valid is not None:
        sizes["validation"] = len(task.valid)  # type: ignore[arg-type]
    empty = [name for name, n in sizes.items() if n == 0]
    if empty:
        raise RunError(
            f"task {task.name!r}: the {' and '.join(empty)} split(s) hold no images "
            f"(sizes: {', '.join(f'{k} {v}' for k, v in sizes.items())}); check --data-dir "
            f"{cfg.data_dir} and the data options"
        )


#: Options that never change a run's result or its identity and are not reported as changed on a resume.
_NOT_CHANGES = ("resume", "overwrite", "run_id", "config_hash")


def changed_options(original: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The options a resumed run uses that differ from those the run started with (``lr``, ``epochs``,
    ``workers``, ``device``, a moved ``data_dir``, ...), recorded in the metrics of every epoch trained with
    them instead of rewriting config.json for the whole run."""
    return {
        k: v for k, v in record.items() if k not in _NOT_CHANGES and k not in IDENTITY_KEYS and original.get(k) != v
    }


def build(task: Task, cfg: RunConfig, rt: Runtime, *, from_checkpoint: bool = False) -> Parts:
    """The model (seeded), its optimiser, schedule, gradient scaler and objective; DDP and compile wrappers.
    ``from_checkpoint``: every weight will come from a checkpoint, so the ``--pretrained`` file is not read (it
    may have moved); a resume without a checkpoint (the run died before its first) starts from it as a new run."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.pretrained is not None and not from_checkpoint:
        read_pretrained(cfg.pretrained)  # NaN weights, ambiguous module. names: one line naming the file
    model = build_model(dataclasses.replace(cfg, pretrained=None) if from_checkpoint else cfg, len(task.class_names))
    model = model.to(rt.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, schedule = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=cfg.amp and amp_dtype(rt) == torch.float16)
    criterion = build_criterion(task, cfg, model).to(rt.device)
    train_model: nn.Module = model
    if rt.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return Parts(model, train_model, optimizer, schedule, scaler, criterion)


def resume(parts: Parts, plan: Restored, record: dict[str, Any]) -> TrainingState:
    """Continue where ``plan`` (:func:`~.checkpoints.plan_resume`) says: configuration and data fingerprint
    checked, every saved piece restored. Writes nothing."""
    restore(plan, record, model=parts.model, optimizer=parts.optimizer, schedule=parts.schedule, scaler=parts.scaler)
    if plan.path is None:
        log("resumed a run that stopped before its first checkpoint: it starts from epoch 1")
    else:
        log(f"resumed from {plan.path} after epoch {plan.start_epoch}")
    changes = changed_options(plan.config, record)
    if changes:
        log(
            "options changed at this resume (recorded in the metrics of the epochs trained with them): "
            + ", ".join(f"{k} {plan.config.get(k)!r} -> {v!r}" for k, v in changes.items())
        )
    if "pretrained" in changes and plan.path is not None:
        log(f"--pretrained is not read at a resume: every weight comes from {plan.path}")
    return TrainingState(plan.start_epoch, plan.best, plan.history, config=plan.config)


def training_loader(task: Task, cfg: RunConfig, rt: Runtime) -> tuple[DataLoader[Any], EpochSampler]:
    """Train (plus valid with ``--train-on-valid``) in batches drawn by a per-(seed, epoch) sampler."""
    train_set: Dataset[Any] = task.train
    if cfg.train_on_valid and task.valid is not None:
        if task.train_weights is not None:
            raise ValueError("--train-on-valid cannot be combined with a weighted training sampler")
        train_set = ConcatDataset([task.train, task.valid])
    if not isinstance(train_set, Sized):
        raise TypeError(f"the training set ({type(train_set).__name__}) must have a length for its sampler")
    sampler = EpochSampler(
        len(train_set),
        seed=cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        weights=task.train_weights,
    )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=rt.device.type == "cuda",
        drop_last=len(sampler) > cfg.batch_size,
        persistent_workers=False,
        generator=torch.Generator(),
    )
    return loader, sampler


def train_epoch(
    parts: Parts, loader: DataLoader[Any], sampler: EpochSampler, cfg: RunConfig, rt: Runtime, epoch: int
) -> dict[str, Any]:
    """One epoch at its learning rate, then the schedule's step to the next epoch's. Everything random in it
    (dropout, drawn targets, flips, worker seeds) derives from (seed, epoch, rank), so a run resumed from last.pt
    repeats what the uninterrupted run did."""
    if parts.schedule.last_epoch != epoch:
        raise RuntimeError(f"the learning-rate schedule is at epoch {parts.schedule.last_epoch + 1}, not {epoch + 1}")
    lr = parts.optimizer.param_groups[0]["lr"]
    sampler.set_epoch(epoch)
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rt.rank)
    loader.generator.manual_seed(cfg.seed * 7919 + epoch)
    metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
    metrics.update(
        train_one_epoch(
            parts.train_model,
            loader,
            parts.optimizer,
            parts.scaler,
            parts.criterion,  # type: ignore[arg-type]
            cfg,
            rt,
            epoch,
        )
    )
    parts.schedule.step()
    return metrics


def save_epoch(
    parts: Parts,
    state: TrainingState,
    files: RunFiles,
    record: dict[str, Any],
    class_names: tuple[str, ...],
    epoch: int,
    *,
    best: bool,
) -> None:
    """``best.pt`` (when ``best``) first, then ``last.pt``, each atomically, then the epoch's metrics line.

    ``best.pt`` is a complete checkpoint written before ``last.pt``: a kill between the two leaves a newer
    ``best.pt``, from which the resume continues (:func:`~.checkpoints.resume_point`), so ``last.pt``'s record of
    the best epoch (epoch and weights' hash) never names weights that ``best.pt`` does not hold."""
    if best:
        state.best.update(model_identity(epoch + 1, parts.model.state_dict()))
    ckpt = make_checkpoint(
        model=parts.model,
        optimizer=parts.optimizer,
        schedule=parts.schedule,
        scaler=parts.scaler,
        epoch=epoch,
        best=state.best,
        history=state.history,
        record=record,
        class_names=class_names,
    )
    if best:
        atomic_save(ckpt, files.checkpoints / "best.pt")
    atomic_save(ckpt, files.checkpoints / "last.pt")
    files.append_metrics(state.history[-1])


def test_selected(
    model: nn.Module,
    selected: Any,
    subsets: list[Any],
    task: Task,
    cfg: RunConfig,
    rt: Runtime,
    files: RunFiles,
    state: TrainingState | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:
    """The selected checkpoint on the test split, once; its scores on every subset list; files on rank 0. The
    checkpoint must hold the weights the run's record selects (``state.best``), or the run stops naming it."""
    ckpt = load_checkpoint_file(selected)
    if state is not None:
        check_selected(selected, ckpt, state.best)
    load_weights(model, ckpt["model"], selected)
    result = predict(
        model,
        task.test,
        cfg,
        rt,
        collect_attention=True,
        what=f"the test split (checkpoint of epoch {ckpt['epoch'] + 1}, {selected})",
    )
    cm = confusion(result["pred"], task.test_labels, len(task.class_names))
    test = metrics_from_confusion(cm, task.class_names)
    subset_results = {name: evaluate_subset(subset, task, result["pred"]) for name, subset in subsets}
    if rt.is_main:
        files.write_predictions(result, task)
        files.write_plots(cm, task, f"{task.name} test, {cfg.model} (acc {test['accuracy']:.3f})")
    return test, subset_results, ckpt["epoch"] + 1


def make_summary(
    task: Task,
    cfg: RunConfig,
    record: dict[str, Any],
    state: TrainingState,
    test: dict[str, Any],
    subsets: dict[str, Any],
    selected: Any,
    selected_epoch: int,
) -> dict[str, Any]:
    select = selects_on_valid(task, cfg)
    histograms = {"train": class_counts(labels_of(task.train), task.class_names)}
    if task.valid is not None:
        histograms["valid"] = class_counts(state.valid_labels(task), task.class_names)
    histograms["test"] = class_counts(task.test_labels, task.class_names)
    return {
        "task": task.name,
        "class_names": list(task.class_names),
        "protocol": (
            "trained on train+valid, last epoch reported (paper)"
            if cfg.train_on_valid
            else "trained on train, best epoch selected on valid, test evaluated once"
        ),
        "data": task.report,
        "class_histograms": histograms,
        "selected_epoch": selected_epoch,
        "selected_checkpoint": str(selected),
        "best_valid_accuracy": state.best["accuracy"] if select else None,
        "test": test,
        "subsets": subsets,
        "config": record,
        **task.notes,
        "options_changed_on_resume": {
            str(h["epoch"]): h["changed_options"] for h in state.history if h.get("changed_options")
        },
    }


__all__ = ["run"]
