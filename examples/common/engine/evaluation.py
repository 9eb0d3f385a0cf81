"""Evaluation: predictions gathered across ranks, confusion matrices, accuracies and the subset lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..models import is_ran_output, uses_landmarks
from ..subsets import SubsetList, match_subset_with_labels, parse_subset_list
from .config import RunConfig
from .runtime import Runtime, all_reduce_sum
from .sampling import ShardSampler
from .task import Task
from .training import amp_context, progress, unpack


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset[Any],
    cfg: RunConfig,
    rt: Runtime,
    collect_attention: bool = False,
    what: str = "the evaluated images",
) -> dict[str, Tensor]:
    """Predictions for every image of ``dataset`` (gathered across ranks): ``pred`` (N,), ``probs`` (N, C), and
    with ``collect_attention`` the relation-attention weights ``attention`` (N, K) of a RAN.

    Raises:
        ValueError: ``dataset`` is empty (``what`` names it).
        FloatingPointError: a prediction is NaN or infinite (a diverged model), naming ``what``.
    """
    model.eval()
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"{what}: no images to evaluate")
    loader = DataLoader(
        dataset,
        batch_size=cfg.eval_batch_size or cfg.batch_size,
        sampler=ShardSampler(n, rt.rank, rt.world_size),
        num_workers=cfg.workers,
        pin_memory=rt.device.type == "cuda",
    )
    probs: Tensor | None = None
    weights: Tensor | None = None
    for batch in progress(loader, total=len(loader), desc="evaluate", enabled=rt.is_main):
        image, _, _, index, landmarks = unpack(batch, rt, landmarks=uses_landmarks(cfg))
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
        probs = torch.zeros(n, model_classes(model), dtype=torch.float64)
    probs = all_reduce_sum(rt, probs)
    bad = ~torch.isfinite(probs).all(dim=1)
    if bad.any():
        raise FloatingPointError(
            f"the model diverged: {int(bad.sum())} of {n} predictions on {what} are NaN or "
            "infinite (lower --lr, or check the data); nothing is reported from it"
        )
    result = {"probs": probs.float(), "pred": probs.argmax(1)}
    if weights is not None:
        result["attention"] = all_reduce_sum(rt, weights).float()
    return result


def model_classes(model: nn.Module) -> int:
    out_features = getattr(model.classifier, "out_features", None)
    if not isinstance(out_features, int):
        raise TypeError(f"{type(model).__name__}.classifier must be a layer with an int out_features")
    return out_features


def confusion(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts, true class per row; labels < 0 (undefined) are left out."""
    keep = labels >= 0
    flat = labels[keep] * num_classes + pred[keep]
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """Images, accuracy, mean class accuracy (over classes present), per-class accuracy, the matrix."""
    total = int(cm.sum())
    correct = int(cm.diag().sum())
    per_class: dict[str, float | None] = {}
    present: list[float] = []
    for i, name in enumerate(class_names):
        n = int(cm[i].sum())
        accuracy = None if n == 0 else float(cm[i, i]) / n
        per_class[name] = accuracy
        if accuracy is not None:
            present.append(accuracy)
    return {
        "images": total,
        "accuracy": correct / total if total else None,
        "mean_class_accuracy": sum(present) / len(present) if present else None,
        "per_class_accuracy": per_class,
        "confusion_matrix": cm.tolist(),
    }


def evaluate(
    model: nn.Module,
    dataset: Dataset[Any],
    labels: Tensor,
    class_names: Sequence[str],
    cfg: RunConfig,
    rt: Runtime,
    what: str = "the validation split",
) -> dict[str, Any]:
    out = predict(model, dataset, cfg, rt, what=what)
    return metrics_from_confusion(confusion(out["pred"], labels, len(class_names)), class_names)


def labels_of(dataset: Dataset[Any] | None) -> Tensor:
    """The evaluation labels of a dataset (``labels()``, ``.labels`` or its split's ``labels()``)."""
    if dataset is None:
        return torch.zeros(0, dtype=torch.long)
    labels = getattr(dataset, "labels", None)
    if callable(labels):
        return _labels_tensor(labels(), dataset)
    if isinstance(labels, Tensor):
        return labels
    split = getattr(dataset, "split", None)
    if split is not None and hasattr(split, "labels"):
        return _labels_tensor(split.labels(), dataset)
    raise TypeError(f"{type(dataset).__name__} must expose labels() or .labels for evaluation")


# ------------------------------------------------------------------------------------------------------------
# Subset lists (the paper's occlusion and pose test sets)


def parse_subsets(task: Task, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, SubsetList]]:
    """Read every ``--subset`` list with the task's reader (before training, so a bad list fails at once)."""
    out = []
    for name, path in pairs:
        if task.subset_parser is not None:
            out.append((name, task.subset_parser(name, Path(path))))
        else:
            out.append((name, parse_subset_list(path, dataset=task.subset_dataset or task.name, name=name)))
    return out


def evaluate_subset(subset: SubsetList, task: Task, pred: Tensor) -> dict[str, Any]:
    """The test predictions scored on one list, with what matched and what did not."""
    key_index = {k: i for i, k in enumerate(task.test_keys)}
    match = match_subset_with_labels(subset, key_index, task.test_labels.tolist())
    idx = torch.tensor(match.indices, dtype=torch.long)
    entry = metrics_from_confusion(confusion(pred[idx], task.test_labels[idx], len(task.class_names)), task.class_names)
    label_file = None if subset.label_path is None else str(subset.label_path)
    entry.update(
        {
            "list": str(subset.path),
            "label_file": label_file,
            "format": subset.format,
            "entries": len(subset.entries),
            "duplicates": subset.duplicates,
            "matched": len(match.indices),
            "unmatched": len(match.unmatched),
            "unmatched_examples": match.unmatched[:10],
            "label_disagreements": match.label_disagreements,
        }
    )
    by_kind = accuracy_by_kind(subset, key_index, pred, task.test_labels)
    if by_kind:
        entry["accuracy_by_type"] = by_kind
    return entry


def accuracy_by_kind(subset: SubsetList, key_index: dict[str, int], pred: Tensor, labels: Tensor) -> dict[str, Any]:
    """Accuracy per value of the list's extra column (the occlusion type of the occlusion lists)."""
    kinds: dict[str, list[int]] = {}
    for entry in subset.entries:
        if entry.kind is not None and entry.key in key_index:
            kinds.setdefault(str(entry.kind), []).append(key_index[entry.key])
    out = {}
    for kind, idx in sorted(kinds.items()):
        t = torch.tensor(idx)
        keep = labels[t] >= 0
        out[kind] = {
            "images": int(keep.sum()),
            "accuracy": float((pred[t][keep] == labels[t][keep]).float().mean()) if keep.any() else None,
        }
    return out


__all__ = [
    "accuracy_by_kind",
    "confusion",
    "evaluate",
    "evaluate_subset",
    "labels_of",
    "metrics_from_confusion",
    "parse_subsets",
    "predict",
]


def _labels_tensor(labels: object, dataset: Dataset[Any]) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{type(dataset).__name__}'s labels() must return a tensor, got {type(labels).__name__}")
    return labels
