r"""The RAF-DB writer: a small look-alike in the provider's layout or the Kaggle-style copy, with subset lists of
its test split in the published formats.

Per split it plans the rows (class, occlusion, yaw), draws the faces, places each in a larger "original"
picture where the provider's layout has one, and writes the files; then the label files and the lists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from examples.rafdb.formats import KAGGLE_FILES, LABEL_FILE_NAMES, RAFDB_CLASSES, SPLITS

from .pictures import place_on_canvas, render_with_synthetic
from .splits import Splits

__all__ = ["GENERATED_OCCLUSION_TYPE", "RAFDB_LAYOUTS", "RAFDB_SPLITS", "generate_rafdb"]

#: Occlusion type of the generated occlusion list per drawn occlusion (the published list uses types 1-4 whose
#: meaning is not documented; here 1 upper, 2 bottom, 3 left/right, 4 glasses/mask, Table I's column order).
GENERATED_OCCLUSION_TYPE = {"upper": 1, "bottom": 2, "left": 3, "right": 3, "glasses": 4, "mask": 4}
#: What :func:`generate_rafdb` can write: the reader's layouts.
RAFDB_LAYOUTS = ("provider", "kaggle")
#: The default sizes of :func:`generate_rafdb`.
RAFDB_SPLITS = Splits(train=70, test=35)
_DIGITS = {"train": 5, "test": 4}  # train_00001, test_0001


@dataclass
class _Written:
    """What the splits have written so far: label-file rows, Kaggle csv rows, and the test split's faces
    ``(stem, label, occlusion, |yaw|)`` for the lists."""

    label_rows: list[str] = field(default_factory=list)
    csv_rows: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    test_meta: list[tuple[str, int, str, float]] = field(default_factory=list)


def generate_rafdb(
    out_dir: str | Path,
    splits: Splits = RAFDB_SPLITS,
    *,
    seed: int = 0,
    layout: str = "provider",
    label_file: str = LABEL_FILE_NAMES[0],
    final_newline: bool = False,
    original: bool = True,
    lists: bool = True,
    occlusion: float = 0.3,
    pose: float = 0.4,
) -> dict[str, Path]:
    """Write a small RAF-DB look-alike to ``out_dir`` and return the paths of what was written.

    ``layout="provider"``: ``basic/EmoLabel/<label_file>`` (no final newline unless ``final_newline``),
    ``basic/Image/aligned/*_aligned.jpg`` (100 x 100) and, with ``original``, ``basic/Image/original/*.jpg`` with
    the face placed in a larger picture, its ``Annotation/boundingbox`` box and ``Annotation/manual`` landmarks.
    ``layout="kaggle"``: ``train_labels.csv``, ``test_labels.csv`` and ``DATASET/{train,test}/<1-7>/``.
    ``splits``: ``train`` and ``test``. ``occlusion``: the probability that a test face is occluded; ``pose``: that
    a test face without an occluder turns by 32-60 degrees. With ``lists``, ``lists/`` gets an occlusion list and
    pose lists (> 30, > 45) of the test split in the published formats (CRLF and a duplicate line in the
    occlusion list; label files with their ``N 7`` header). Each split holds the seven classes in turn, shuffled
    (every class appears once the split has 7 images).
    """
    if layout not in RAFDB_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(RAFDB_LAYOUTS)}, got {layout!r}")
    if label_file not in LABEL_FILE_NAMES:
        raise ValueError(f"label_file must be one of {', '.join(LABEL_FILE_NAMES)}")
    sizes = splits.sizes(SPLITS, "generate_rafdb")
    out = Path(out_dir)
    rng = random.Random(seed)
    written = _Written()
    for split, count in sizes.items():
        labels, occ, yaw = _plan_split(split, count, rng, occlusion, pose)
        # RAF-DB's class names are FERPlus class names, the renderer's.
        faces, marks = render_with_synthetic(
            [RAFDB_CLASSES[c] for c in labels], 100, seed * 2 + (split == "test"), occlusion=occ, yaw=yaw
        )
        for i, (face, points, label) in enumerate(zip(faces, marks, labels, strict=True)):
            stem = f"{split}_{i + 1:0{_DIGITS[split]}d}"
            if layout == "provider":
                _write_provider_face(out / "basic", stem, face, points, rng if original else None)
                written.label_rows.append(f"{stem}.jpg {label + 1}")
            else:
                path = out / "DATASET" / split / str(label + 1) / f"{stem}_aligned.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                face.save(path, quality=95)
                written.csv_rows[split].append(f"{stem}_aligned.jpg,{label + 1}")
            if split == "test":
                written.test_meta.append((stem, label, occ[i], abs(yaw[i])))
    paths = _write_labels(out, layout, label_file, final_newline, written)
    if lists:
        paths.update(_write_lists(out / "lists", written.test_meta))
    return paths


def _plan_split(
    split: str, count: int, rng: random.Random, occlusion: float, pose: float
) -> tuple[list[int], list[str], list[float]]:
    """The classes (each in turn, shuffled), occlusions and yaws of one split (the test split's faces are
    occluded with probability ``occlusion`` or else turned far with probability ``pose``)."""
    labels = [i % 7 for i in range(count)]
    rng.shuffle(labels)
    occ = ["none"] * count
    yaw = [rng.uniform(-20, 20) for _ in range(count)]
    if split == "test":
        for i in range(count):
            if rng.random() < occlusion:
                occ[i] = rng.choice(list(GENERATED_OCCLUSION_TYPE))
            elif rng.random() < pose:
                yaw[i] = rng.choice([-1, 1]) * rng.uniform(32, 60)
    return labels, occ, yaw


def _write_provider_face(
    basic: Path, stem: str, face: Image.Image, points: list[tuple[float, float]], rng: random.Random | None
) -> None:
    """The aligned face and, with ``rng``, its "original" picture with the face box and the manual landmarks."""
    aligned = basic / "Image" / "aligned" / f"{stem}_aligned.jpg"
    aligned.parent.mkdir(parents=True, exist_ok=True)
    face.save(aligned, quality=95)
    if rng is None:
        return
    canvas = (rng.randint(150, 220), rng.randint(150, 220))
    picture, box, pts = place_on_canvas(face, points, canvas, rng)
    path = basic / "Image" / "original" / f"{stem}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, quality=95)
    box_path = basic / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
    box_path.parent.mkdir(parents=True, exist_ok=True)
    box_path.write_text(" ".join(f"{v:.2f}" for v in box) + "\n")
    manual = basic / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
    manual.parent.mkdir(parents=True, exist_ok=True)
    manual.write_text("".join(f"{x:.2f}\t{y:.2f}\n" for x, y in pts) + "0\n2\n1\n")


def _write_labels(out: Path, layout: str, label_file: str, final_newline: bool, written: _Written) -> dict[str, Path]:
    """The provider's label file, or the Kaggle copy's two csv files; the paths, with ``data_dir``."""
    paths: dict[str, Path] = {}
    if layout == "provider":
        path = out / "basic" / "EmoLabel" / label_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(written.label_rows) + ("\n" if final_newline else ""))
        paths["label_file"] = path
        paths["data_dir"] = out / "basic"
        return paths
    for split, file_name in KAGGLE_FILES.items():
        (out / file_name).write_text("image,label\n" + "".join(r + "\n" for r in written.csv_rows[split]))
        paths[split] = out / file_name
    paths["data_dir"] = out
    return paths


def _write_lists(folder: Path, meta: list[tuple[str, int, str, float]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    occluded = [(s, lab, GENERATED_OCCLUSION_TYPE[o]) for s, lab, o, _ in meta if o != "none"]
    if occluded:  # as published: CRLF, one duplicate line, no final newline
        rows = [f"{s}_aligned {lab} {t}" for s, lab, t in occluded]
        rows.insert(min(2, len(rows)), rows[0])
        (folder / "rafdb_occlusion_list.txt").write_bytes("\r\n".join(rows).encode())
    written = {"occlusion": folder / "rafdb_occlusion_list.txt"} if occluded else {}
    for suffix, limit in (("", 30.0), ("_45", 45.0)):
        posed = [(s, lab) for s, lab, o, yaw in meta if o == "none" and yaw > limit]
        if not posed:
            continue
        (folder / f"val_raf_db_list{suffix}.txt").write_text("".join(f"{lab}/{s}_aligned.jpg\n" for s, lab in posed))
        (folder / f"val_raf_db_label{suffix}.txt").write_text(
            f"{len(posed)} 7\n" + "\n".join(str(lab) for _, lab in posed)
        )
        written[f"pose{suffix or '_30'}"] = folder / f"val_raf_db_list{suffix}.txt"
    return written
