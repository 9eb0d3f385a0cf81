"""The protocol, written once for every example script: build, resume, then for each epoch train, validate and
checkpoint; select the checkpoint, test it once, report.

Model selection: with a validation split the best epoch (validation accuracy) is kept in ``best.pt`` and the
test split is evaluated once with it; ``--train-on-valid`` (or a task without a validation split) trains on
everything and reports the last epoch, the paper's protocol. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..models import build_model
from .checkpoints import atomic_save, load_checkpoint_file, make_checkpoint, restore
from .config import RunConfig
from .evaluation import (
    class_histogram,
    confusion,
    evaluate,
    evaluate_subset,
    labels_of,
    metrics_from_confusion,
    parse_subsets,
    predict,
)
from .reporting import RunFiles, closing_lines, epoch_line
from .runtime import Runtime, log, setup_runtime, teardown_runtime
from .sampling import EpochSampler
from .task import Task
from .training import StepSchedule, amp_dtype, build_criterion, build_optimizer, train_one_epoch


def run(task: Task, cfg: RunConfig) -> dict[str, Any] | None:
    """Train, select, test and report. Returns the summary on rank 0 (None elsewhere)."""
    rt = setup_runtime(cfg.device)
    try:
        return _protocol(task, cfg, rt)
    finally:
        teardown_runtime(rt)


def _protocol(task: Task, cfg: RunConfig, rt: Runtime) -> dict[str, Any] | None:
    record, files = run_record(task, cfg, rt), RunFiles(cfg.output_dir)
    subsets = parse_subsets(task, cfg.subsets)  # fail early on a bad list, before training
    if rt.is_main:
        files.write_config(record)
    parts = build(task, cfg, rt)
    state = resume(parts, files, record, rt) if cfg.resume else TrainingState()
    loader, sampler = training_loader(task, cfg, rt)
    for epoch in range(state.start_epoch, cfg.epochs):
        metrics = train_epoch(parts, loader, sampler, cfg, rt, epoch)
        if selects_on_valid(task, cfg):
            val = evaluate(parts.model, task.valid, state.valid_labels(task), task.class_names, cfg, rt)
            metrics.update(valid_accuracy=val["accuracy"], valid_mean_class_accuracy=val["mean_class_accuracy"])
        improved = state.add_epoch(epoch, metrics, selects_on_valid(task, cfg))
        if rt.is_main:
            save_epoch(parts, state, files, record, task.class_names, epoch, best=improved or not
                       selects_on_valid(task, cfg))
            log(epoch_line(metrics, cfg.epochs))
        rt.barrier()
    rt.barrier()
    selected = files.checkpoints / ("best.pt" if selects_on_valid(task, cfg) else "last.pt")
    test, subset_results, selected_epoch = test_selected(parts.model, selected, subsets, task, cfg, rt, files)
    if not rt.is_main:
        return None
    summary = make_summary(task, cfg, record, state, test, subset_results, selected, selected_epoch)
    files.write_summary(summary)
    log(closing_lines(test, subset_results, selected_epoch))
    return summary


# ------------------------------------------------------------------------------------------------------------
# The steps


@dataclass
class Parts:
    """The objects a run trains: the model (and the wrapper that trains it), optimiser, schedule, scaler,
    objective."""

    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule
    scaler: torch.amp.GradScaler
    criterion: nn.Module


@dataclass
class TrainingState:
    """Where training stands: the next epoch, the best validation result so far, the per-epoch history."""

    start_epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "accuracy": -1.0})
    history: list[dict[str, Any]] = field(default_factory=list)
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
    """The configuration as written to config.json and every checkpoint: the options, the task and the device."""
    return {**cfg.to_dict(), "task": task.name, "class_names": list(task.class_names), "world_size": rt.world_size,
            "device": str(rt.device), "data_identity": json.loads(json.dumps(task.identity, default=str))}


def build(task: Task, cfg: RunConfig, rt: Runtime) -> Parts:
    """The model (seeded), its optimiser, schedule, gradient scaler and objective; DDP and compile wrappers."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = build_model(cfg, len(task.class_names)).to(rt.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, schedule = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=cfg.amp and amp_dtype(rt) == torch.float16)
    criterion = build_criterion(task, cfg, model).to(rt.device)
    train_model: nn.Module = model
    if rt.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return Parts(model, train_model, optimizer, schedule, scaler, criterion)


def resume(parts: Parts, files: RunFiles, record: dict[str, Any], rt: Runtime) -> TrainingState:
    """Continue from ``last.pt``: every saved piece restored, later metrics lines dropped."""
    path = files.checkpoints / "last.pt"
    start, best, history = restore(path, record, model=parts.model, optimizer=parts.optimizer,
                                   schedule=parts.schedule, scaler=parts.scaler)
    log(f"resumed from {path} after epoch {start}")
    if rt.is_main:
        files.drop_metrics_after(start)
    return TrainingState(start, best, history)


def training_loader(task: Task, cfg: RunConfig, rt: Runtime) -> tuple[DataLoader, EpochSampler]:
    """Train (plus valid with ``--train-on-valid``) in batches drawn by a per-(seed, epoch) sampler."""
    train_set: Dataset = task.train
    if cfg.train_on_valid and task.valid is not None:
        if task.train_weights is not None:
            raise ValueError("--train-on-valid cannot be combined with a weighted training sampler")
        train_set = ConcatDataset([task.train, task.valid])
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=rt.rank,  # type: ignore[arg-type]
                           world_size=rt.world_size, weights=task.train_weights)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        pin_memory=rt.device.type == "cuda", drop_last=len(sampler) > cfg.batch_size,
                        persistent_workers=False, generator=torch.Generator())
    return loader, sampler


def train_epoch(parts: Parts, loader: DataLoader, sampler: EpochSampler, cfg: RunConfig, rt: Runtime,
                epoch: int) -> dict[str, Any]:
    """One epoch at its learning rate. Everything random in it (dropout, drawn targets, flips, worker seeds)
    derives from (seed, epoch, rank), so a run resumed from last.pt repeats what the uninterrupted run did."""
    lr = parts.schedule.step(parts.optimizer, epoch)
    sampler.set_epoch(epoch)
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rt.rank)
    loader.generator.manual_seed(cfg.seed * 7919 + epoch)  # type: ignore[union-attr]
    metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
    metrics.update(train_one_epoch(parts.train_model, loader, parts.optimizer, parts.scaler, parts.criterion,  # type: ignore[arg-type]
                                   cfg, rt, epoch))
    return metrics


def save_epoch(parts: Parts, state: TrainingState, files: RunFiles, record: dict[str, Any],
               class_names: tuple[str, ...], epoch: int, *, best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``best``), atomically, and the epoch's metrics line."""
    ckpt = make_checkpoint(model=parts.model, optimizer=parts.optimizer, schedule=parts.schedule,
                           scaler=parts.scaler, epoch=epoch, best=state.best, history=state.history, record=record,
                           class_names=class_names)
    atomic_save(ckpt, files.checkpoints / "last.pt")
    if best:
        atomic_save(ckpt, files.checkpoints / "best.pt")
    files.append_metrics(state.history[-1])


def test_selected(model: nn.Module, selected: Any, subsets: list[Any], task: Task, cfg: RunConfig, rt: Runtime,
                  files: RunFiles) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:
    """The selected checkpoint on the test split, once; its scores on every subset list; files on rank 0."""
    ckpt = load_checkpoint_file(selected)
    model.load_state_dict(ckpt["model"])
    result = predict(model, task.test, cfg, rt, collect_attention=True)
    cm = confusion(result["pred"], task.test_labels, len(task.class_names))
    test = metrics_from_confusion(cm, task.class_names)
    subset_results = {name: evaluate_subset(subset, task, result["pred"]) for name, subset in subsets}
    if rt.is_main:
        files.write_predictions(result, task)
        files.write_plots(cm, task, f"{task.name} test, {cfg.model} (acc {test['accuracy']:.3f})")
    return test, subset_results, ckpt["epoch"] + 1


def make_summary(task: Task, cfg: RunConfig, record: dict[str, Any], state: TrainingState, test: dict[str, Any],
                 subsets: dict[str, Any], selected: Any, selected_epoch: int) -> dict[str, Any]:
    select = selects_on_valid(task, cfg)
    histograms = {"train": class_histogram(labels_of(task.train), task.class_names)}
    if task.valid is not None:
        histograms["valid"] = class_histogram(state.valid_labels(task), task.class_names)
    histograms["test"] = class_histogram(task.test_labels, task.class_names)
    return {
        "task": task.name, "class_names": list(task.class_names),
        "protocol": ("trained on train+valid, last epoch reported (paper)" if cfg.train_on_valid
                     else "trained on train, best epoch selected on valid, test evaluated once"),
        "data": task.report, "class_histograms": histograms,
        "selected_epoch": selected_epoch, "selected_checkpoint": str(selected),
        "best_valid_accuracy": state.best["accuracy"] if select else None,
        "test": test, "subsets": subsets, "config": record, **task.notes,
    }


__all__ = ["run"]
