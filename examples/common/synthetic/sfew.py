r"""The SFEW writer: a small look-alike with the frames and/or the aligned-face folders."""

from __future__ import annotations

import random
from pathlib import Path

from examples.ferplus.formats import FERPLUS_CLASSES
from examples.sfew.formats import FOLDER_NAMES, SFEW_CLASSES, SHIPPED_FOLDERS, VARIANTS

from .pictures import place_on_canvas, render_with_synthetic
from .splits import Splits

__all__ = ["SFEW_SPLITS", "SFEW_VARIANTS", "generate_sfew"]

#: What :func:`generate_sfew` can write: the reader's variants, or both.
SFEW_VARIANTS = ("both", *VARIANTS)
#: The default sizes of :func:`generate_sfew`: ``test`` is the release's validation set.
SFEW_SPLITS = Splits(train=70, test=35)
# The renderer's (FERPlus) name of each SFEW class: the accepted folder spelling that is a FERPlus class name.
_EXPRESSION = tuple(
    next(name for name, index in FOLDER_NAMES.items() if index == c and name in FERPLUS_CLASSES)
    for c in range(len(SFEW_CLASSES))
)


def generate_sfew(
    out_dir: str | Path,
    splits: Splits = SFEW_SPLITS,
    *,
    seed: int = 0,
    variant: str = "both",
    folder_names: tuple[str, ...] = SHIPPED_FOLDERS,
    frame_size: tuple[int, int] = (180, 144),
    face_size: int = 96,
) -> dict[str, Path]:
    """Write a small SFEW look-alike to ``out_dir``: ``Train/`` + ``Val/`` (frames: the face somewhere in a
    ``frame_size`` picture, 5:4 like the release's 720 x 576) and/or ``Train_Aligned_Faces/`` +
    ``Val_Aligned_Faces_new/`` (the faces), PNG files named like the release's, one folder per class named
    ``folder_names`` (class order). ``splits``: ``train`` and ``test`` (the validation folders, which the reader
    tests on). Returns the folders written."""
    if variant not in SFEW_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(SFEW_VARIANTS)}, got {variant!r}")
    if len(folder_names) != len(SFEW_CLASSES):
        raise ValueError(f"folder_names needs {len(SFEW_CLASSES)} names, got {len(folder_names)}")
    sizes = splits.sizes(("train", "test"), "generate_sfew")
    out = Path(out_dir)
    rng = random.Random(seed)
    variants = list(VARIANTS) if variant == "both" else [variant]
    written: dict[str, Path] = {}
    for split, count in sizes.items():
        name = "train" if split == "train" else "val"  # the release's name, in the keys of the result
        labels = [i % len(SFEW_CLASSES) for i in range(count)]
        rng.shuffle(labels)
        faces, marks = render_with_synthetic([_EXPRESSION[c] for c in labels], face_size, seed * 2 + (name == "val"))
        stems = [f"Movie{rng.randrange(5)}_{rng.randrange(10**9):09d}_{i + 1:08d}" for i in range(count)]
        for v in variants:
            train_dir, val_dirs = VARIANTS[v]
            folder = out / (train_dir if name == "train" else val_dirs[0])
            for folder_name in folder_names:
                (folder / folder_name).mkdir(parents=True, exist_ok=True)
            for face, points, label, stem in zip(faces, marks, labels, stems, strict=True):
                image = face if v == "aligned" else place_on_canvas(face, points, frame_size, rng)[0]
                image.save(folder / folder_names[label] / f"{stem}.png")
            written[f"{v}_{name}"] = folder
    return written
