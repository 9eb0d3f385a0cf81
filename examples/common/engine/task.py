"""What a dataset script hands to the engine: its datasets, class names, training targets' loss and reports.

Dataset items are tuples ``(image, target, label, index)`` or ``(image, target, label, index, landmarks)``:
``image`` uint8 ``(3, S, S)`` (turned into float in [0, 1] on the device, as the authors' code feeds it),
read as :data:`Task.image_channels` says,
``target`` what the task's classification loss expects, ``label`` the evaluation label (int, -1 when
undefined), ``index`` the position in the split, and ``landmarks`` ``(L, 2)`` pixel coordinates in the
``S x S`` image (NaN where missing) for landmark regions. Every dataset has ``fingerprint()``: the SHA-256 of its
image content (``images``) and of its full label information (``labels``), which a resume must find again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from ..subsets import SubsetList


@dataclass
class Task:
    """A dataset, ready to train on: what :func:`~.protocol.run` needs besides the configuration."""

    name: str
    class_names: tuple[str, ...]
    train: Dataset[Any]
    valid: Dataset[Any] | None
    test: Dataset[Any]
    test_keys: list[str]
    test_labels: Tensor
    #: classification loss ``(logits, targets) -> scalar`` for the training targets the datasets yield, given to
    #: ``RegionAttentionLoss(classification=...)``; None: cross-entropy against class indices
    loss: Callable[[Tensor, Tensor], Tensor] | None = None
    #: counts after label processing etc., written into summary.json under "data"
    report: dict[str, Any] = field(default_factory=dict)
    #: dataset name for subset-list parsing ("ferplus", "affectnet", "rafdb")
    subset_dataset: str | None = None
    #: per-example sampling weights of the training set (oversampling), or None for uniform shuffling
    train_weights: Tensor | None = None
    #: per-class weights of the cross-entropy (``RegionAttentionLoss(class_weight=...)``), or None
    class_weight: Tensor | None = None
    #: extra entries for summary.json (e.g. which validation set was used)
    notes: dict[str, Any] = field(default_factory=dict)
    #: ``(name, path) -> SubsetList`` for ``--subset NAME=PATH``; default: ``parse_subset_list`` for
    #: ``subset_dataset`` (a dataset can find companion label files, or define its own list format)
    subset_parser: Callable[[str, Path], SubsetList] | None = None
    #: data options that must match when resuming (layout, image source, hold-out fraction, ...)
    identity: dict[str, Any] = field(default_factory=dict)
    #: how the faces are read: "RGB", or "L" (grey, replicated to three channels, as FERPlus); recorded in every
    #: checkpoint, so ``examples/predict.py`` reads new faces the same way
    image_channels: str = "RGB"

    def __post_init__(self) -> None:
        if self.image_channels not in ("RGB", "L"):
            raise ValueError(f"task {self.name!r}: image_channels must be 'RGB' or 'L', got {self.image_channels!r}")
        if self.loss is not None and self.class_weight is not None:
            raise ValueError(f"task {self.name!r}: give loss or class_weight, not both (put the weights into the loss)")


__all__ = ["Task"]
