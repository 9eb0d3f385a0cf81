r"""The RAF-DB writer: a small look-alike in the provider's layout or the Kaggle-style copy, with subset lists of
its test split in the published formats (moved here from ``examples/rafdb/data.py``, which re-exports it)."""

from __future__ import annotations

import random
from pathlib import Path

from examples.rafdb.formats import KAGGLE_FILES, LABEL_FILE_NAMES, RAFDB_CLASSES, SPLITS

from .pictures import place_on_canvas, render_with_synthetic

__all__ = ["GENERATED_OCCLUSION_TYPE", "generate_rafdb"]

#: Occlusion type of the generated occlusion list per drawn occlusion (the published list uses types 1-4 whose
#: meaning is not documented; here 1 upper, 2 bottom, 3 left/right, 4 glasses/mask, Table I's column order).
GENERATED_OCCLUSION_TYPE = {"upper": 1, "bottom": 2, "left": 3, "right": 3, "glasses": 4, "mask": 4}


def generate_rafdb(out: str | Path, *, train: int = 70, test: int = 35, seed: int = 0, layout: str = "provider",
                   label_file: str = LABEL_FILE_NAMES[0], final_newline: bool = False,
                   original: bool = True, lists: bool = True, occluded: float = 0.3, posed: float = 0.4,
                   ) -> dict[str, Path]:
    """Write a small RAF-DB look-alike to ``out`` and return the paths of what was written.

    ``layout="provider"``: ``basic/EmoLabel/<label_file>`` (no final newline unless ``final_newline``),
    ``basic/Image/aligned/*_aligned.jpg`` (100 x 100) and, with ``original``, ``basic/Image/original/*.jpg`` with
    the face placed in a larger picture, its ``Annotation/boundingbox`` box and ``Annotation/manual`` landmarks.
    ``layout="kaggle"``: ``train_labels.csv``, ``test_labels.csv`` and ``DATASET/{train,test}/<1-7>/``.
    With ``lists``, ``lists/`` gets an occlusion list and pose lists (> 30, > 45) of the test split in the
    published formats (CRLF and a duplicate line in the occlusion list; label files with their ``N 7`` header).
    Each split holds the seven classes in turn, shuffled (every class appears once the split has 7 images).
    """
    if layout not in ("provider", "kaggle"):
        raise ValueError(f"layout must be provider or kaggle, got {layout!r}")
    if label_file not in LABEL_FILE_NAMES:
        raise ValueError(f"label_file must be one of {', '.join(LABEL_FILE_NAMES)}")
    out = Path(out)
    rng = random.Random(seed)
    basic = out / "basic"
    paths: dict[str, Path] = {}
    label_rows: list[str] = []
    test_meta: list[tuple[str, int, str, float]] = []
    csv_rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, count, digits in (("train", train, 5), ("test", test, 4)):
        labels = [i % 7 for i in range(count)]
        rng.shuffle(labels)
        occ = ["none"] * count
        yaw = [rng.uniform(-20, 20) for _ in range(count)]
        if split == "test":
            for i in range(count):
                if rng.random() < occluded:
                    occ[i] = rng.choice(list(GENERATED_OCCLUSION_TYPE))
                elif rng.random() < posed:
                    yaw[i] = rng.choice([-1, 1]) * rng.uniform(32, 60)
        # RAF-DB's class names are FERPlus class names, the renderer's.
        faces, marks = render_with_synthetic([RAFDB_CLASSES[c] for c in labels], 100, seed * 2 + (split == "test"),
                                             occlusion=occ, yaw=yaw)
        for i, (face, points, label) in enumerate(zip(faces, marks, labels, strict=True)):
            stem = f"{split}_{i + 1:0{digits}d}"
            if layout == "provider":
                aligned = basic / "Image" / "aligned" / f"{stem}_aligned.jpg"
                aligned.parent.mkdir(parents=True, exist_ok=True)
                face.save(aligned, quality=95)
                if original:
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
                label_rows.append(f"{stem}.jpg {label + 1}")
            else:
                path = out / "DATASET" / split / str(label + 1) / f"{stem}_aligned.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                face.save(path, quality=95)
                csv_rows[split].append(f"{stem}_aligned.jpg,{label + 1}")
            if split == "test":
                test_meta.append((stem, label, occ[i], abs(yaw[i])))
    if layout == "provider":
        path = basic / "EmoLabel" / label_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(label_rows) + ("\n" if final_newline else ""))
        paths["label_file"] = path
        paths["data_dir"] = basic
    else:
        for split, file_name in KAGGLE_FILES.items():
            (out / file_name).write_text("image,label\n" + "".join(r + "\n" for r in csv_rows[split]))
            paths[split] = out / file_name
        paths["data_dir"] = out
    if lists:
        paths.update(_write_lists(out / "lists", test_meta))
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
            f"{len(posed)} 7\n" + "\n".join(str(lab) for _, lab in posed))
        written[f"pose{suffix or '_30'}"] = folder / f"val_raf_db_list{suffix}.txt"
    return written
