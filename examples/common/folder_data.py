"""What the image-file datasets (RAF-DB, SFEW) share: an image-list dataset, the stratified hold-out split,
cross-entropy targets, region options, resume checks, a plain subset-list evaluator and a small face drawer
for generated data.

Dataset items (:class:`ImageListDataset`) follow the engine's contract: ``(image, target, label, index)`` or,
with landmarks, ``(image, target, label, index, landmarks)``. ``image`` is uint8 ``(3, S, S)`` (RGB, no mean/std
normalisation: the engine divides by 255, as the RAN authors fed it), ``target`` and ``label`` are the class
index (cross-entropy), ``index`` the position in the split and ``landmarks`` float32 ``(5, 2)`` pixel
coordinates ``(x, y)`` in the ``S x S`` image (NaN where an annotation is missing).
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FITS",
    "IMAGE_SUFFIXES",
    "ImageListDataset",
    "ImageRecord",
    "add_holdout_arguments",
    "add_region_arguments",
    "class_counts",
    "cross_entropy_loss",
    "is_main_process",
    "place_on_canvas",
    "render_with_synthetic",
    "split_records",
    "square_box",
    "stratified_holdout",
]

#: How an image without a face box becomes square: ``stretch`` (resize, aspect ratio not kept), ``pad``
#: (centre it on a black square, then resize) or ``center`` (the largest centred square, then resize).
FITS = ("stretch", "pad", "center")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------------
# Records and the dataset


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image: ``key`` (subset matching), ``path``, ``label`` (class index), optional face ``box``
    ``(x1, y1, x2, y2)`` and 5 ``landmarks`` ``((x, y), ...)`` in pixels of the image file, and ``source``
    (where the label came from, e.g. ``list_patition_label.txt:17``)."""

    key: str
    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    source: str = ""


def square_box(box: Sequence[float], margin: float = 0.0) -> tuple[float, float, float, float]:
    """The square around ``box``'s centre whose side is the box's longer side times ``1 + 2 * margin``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


class ImageListDataset(Dataset):
    """Images of a list of :class:`ImageRecord`, read lazily with PIL, as RGB uint8 ``(3, S, S)``.

    With ``crop_to_box`` each image is cut to the square around its record's ``box`` (enlarged by ``margin``
    on each side, as a fraction of the box's longer side; parts outside the image are black) before resizing;
    otherwise ``fit`` (one of :data:`FITS`) makes it square. With ``landmarks`` the items carry the record's
    landmarks mapped into the ``S x S`` image (NaN if the record has none).
    """

    def __init__(self, records: Sequence[ImageRecord], image_size: int = 224, *, crop_to_box: bool = False,
                 margin: float = 0.0, fit: str = "stretch", landmarks: bool = False,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if fit not in FITS:
            raise ValueError(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if crop_to_box:
            missing = [r.key for r in records if r.box is None]
            if missing:
                raise ValueError(f"{len(missing)} image(s) have no face box, e.g. {', '.join(missing[:5])}")
        self.records = list(records)
        self.image_size = image_size
        self.crop_to_box = crop_to_box
        self.margin = margin
        self.fit = fit
        self.with_landmarks = landmarks
        self.transform = transform
        self._labels = torch.tensor([r.label for r in self.records], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> Tensor:
        """Class indices ``(N,)`` int64."""
        return self._labels.clone()

    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    def _region(self, record: ImageRecord, width: int, height: int) -> tuple[float, float, float, float]:
        """The part of the image (pixel box, possibly beyond its border) that becomes the S x S image."""
        if self.crop_to_box:
            assert record.box is not None
            return square_box(record.box, self.margin)
        if self.fit == "pad":
            side = max(width, height)
            return (width - side) / 2.0, (height - side) / 2.0, (width + side) / 2.0, (height + side) / 2.0
        if self.fit == "center":
            side = min(width, height)
            return (width - side) / 2.0, (height - side) / 2.0, (width + side) / 2.0, (height + side) / 2.0
        return 0.0, 0.0, float(width), float(height)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        record = self.records[index]
        try:
            with Image.open(record.path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError) as err:
            raise OSError(f"cannot read image {record.path}: {err}") from err
        width, height = img.size
        x1, y1, x2, y2 = self._region(record, width, height)
        size = self.image_size
        if (x1, y1, x2, y2) != (0.0, 0.0, float(width), float(height)):
            box = (round(x1), round(y1), round(x2), round(y2))
            img = img.crop(box)  # zero-pads outside the image
            x1, y1, x2, y2 = (float(v) for v in box)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        image = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(size, size, 3)
        image = image.permute(2, 0, 1).contiguous()
        if self.transform is not None:
            image = self.transform(image)
        label = record.label
        item: tuple[Any, ...] = (image, label, label, index)
        if self.with_landmarks:
            points = torch.full((5, 2), float("nan"), dtype=torch.float32)
            if record.landmarks is not None:
                pts = torch.tensor(record.landmarks, dtype=torch.float32).reshape(-1, 2)[:5]
                scale = torch.tensor([size / max(x2 - x1, 1e-6), size / max(y2 - y1, 1e-6)])
                points[: pts.shape[0]] = (pts - torch.tensor([x1, y1])) * scale
            item = (*item, points)
        return item


def cross_entropy_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Batch-mean cross-entropy against class indices (the task loss of RAF-DB and SFEW)."""
    return F.cross_entropy(logits, targets.long())


# ---------------------------------------------------------------------------------------------------------------
# Splits and counts


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split positions into ``(kept, held_out)``, holding out ``round(fraction * n_c)`` of every class ``c``
    (at least one when ``fraction > 0`` and the class has two or more images), chosen by ``seed``.

    Both lists are sorted, so the split is a pure function of (labels, fraction, seed).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(by_class):
        idx = by_class[label]
        n = round(fraction * len(idx))
        if fraction > 0 and n == 0 and len(idx) >= 2:
            n = 1
        n = min(n, len(idx) - 1)  # keep at least one training image per class
        if n > 0:
            held.extend(rng.sample(idx, n))
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def split_records(records: Sequence[ImageRecord], fraction: float, seed: int
                  ) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """:func:`stratified_holdout` applied to records: ``(train, held_out)``."""
    kept, held = stratified_holdout([r.label for r in records], fraction, seed)
    return [records[i] for i in kept], [records[i] for i in held]


def class_counts(labels: Sequence[int], class_names: Sequence[str]) -> dict[str, int]:
    counts = Counter(int(v) for v in labels)
    return {name: counts.get(i, 0) for i, name in enumerate(class_names)}


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that prints the data report."""
    return os.environ.get("RANK", "0") == "0"


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _has_option(parser: argparse.ArgumentParser, flag: str) -> bool:
    return flag in parser._option_string_actions  # argparse has no public lookup


def add_region_arguments(parser: argparse.ArgumentParser, group: Any, *, landmarks: bool) -> None:
    """``--regions`` (and ``--num-regions``, ``--radius``) unless the engine already defines them."""
    choices = ["fixed", "authors", "random", *(["landmarks"] if landmarks else [])]
    if not _has_option(parser, "--regions"):
        group.add_argument("--regions", choices=choices, default="fixed",
                           help="region layout: the paper's fixed crops, the authors' AffectNet crops, random "
                                "crops" + (", or boxes around the 5 landmarks (needs --images original)"
                                           if landmarks else ""))
    if not _has_option(parser, "--num-regions"):
        group.add_argument("--num-regions", type=int, default=None, help="number of random regions (default 5)")
    if not _has_option(parser, "--radius"):
        group.add_argument("--radius", type=float, default=None,
                           help="landmark region half-side as a fraction of the face (default 0.4)")


def add_holdout_arguments(group: Any) -> None:
    """``--holdout-fraction`` as in the AffectNet script (the draw is seeded by ``--seed``)."""
    group.add_argument("--holdout-fraction", type=float, default=0.1,
                       help="share of the training set held out (per class, drawn with --seed) for model selection; "
                            "0: none, train on all of it and report the last epoch (default 0.1)")


# ---------------------------------------------------------------------------------------------------------------
# Generated data: small cartoon faces with a per-class expression and exact 5-point landmarks

def render_with_synthetic(expressions: Sequence[str], size: int, seed: int, *,
                          occlusion: Sequence[str] | None = None, yaw: Sequence[float] | None = None
                          ) -> tuple[list[Image.Image], list[list[tuple[float, float]]]]:
    """One RGB ``size x size`` face per expression name (FERPlus class names), drawn by
    :mod:`examples.common.synthetic`, and its 5 landmarks (eye centres, nose tip, mouth corners) in pixels.
    ``occlusion`` names and ``yaw`` degrees per face are passed to the renderer."""
    from .synthetic import FERPLUS_CLASSES, render_batch, sample_faces

    labels = [FERPLUS_CLASSES.index(e) for e in expressions]
    g = torch.Generator().manual_seed(seed)
    params = sample_faces(labels, generator=g, occlusion=list(occlusion) if occlusion is not None else None,
                          yaw=list(yaw) if yaw is not None else None)
    images, lm68 = render_batch(params, size, channels=3, generator=g)
    out, marks = [], []
    for img, lm in zip(images, lm68, strict=True):
        out.append(Image.frombytes("RGB", (size, size), bytes(img.permute(1, 2, 0).reshape(-1).tolist())))
        five = [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]
        marks.append([(float(p[0]), float(p[1])) for p in five])
    return out, marks


def place_on_canvas(face: Image.Image, marks: Sequence[tuple[float, float]], canvas: tuple[int, int],
                    rng: random.Random) -> tuple[Image.Image, tuple[float, float, float, float],
                                                 list[tuple[float, float]]]:
    """Paste ``face`` scaled into a larger noisy ``canvas`` (W, H) at a random place: the "original" image,
    its face box ``(x1, y1, x2, y2)`` and the landmarks in canvas pixels."""
    cw, ch = canvas
    side = round(min(cw, ch) * rng.uniform(0.45, 0.7))
    x0, y0 = rng.randint(0, cw - side), rng.randint(0, ch - side)
    img = Image.effect_noise((cw, ch), 40).convert("RGB")
    tint = Image.new("RGB", (cw, ch), tuple(rng.randint(30, 220) for _ in range(3)))
    img = Image.blend(img, tint, 0.7)
    img.paste(face.resize((side, side), Image.Resampling.BILINEAR), (x0, y0))
    k = side / face.size[0]
    return img, (float(x0), float(y0), float(x0 + side), float(y0 + side)), [(x0 + x * k, y0 + y * k) for x, y in marks]
