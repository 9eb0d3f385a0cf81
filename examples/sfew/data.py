"""SFEW 2.0 readers: ``Train/`` and ``Val/`` with one folder per emotion (movie frames), or the aligned-face
variant ``Train_Aligned_Faces/`` + ``Val_Aligned_Faces_new/``; a plain subset-list reader.

Class order (:data:`SFEW_CLASSES`): angry, disgust, fear, happy, neutral, sad, surprise -- the alphabetical
order of the shipped folders (what ``torchvision.datasets.ImageFolder`` gives on them). Every checkpoint and
summary.json records it.

Folder names are mapped explicitly (:data:`FOLDER_NAMES`, case-insensitive): the shipped ``Angry, Disgust,
Fear, Happy, Neutral, Sad, Surprise`` and the spellings ``Anger, Happiness, Sadness`` that circulate. A folder
with any other name is a ValueError naming it (never a silently dropped class), and so is a missing class
folder or two folders of one class. Files that are not images (``.txt``, ``Thumbs.db``, hidden files) are
skipped and counted in the report.

The test labels of SFEW are withheld, so the paper reports the validation set: ``Val`` is the *test* split
here (evaluated once) and part of ``Train`` is held out for model selection. Which validation set was used
(frames ``Val`` or ``Val_Aligned_Faces_new``) goes into the report and summary.json: papers differ on it.

Image keys (subset matching) are the file stems (``Airheads_000519240_00000005``); they must be unique within
a split.

Small look-alikes to try it on: ``python -m examples.common.synthetic sfew --out /tmp/sfew`` (the generator,
:func:`examples.common.synthetic.generate_sfew`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.common.folder_data import (
    IMAGE_SUFFIXES,
    DataFolderError,
    ImageListDataset,
    ImageRecord,
    class_counts,
)
from examples.common.subsets import SubsetEntry, SubsetList, read_text_lines
from examples.sfew.formats import FOLDER_NAMES, SFEW_CLASSES, SHIPPED_FOLDERS, VARIANTS

__all__ = [
    "FOLDER_NAMES",
    "SFEW_CLASSES",
    "SHIPPED_FOLDERS",
    "VARIANTS",
    "SFEWData",
    "detect_variant",
    "folder_class",
    "format_report",
    "load_sfew",
    "parse_sfew_subset",
    "read_split_folder",
]

_DESCRIPTION = {"frames": "movie frames (720 x 576 in the release)", "aligned": "aligned faces"}


@dataclass
class SFEWData:
    """Train and validation records of one SFEW variant, and what was read (``report``, ``notes``)."""

    variant: str
    root: Path
    train: list[ImageRecord]
    val: list[ImageRecord]
    report: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def dataset(self, records: list[ImageRecord], image_size: int = 224, fit: str = "stretch") -> ImageListDataset:
        return ImageListDataset(records, image_size, fit=fit)


def folder_class(name: str, where: Path | str = "") -> int:
    """The class index of a class-folder name; ValueError naming the folder for an unknown one."""
    index = FOLDER_NAMES.get(name.strip().lower())
    if index is None:
        raise ValueError(
            f"{Path(where) / name if where else name}: folder {name!r} is not an SFEW class folder; expected "
            f"{', '.join(SHIPPED_FOLDERS)} (also accepted: Anger, Happiness, Sadness; case does not matter)"
        )
    return index


def read_split_folder(folder: str | Path) -> tuple[list[ImageRecord], dict[str, Any]]:
    """Records of one split folder (``Train/``, ``Val_Aligned_Faces_new/``, ...) and its counts.

    Every sub-folder must be a class folder and every class must have one; images are the files with a suffix
    of :data:`IMAGE_SUFFIXES` (case-insensitive), other files are skipped and counted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"SFEW split folder not found: {folder}")
    by_class: dict[int, Path] = {}
    loose = 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose += 1
            continue
        index = folder_class(entry.name, folder)
        if index in by_class:
            raise ValueError(
                f"{folder}: folders {by_class[index].name!r} and {entry.name!r} are both class {SFEW_CLASSES[index]!r}"
            )
        by_class[index] = entry
    missing = [SHIPPED_FOLDERS[i] for i in range(len(SFEW_CLASSES)) if i not in by_class]
    if missing:
        raise FileNotFoundError(
            f"{folder}: no folder for class(es) {', '.join(missing)}; found "
            f"{', '.join(p.name for p in by_class.values()) or 'none'}"
        )
    records: list[ImageRecord] = []
    folders: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    seen: dict[str, Path] = {}
    for index in range(len(SFEW_CLASSES)):
        class_dir = by_class[index]
        count = 0
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(str(path))
                continue
            key = path.stem
            if key in seen:
                raise ValueError(
                    f"{folder}: image name {key!r} appears twice ({seen[key]} and {path}); image keys "
                    "must be unique within a split"
                )
            seen[key] = path
            records.append(ImageRecord(key, path, index, source=f"{folder.name}/{class_dir.name}"))
            count += 1
        folders[class_dir.name] = {"class": SFEW_CLASSES[index], "images": count}
    report = {
        "folder": str(folder),
        "images": len(records),
        "folders": folders,
        "class_counts": class_counts([r.label for r in records], SFEW_CLASSES),
        "skipped_files": len(skipped),
        "skipped_examples": skipped[:5],
        "loose_files": loose,
    }
    return records, report


def detect_variant(data_dir: str | Path, variant: str = "auto") -> tuple[str, Path, Path]:
    """``(variant, train folder, validation folder)``. ``auto``: the variant whose folders exist; when both do,
    the aligned faces (frames need a face detector the release does not include)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"SFEW data directory not found: {data_dir}")
    if variant not in ("auto", *VARIANTS):
        raise ValueError(f"unknown variant {variant!r}; expected auto, {', '.join(VARIANTS)}")
    order = ["aligned", "frames"] if variant == "auto" else [variant]
    for name in order:
        train, vals = VARIANTS[name]
        val = next((data_dir / v for v in vals if (data_dir / v).is_dir()), None)
        if (data_dir / train).is_dir() and val is not None:
            return name, data_dir / train, val
    wanted = "; or ".join(f"{VARIANTS[n][0]}/ and {' or '.join(v + '/' for v in VARIANTS[n][1])}" for n in order)
    present = [p.name for p in sorted(data_dir.iterdir()) if p.is_dir()]
    raise DataFolderError(
        f"no SFEW data in {data_dir}: expected {wanted}; found folders: {', '.join(present) or 'none'}"
    )


def load_sfew(data_dir: str | Path, variant: str = "auto") -> SFEWData:
    """Read the train and validation folders of one variant (see the module docstring)."""
    found, train_dir, val_dir = detect_variant(data_dir, variant)
    train, train_report = read_split_folder(train_dir)
    val, val_report = read_split_folder(val_dir)
    other = "frames" if found == "aligned" else "aligned"
    also = [v for v in VARIANTS[other][1] if (Path(data_dir) / v).is_dir()]
    report = {
        "variant": found,
        "requested_variant": variant,
        "root": str(data_dir),
        "splits": {"train": train_report, "val": val_report},
    }
    notes = {
        "validation_set": {
            "folder": val_dir.name,
            "variant": found,
            "images": len(val),
            "description": f"SFEW 2.0 {val_dir.name} ({_DESCRIPTION[found]}), used as the test split (the paper's "
            "protocol: Test labels are withheld)",
            **({"not_used": also} if also else {}),
        }
    }
    return SFEWData(found, Path(data_dir), train, val, report, notes)


def format_report(report: dict[str, Any]) -> str:
    lines = [f"SFEW ({report['variant']} variant) from {report['root']}"]
    for split, entry in report["splits"].items():
        folders = ", ".join(f"{name} {v['images']}" for name, v in entry["folders"].items())
        skipped = f"; {entry['skipped_files']} non-image file(s) skipped" if entry["skipped_files"] else ""
        lines.append(f"  {split} ({Path(entry['folder']).name}): {entry['images']} images [{folders}]{skipped}")
    selection = report.get("model_selection")
    if selection:
        for split, what in (("train", "trained on"), ("valid", "held out of train for model selection")):
            classes = ", ".join(f"{k} {v}" for k, v in selection[split]["class_counts"].items())
            lines.append(f"  {what}: {selection[split]['images']} images [{classes}]")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Subset lists (no subset lists were published for SFEW; this reads plain lists of validation images)


def _label_of(text: str, where: str) -> int:
    if text.isascii() and text.isdigit():
        if int(text) >= len(SFEW_CLASSES):
            raise ValueError(f"{where}: label {text} is not a class index 0..{len(SFEW_CLASSES) - 1}")
        return int(text)
    index = FOLDER_NAMES.get(text.lower())
    if index is None:
        raise ValueError(
            f"{where}: label {text!r} is neither a class index nor a class name ({', '.join(SFEW_CLASSES)})"
        )
    return index


def parse_sfew_subset(path: str | Path, name: str | None = None) -> SubsetList:
    """Read a list of SFEW validation images: one per line, ``[<Folder>/]<image>[.png] [<label>] [<type>]``.

    The key is the image stem; the label is the class folder in the path, or the second field (a class index in
    :data:`SFEW_CLASSES` order or a class name), or none; both given must agree. An optional integer third field
    is a type (accuracy is then also reported per type). Duplicate lines count once; conflicting ones are errors.
    """
    path = Path(path)
    lines = read_text_lines(path)
    if not lines:
        raise ValueError(f"{path}: the subset list is empty")
    entries: dict[str, SubsetEntry] = {}
    duplicates: list[str] = []
    for number, line in lines:
        where = f"{path}, line {number}"
        parts = line.split()
        if len(parts) > 3:
            raise ValueError(f"{where}: expected '[<Folder>/]<image> [<label>] [<type>]', got {line!r}")
        image = Path(parts[0].replace("\\", "/"))
        key = image.stem if image.suffix.lower() in IMAGE_SUFFIXES else image.name
        label = folder_class(image.parent.name, where) if image.parent.name else None
        if len(parts) >= 2:
            own = _label_of(parts[1], where)
            if label is not None and own != label:
                raise ValueError(f"{where}: folder {image.parent.name!r} and label {parts[1]!r} disagree")
            label = own
        kind = None
        if len(parts) == 3:
            if not (parts[2].isascii() and parts[2].lstrip("-").isdigit()):
                raise ValueError(f"{where}: the type must be an integer, got {parts[2]!r}")
            kind = int(parts[2])
        previous = entries.get(key)
        if previous is None:
            entries[key] = SubsetEntry(key, label, kind, number)
        elif (previous.label, previous.kind) == (label, kind):
            duplicates.append(key)
        else:
            raise ValueError(
                f"{where}: {key} is listed again with label {label}, type {kind} (line {previous.line}: "
                f"label {previous.label}, type {previous.kind})"
            )
    return SubsetList(
        name=name if name is not None else path.stem,
        path=path,
        dataset="sfew",
        format="sfew_list",
        entries=list(entries.values()),
        duplicates=len(duplicates),
        lines=len(lines),
        duplicate_keys=duplicates,
    )
