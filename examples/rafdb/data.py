"""RAF-DB (basic emotions) readers: the provider's layout and the Kaggle-style copy; RAF-DB subset lists.

Layouts (:func:`detect_layout`):

* **provider** (``DIR`` is ``basic/`` or its parent): ``EmoLabel/list_patition_label.txt`` (the shipped
  spelling) or ``EmoLabel/list_partition_label.txt`` (the provider README's), lines ``train_00001.jpg 5``
  (one space; no newline after the last line; CRLF accepted); the split is the name prefix (``train_`` /
  ``test_``). Images: ``Image/aligned/<stem>_aligned.jpg`` (100 x 100, the default, ``images="aligned"``) or
  ``Image/original/<name>`` cut to the face box of ``Annotation/boundingbox/<stem>_boundingbox.txt``
  (``x_min y_min x_max y_max``; ``images="original"``), made square around its centre and enlarged by
  ``face_margin`` on each side. With ``landmarks`` the 5 manual points of
  ``Annotation/manual/<stem>_manu_attri.txt`` (eye centres, nose tip, mouth corners, ``x<TAB>y``, original
  pixels) are mapped into the crop (for ``--regions landmarks``); the alignment transform of the aligned images
  is not published, so landmarks exist only for the original images.
* **kaggle**: ``train_labels.csv`` / ``test_labels.csv`` (header ``image,label``; rows
  ``train_00001_aligned.jpg,5``) and the images in ``DATASET/{train,test}/<label>/<image>`` (or
  ``{train,test}/<label>/<image>``). Aligned images only.

Labels: the official 1-7 (Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral) minus one, so class ``i``
is :data:`RAFDB_CLASSES` ``[i]`` -- the order of the published RAF-DB occlusion and pose lists. (Other copies
use ``0..6`` folders in another order; they are not read here, and every checkpoint records the class order.)
Image keys are ``train_00001`` / ``test_0001`` (:func:`examples.common.subsets.image_key`), the keys of the
subset lists.

Published lists (``kaiwang960112/Challenge-condition-FER-dataset``, ``RAF_DB_dir``): the occlusion list
``test_XXXX_aligned <label> <type>`` (CRLF, one duplicate line) and the pose lists ``<label>/test_XXXX_aligned.jpg``
with a separate label file (header ``N 7``, then one label per line). :func:`parse_rafdb_subset` reads either and
finds the companion label file by the published naming (``val_raf_db_list_45.txt`` ->
``val_raf_db_label_45.txt``), cross-checking every label.

Small look-alikes to try it on: ``python -m examples.common.synthetic rafdb --out /tmp/rafdb`` (the generator,
:func:`examples.common.synthetic.generate_rafdb`).
"""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.common.folder_data import (
    DataFolderError,
    ImageListDataset,
    ImageRecord,
    class_counts,
    text_lines,
)
from examples.common.subsets import SubsetList, image_key, parse_subset_list, read_text_lines
from examples.rafdb.formats import IMAGE_KINDS, KAGGLE_FILES, LABEL_FILE_NAMES, LAYOUTS, RAFDB_CLASSES, SPLITS

__all__ = [
    "IMAGE_KINDS",
    "KAGGLE_FILES",
    "LABEL_FILE_NAMES",
    "LAYOUTS",
    "RAFDB_CLASSES",
    "RAFDBData",
    "companion_label_file",
    "detect_layout",
    "find_label_file",
    "format_report",
    "load_rafdb",
    "parse_rafdb_subset",
    "read_bounding_box",
    "read_kaggle_csv",
    "read_label_file",
    "read_manual_landmarks",
]


_NAME = re.compile(r"(?P<split>train|test)_(?P<number>\d+)(?P<aligned>_aligned)?\.(?:jpg|jpeg|png)", re.IGNORECASE)


@dataclass
class RAFDBData:
    """The train and test records of one RAF-DB copy, and what was read (``report``)."""

    layout: str
    root: Path
    images: str
    train: list[ImageRecord]
    test: list[ImageRecord]
    report: dict[str, Any] = field(default_factory=dict)

    def dataset(
        self,
        split: str,
        image_size: int = 224,
        *,
        records: list[ImageRecord] | None = None,
        margin: float = 0.0,
        landmarks: bool = False,
    ) -> ImageListDataset:
        chosen = records if records is not None else getattr(self, split)
        return ImageListDataset(
            chosen, image_size, crop_to_box=self.images == "original", margin=margin, landmarks=landmarks
        )


# ---------------------------------------------------------------------------------------------------------------
# Files of the provider's layout


def _split_of(name: str, where: str) -> str:
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{where}: image name {name!r} is not a RAF-DB name like train_00001.jpg or test_0001.jpg")
    return match["split"].lower()


def _label(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 7:  # "²".isdigit() is True
        raise ValueError(f"{where}: label must be one of 1..7 ({', '.join(RAFDB_CLASSES)}), got {text!r}")
    return int(text) - 1


def read_label_file(path: str | Path) -> list[tuple[int, str, int]]:
    """Rows of ``list_pa(r)tition_label.txt`` as ``(line, image name, class 0-6)``.

    Accepts CRLF, blank lines and a missing final newline; any other defect (a row without two fields, an
    unknown name, a label outside 1-7, a name listed twice) is a ValueError naming the file and line.
    """
    path = Path(path)
    rows: list[tuple[int, str, int]] = []
    seen: dict[str, int] = {}
    for number, line in read_text_lines(path):
        where = f"{path}, line {number}"
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{where}: expected '<image> <label 1-7>' (e.g. 'train_00001.jpg 5'), got {line!r}")
        name, text = parts
        _split_of(name, where)
        if name in seen:
            raise ValueError(f"{where}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = number
        rows.append((number, name, _label(text, where)))
    if not rows:
        raise ValueError(f"{path}: no labelled images")
    return rows


def _floats(text: str, count: int, where: str) -> list[float]:
    parts = text.replace(",", " ").split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"{where}: expected {count} numbers, got {text!r}")
    return values


def read_bounding_box(path: str | Path) -> tuple[float, float, float, float]:
    """``x_min y_min x_max y_max`` (original-image pixels) from a ``*_boundingbox.txt`` file."""
    path = Path(path)
    lines = read_text_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty bounding-box file (expected 'x_min y_min x_max y_max')")
    number, text = lines[0]
    x1, y1, x2, y2 = _floats(text, 4, f"{path}, line {number}")
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{path}, line {number}: the box {text!r} is empty (need x_max > x_min, y_max > y_min)")
    return x1, y1, x2, y2


def read_manual_landmarks(path: str | Path) -> tuple[tuple[float, float], ...]:
    """The 5 points of a ``*_manu_attri.txt`` file (left eye, right eye, nose tip, mouth corners)."""
    path = Path(path)
    lines = read_text_lines(path)
    if len(lines) < 5:
        raise ValueError(f"{path}: expected 5 landmark lines 'x<TAB>y', found {len(lines)} lines")
    points = []
    for number, text in lines[:5]:
        x, y = _floats(text, 2, f"{path}, line {number}")
        points.append((x, y))
    return tuple(points)


def find_label_file(basic: Path) -> Path:
    """``basic/EmoLabel/`` under either spelling; both present with different contents is an error."""
    found = [basic / "EmoLabel" / n for n in LABEL_FILE_NAMES if (basic / "EmoLabel" / n).is_file()]
    if not found:
        raise FileNotFoundError(
            f"no RAF-DB label file in {basic / 'EmoLabel'}: expected {' or '.join(LABEL_FILE_NAMES)}"
        )
    if len(found) == 2 and found[0].read_bytes().strip() != found[1].read_bytes().strip():
        raise ValueError(f"{found[0]} and {found[1]} both exist and differ; remove the one that is wrong")
    return found[0]


def detect_layout(data_dir: str | Path, layout: str = "auto") -> tuple[str, Path]:
    """``("provider", basic folder)`` or ``("kaggle", folder with the CSV files)``.

    ``data_dir`` may be ``basic/`` itself or its parent. With ``auto`` the provider layout wins when both exist.
    """
    data_dir = Path(data_dir)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"RAF-DB data directory not found: {data_dir}")
    if layout in ("auto", "provider"):
        for basic in (data_dir, data_dir / "basic"):
            if (basic / "EmoLabel").is_dir():
                return "provider", basic
    if layout in ("auto", "kaggle") and all((data_dir / f).is_file() for f in KAGGLE_FILES.values()):
        return "kaggle", data_dir
    wanted = {
        "provider": f"EmoLabel/{LABEL_FILE_NAMES[0]} (or {LABEL_FILE_NAMES[1]}) in {data_dir} or {data_dir / 'basic'}",
        "kaggle": f"{' and '.join(KAGGLE_FILES.values())} in {data_dir}",
    }
    asked = [wanted[layout]] if layout != "auto" else list(wanted.values())
    raise DataFolderError(f"no RAF-DB data ({layout} layout) in {data_dir}: expected {'; or '.join(asked)}")


def _check_exists(records: list[ImageRecord], what: str) -> None:
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise FileNotFoundError(f"{len(missing)} {what} image(s) are missing, e.g. {shown}")


def _read_provider(
    basic: Path, images: str, landmarks: bool, check_images: bool
) -> tuple[dict[str, list[ImageRecord]], dict[str, Any]]:
    label_path = find_label_file(basic)
    rows = read_label_file(label_path)
    splits: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    missing_boxes: list[str] = []
    missing_landmarks = 0
    for number, name, label in rows:
        stem = name.rsplit(".", 1)[0]
        split = _split_of(name, f"{label_path}, line {number}")
        source = f"{label_path.name}:{number}"
        if images == "aligned":
            record = ImageRecord(
                image_key("rafdb", name), basic / "Image" / "aligned" / f"{stem}_aligned.jpg", label, source=source
            )
        else:
            box_path = basic / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
            if not box_path.is_file():
                missing_boxes.append(str(box_path))
                continue
            points = None
            if landmarks:
                manual = basic / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
                if manual.is_file():
                    points = read_manual_landmarks(manual)
                else:
                    missing_landmarks += 1
            record = ImageRecord(
                image_key("rafdb", name),
                basic / "Image" / "original" / name,
                label,
                box=read_bounding_box(box_path),
                landmarks=points,
                source=source,
                box_source=str(box_path),
            )
        splits[split].append(record)
    if missing_boxes:
        raise FileNotFoundError(
            f"--images original needs a face box per image; {len(missing_boxes)} missing, e.g. "
            f"{', '.join(missing_boxes[:5])}"
        )
    if check_images:
        for split, records in splits.items():
            _check_exists(records, f"{images} {split}")
    report = {"label_file": str(label_path), "label_file_spelling": label_path.name, "rows": len(rows)}
    if landmarks:
        report["missing_landmarks"] = missing_landmarks
    return splits, report


# ---------------------------------------------------------------------------------------------------------------
# Kaggle-style copy


def read_kaggle_csv(path: str | Path) -> list[tuple[int, str, int]]:
    """Rows of ``train_labels.csv`` / ``test_labels.csv`` (``image,label``, 1-7) as ``(line, image, class)``."""
    path = Path(path)
    lines = text_lines(path, "RAF-DB file")  # a byte that is not UTF-8: an error naming its line
    with contextlib.closing(lines):
        return _read_kaggle_rows(lines, path)


def _read_kaggle_rows(handle: Any, path: Path) -> list[tuple[int, str, int]]:
    rows: list[tuple[int, str, int]] = []
    seen: dict[str, int] = {}
    reader = csv.reader(handle)
    header = [h.strip().lower() for h in next(reader, [])]
    if "image" not in header or "label" not in header:
        raise ValueError(f"{path}: expected a header 'image,label', got {','.join(header)!r}")
    at_image, at_label = header.index("image"), header.index("label")
    for fields in reader:
        number = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        where = f"{path}, line {number}"
        if len(fields) != len(header):
            raise ValueError(f"{where}: {len(fields)} fields, expected {len(header)} as in the header")
        name = fields[at_image].strip()
        _split_of(name, where)
        if name in seen:
            raise ValueError(f"{where}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = number
        rows.append((number, name, _label(fields[at_label].strip(), where)))
    return rows


def _read_kaggle(root: Path, check_images: bool) -> tuple[dict[str, list[ImageRecord]], dict[str, Any]]:
    image_root = root / "DATASET" if (root / "DATASET").is_dir() else root
    splits: dict[str, list[ImageRecord]] = {}
    for split, file_name in KAGGLE_FILES.items():
        path = root / file_name
        records = []
        for number, name, label in read_kaggle_csv(path):
            if _split_of(name, f"{path}, line {number}") != split:
                raise ValueError(f"{path}, line {number}: {name} is not a {split} image (name prefix)")
            records.append(
                ImageRecord(
                    image_key("rafdb", name),
                    image_root / split / str(label + 1) / name,
                    label,
                    source=f"{file_name}:{number}",
                )
            )
        if check_images:
            _check_exists(records, f"kaggle {split}")
        splits[split] = records
    return splits, {
        "label_file": ", ".join(str(root / f) for f in KAGGLE_FILES.values()),
        "image_root": str(image_root),
        "rows": sum(len(v) for v in splits.values()),
    }


def load_rafdb(
    data_dir: str | Path,
    *,
    layout: str = "auto",
    images: str = "aligned",
    landmarks: bool = False,
    check_images: bool = True,
) -> RAFDBData:
    """Read RAF-DB from ``data_dir`` (see the module docstring). ``landmarks`` (original images only) reads the
    manual 5-point annotations; every listed image must exist when ``check_images``."""
    if images not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {images!r}; expected one of {', '.join(IMAGE_KINDS)}")
    if landmarks and images != "original":
        raise ValueError(
            "landmarks exist only for the original images (the alignment of Image/aligned/ is not "
            "published); use images='original'"
        )
    found, root = detect_layout(data_dir, layout)
    if found == "kaggle":
        if images != "aligned":
            raise ValueError(f"the Kaggle-style copy in {root} has aligned images only; use --images aligned")
        splits, report = _read_kaggle(root, check_images)
    else:
        splits, report = _read_provider(root, images, landmarks, check_images)
    report = {
        "layout": found,
        "root": str(root),
        "images": images,
        **report,
        "splits": {
            s: {"images": len(r), "class_counts": class_counts([x.label for x in r], RAFDB_CLASSES)}
            for s, r in splits.items()
        },
    }
    return RAFDBData(found, root, images, splits["train"], splits["test"], report)


def format_report(report: dict[str, Any]) -> str:
    """Human-readable counts of :attr:`RAFDBData.report` (plus the hold-out split when present)."""
    lines = [f"RAF-DB ({report['layout']} layout, {report['images']} images) from {report['label_file']}"]
    for split, entry in report["splits"].items():
        classes = ", ".join(f"{k} {v}" for k, v in entry["class_counts"].items())
        lines.append(f"  {split}: {entry['images']} images [{classes}]")
    selection = report.get("model_selection")
    if selection:
        for split, what in (("train", "trained on"), ("valid", "held out of train for model selection")):
            classes = ", ".join(f"{k} {v}" for k, v in selection[split]["class_counts"].items())
            lines.append(f"  {what}: {selection[split]['images']} images [{classes}]")
    if report.get("missing_landmarks"):
        lines.append(f"  {report['missing_landmarks']} image(s) without manual landmarks (their regions are dropped)")
    for name, entry in report.get("subset_lists", {}).items():
        label = f", labels cross-checked with {entry['label_file']}" if entry.get("label_file") else ""
        lines.append(
            f"  subset {name}: {entry['entries']} images ({entry['format']}, {entry['duplicates']} "
            f"duplicate line(s)){label}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Subset lists


def companion_label_file(list_path: str | Path) -> Path | None:
    """The published label file beside a pose list: ``*_list*.txt`` -> ``*_label*.txt`` (e.g.
    ``val_raf_db_list_45.txt`` -> ``val_raf_db_label_45.txt``), or None when there is none."""
    list_path = Path(list_path)
    name = list_path.name
    at = name.rfind("_list")
    if at < 0:
        return None
    candidate = list_path.with_name(name[:at] + "_label" + name[at + len("_list") :])
    return candidate if candidate.is_file() and candidate != list_path else None


def parse_rafdb_subset(
    path: str | Path,
    name: str | None = None,
    label_path: str | Path | None = None,
) -> SubsetList:
    """Parse a published RAF-DB occlusion or pose list; a pose list's label file (given, or found by
    :func:`companion_label_file`) is cross-checked line by line against the labels in the list."""
    path = Path(path)
    if label_path is None:
        label_path = companion_label_file(path)
    subset = parse_subset_list(path, dataset="rafdb", name=name)
    if label_path is not None and subset.format != "rafdb_pose":
        raise ValueError(f"{label_path} is a label file for a pose list, but {path} is a {subset.format} list")
    if label_path is not None:
        subset = parse_subset_list(path, dataset="rafdb", label_path=label_path, name=name)
    return subset
