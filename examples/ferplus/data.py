"""FERPlus readers: the CSV layout (``fer2013.csv`` + ``fer2013new.csv``) and the provider's image folders.

Layouts (:func:`load_ferplus` detects them; when both are present the CSV layout is used, because it needs no
image files and its keys come straight from ``fer2013new.csv``):

* **CSV**: ``fer2013.csv`` (``emotion,pixels,Usage``; 2304 grey values per row) and ``fer2013new.csv``
  (``Usage,Image name,neutral,...,contempt,unknown,NF``, or the older version without ``Image name``), looked for
  in ``data_dir`` and ``data_dir/fer2013``. The two files correspond row by row; ``Usage`` Training / PublicTest /
  PrivateTest gives the split train / valid / test. Rows with an empty ``Image name`` are dropped and counted.
  The image key is the ``Image name`` without ``.png``. Note that these names are *not* the row index (the
  provider's numbering skips ahead of it after some dropped rows; e.g. the first PrivateTest row is
  ``fer0032220``, row 32298); the older file has no names, so its keys are made from the 0-based row index
  (``fer%07d``) and do not match the provider's image names or the published subset lists (the report says
  ``keys_from: row_index``).
* **Folders**: ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/`` (in ``data_dir`` or ``data_dir/data``),
  each with PNG images and a header-less ``label.csv`` whose rows are ``name,"(x, y, w, h)",<10 votes>`` or, as
  the provider's ``generate_training_data.py`` writes them, ``name,<10 votes>``. Images are read lazily.

Labels follow the provider's reference code (microsoft/FERPlus ``src/ferplus.py``), see :func:`process_votes`.
Only the train split uses ``label_mode``; valid and test always use majority labels.

Dataset items (:class:`FERPlusDataset`): ``(image, target, label, index)`` with ``image`` a ``torch.uint8``
tensor ``(3, S, S)`` (the 48x48 grey image resized once with PIL bilinear and replicated to 3 channels; the RAN
authors feed RGB in [0, 1] without mean/std normalisation, i.e. ``image.float() / 255``), ``target`` a float32
vector of 8 (see :func:`draw_target`), ``label`` the majority label (int, -1 where the votes have no majority)
and ``index`` the position in the split. Default collation turns ``label`` and ``index`` into int64 tensors.

What the loss does with ``target`` per mode (:func:`ferplus_loss`), as in the provider's ``train.py``:

* ``majority``: target is one-hot; cross-entropy.
* ``crossentropy``: target is the kept vote distribution; cross-entropy against it (soft targets).
* ``probability``: the stored distribution is sampled to a one-hot target every time the image is drawn
  (:func:`draw_target`); cross-entropy.
* ``multi_target``: the drawn target is ``(1 - 0.001) * [kept > 0] + 0.001`` (multi-hot, not normalised); the
  loss is ``-log(max_j target_j * softmax(logits)_j)``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from examples.common.folder_data import DataFolderError, digest_files, read_image, text_lines
from examples.ferplus.formats import (
    FERPLUS_CLASSES,
    LABEL_MODES,
    SPLIT_FOLDERS,
    SPLITS,
    USAGE_TO_SPLIT,
    VOTE_COLUMNS,
    LabelDecision,
    majority_label,
    process_votes,
)

__all__ = [
    "FERPLUS_CLASSES",
    "LABEL_MODES",
    "MULTI_TARGET_EPSILON",
    "SPLITS",
    "SPLIT_FOLDERS",
    "USAGE_TO_SPLIT",
    "VOTE_COLUMNS",
    "FERPlusDataset",
    "FERPlusRecord",
    "FERPlusSplit",
    "LabelDecision",
    "detect_layout",
    "draw_target",
    "ferplus_loss",
    "format_report",
    "load_ferplus",
    "majority_label",
    "process_votes",
    "read_ferplus_csv",
    "read_ferplus_folders",
]

#: Added to every entry of a multi_target target, as in the provider's code (avoids log(0)).
MULTI_TARGET_EPSILON = 0.001

_NUM_CLASSES = len(FERPLUS_CLASSES)
_NUM_VOTES = len(VOTE_COLUMNS)
_PIXELS = 48 * 48

# ---------------------------------------------------------------------------------------------------------------
# Label rules (process_votes, majority_label: examples.ferplus.formats)


def draw_target(target: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The target the loss sees for one draw of an image (``target``: the stored 8-vector, or a batch of them).

    ``probability``: a one-hot vector sampled from ``target`` (a new sample at every draw; uses ``generator`` or
    torch's global RNG, which DataLoader seeds per worker and epoch). ``multi_target``:
    ``(1 - MULTI_TARGET_EPSILON) * (target > 0) + MULTI_TARGET_EPSILON``. ``majority`` / ``crossentropy``:
    ``target`` unchanged.
    """
    if mode in ("majority", "crossentropy"):
        return target
    if mode == "probability":
        flat = target.reshape(-1, target.shape[-1]).to(torch.float64)
        picks = torch.multinomial(flat, 1, generator=generator)
        one_hot = torch.zeros_like(flat).scatter_(1, picks, 1.0)
        return one_hot.reshape(target.shape).to(target.dtype)
    if mode == "multi_target":
        return (target > 0).to(target.dtype) * (1.0 - MULTI_TARGET_EPSILON) + MULTI_TARGET_EPSILON
    raise ValueError(f"unknown label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")


def ferplus_loss(logits: torch.Tensor, targets: torch.Tensor, mode: str) -> torch.Tensor:
    """Batch-mean loss of the provider's ``train.py`` for drawn ``targets`` (see :func:`draw_target`).

    ``majority`` / ``probability`` / ``crossentropy``: ``-sum_j t_j log softmax(logits)_j``;
    ``multi_target``: ``-log max_j (t_j softmax(logits)_j)``.
    """
    log_p = F.log_softmax(logits, dim=-1)
    if mode in ("majority", "probability", "crossentropy"):
        return -(targets * log_p).sum(-1).mean()
    if mode == "multi_target":
        return -(log_p + torch.log(targets)).amax(-1).mean()
    raise ValueError(f"unknown label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")


# ---------------------------------------------------------------------------------------------------------------
# Records, splits, reports


@dataclass(frozen=True)
class FERPlusRecord:
    """One kept image: ``key`` (``fer0000123``), raw ``votes`` (10), ``target`` (8 floats, see
    :func:`process_votes`), majority ``label`` (-1 if none), 1-based ``line`` in the label file, and
    ``image_path`` (folder layout only)."""

    key: str
    votes: tuple[int, ...]
    target: tuple[float, ...]
    label: int
    line: int
    image_path: Path | None = None


@dataclass
class FERPlusSplit:
    """The kept images of one split. ``pixels`` (CSV layout): ``(N, 48, 48)`` uint8, aligned with ``records``."""

    name: str
    label_mode: str
    layout: str
    records: list[FERPlusRecord]
    report: dict[str, Any]
    pixels: torch.Tensor | None = None
    #: SHA-256 of the pixels (CSV layout: hashed as the rows are read; folder layout: the image files' bytes,
    #: read by :meth:`fingerprint`) and of every kept record's key, raw votes and target
    content_sha256: str | None = None
    labels_sha256: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> dict[str, str]:
        """``{"images", "labels"}`` SHA-256 hashes of the split's content (see the run's data fingerprint)."""
        if self.content_sha256 is None:
            paths = [r.image_path for r in self.records if r.image_path is not None]
            self.content_sha256 = hashlib.sha256("\n".join(digest_files(paths)).encode()).hexdigest()
        return {"images": self.content_sha256, "labels": self.labels_sha256}

    def keys(self) -> list[str]:
        """Image keys in dataset order (for subset matching)."""
        return [r.key for r in self.records]

    def key_to_index(self) -> dict[str, int]:
        return {r.key: i for i, r in enumerate(self.records)}

    def labels(self) -> torch.Tensor:
        """Majority labels ``(N,)`` int64, -1 where none."""
        return torch.tensor([r.label for r in self.records], dtype=torch.int64)

    def targets(self) -> torch.Tensor:
        """Stored targets ``(N, 8)`` float32."""
        return torch.tensor([r.target for r in self.records], dtype=torch.float32).reshape(-1, _NUM_CLASSES)

    def dataset(self, image_size: int | None = 224, **kwargs: Any) -> FERPlusDataset:
        return FERPlusDataset(self, image_size=image_size, **kwargs)


class _SplitBuilder:
    def __init__(self, name: str, label_mode: str, layout: str, source: str, keys_from: str) -> None:
        self.name = name
        self.label_mode = label_mode
        self.records: list[FERPlusRecord] = []
        self.rows = 0
        self.empty_name = 0
        self.dropped: Counter[str] = Counter()
        self.pixels = bytearray()
        self.layout = layout
        self.source = source
        self.keys_from = keys_from
        self.seen: dict[str, tuple[str, int]] = {}
        self.pixel_hash = hashlib.sha256()
        self.label_hash = hashlib.sha256()

    def add(
        self,
        key: str,
        votes: tuple[int, ...],
        where: tuple[str, int],
        pixels: bytes | None = None,
        image_path: Path | None = None,
    ) -> None:
        previous = self.seen.get(key)
        if previous is not None:
            raise ValueError(
                f"{where[0]}, line {where[1]}: image {key!r} appears twice in split {self.name!r} "
                f"(first at {previous[0]}, line {previous[1]})"
            )
        self.seen[key] = where
        decision = process_votes(votes, self.label_mode)
        if decision.target is None:
            self.dropped[decision.reason] += 1
            return
        self.records.append(FERPlusRecord(key, votes, decision.target, majority_label(votes), where[1], image_path))
        self.label_hash.update(json.dumps([key, votes, decision.target]).encode())
        if pixels is not None:
            self.pixels += pixels
            self.pixel_hash.update(pixels)

    def build(self, with_pixels: bool) -> FERPlusSplit:
        counts = [0] * _NUM_CLASSES
        for record in self.records:
            counts[record.target.index(max(record.target))] += 1
        report = {
            "split": self.name,
            "layout": self.layout,
            "source": self.source,
            "label_mode": self.label_mode,
            "keys_from": self.keys_from,
            "rows": self.rows,
            "dropped_empty_name": self.empty_name,
            "dropped": dict(sorted(self.dropped.items())),
            "kept": len(self.records),
            "class_counts": dict(zip(FERPLUS_CLASSES, counts, strict=True)),
            "without_majority_label": sum(r.label < 0 for r in self.records),
        }
        pixels = None
        if with_pixels:
            if self.records:
                pixels = torch.frombuffer(self.pixels, dtype=torch.uint8).reshape(-1, 48, 48)
            else:
                pixels = torch.empty((0, 48, 48), dtype=torch.uint8)
        return FERPlusSplit(
            self.name,
            self.label_mode,
            self.layout,
            self.records,
            report,
            pixels,
            self.pixel_hash.hexdigest() if with_pixels else None,
            self.label_hash.hexdigest(),
        )


def _mode_for(split: str, label_mode: str) -> str:
    return label_mode if split == "train" else "majority"


def _check_request(label_mode: str, splits: Iterable[str]) -> tuple[str, ...]:
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {label_mode!r}; expected one of {', '.join(LABEL_MODES)}")
    chosen = tuple(splits)
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown or not chosen:
        raise ValueError(f"unknown split(s) {unknown or chosen!r}; expected some of {', '.join(SPLITS)}")
    return chosen


def format_report(splits: dict[str, FERPlusSplit]) -> str:
    """Human-readable counts of every split (rows read, dropped and why, kept, class histogram)."""
    lines = []
    for split in splits.values():
        r = split.report
        dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none"
        classes = ", ".join(f"{k} {v}" for k, v in r["class_counts"].items())
        lines.append(
            f"{r['split']} ({r['layout']}, {r['label_mode']}, keys from {r['keys_from']}): {r['rows']} rows, "
            f"{r['dropped_empty_name']} without image name, dropped by label rule: {dropped}; kept {r['kept']} "
            f"[{classes}]"
            + (f"; {r['without_majority_label']} kept without a majority label" if r["without_majority_label"] else "")
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Parsing helpers


def _parse_votes(fields: Sequence[str], path: Path, line: int) -> tuple[int, ...]:
    votes = []
    for column, text in zip(VOTE_COLUMNS, fields, strict=True):
        text = text.strip()
        if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, int("²") fails
            raise ValueError(
                f"{path}, line {line}: vote count for {column!r} must be a non-negative integer, got {text!r}"
            )
        votes.append(int(text))
    return tuple(votes)


def _parse_pixels(text: str, path: Path, line: int) -> bytes:
    parts = text.split()
    if len(parts) != _PIXELS:
        raise ValueError(f"{path}, line {line}: 'pixels' has {len(parts)} values, expected {_PIXELS} (48x48)")
    try:
        return bytes(map(int, parts))
    except ValueError:
        bad = next((p for p in parts if not (p.isascii() and p.isdigit() and int(p) < 256)), "?")
        raise ValueError(f"{path}, line {line}: 'pixels' must be integers in 0..255, found {bad!r}") from None


def _open_csv(path: Path) -> tuple[contextlib.closing[Any], Any]:
    """A ``csv.reader`` over the file's lines (:func:`~examples.common.folder_data.text_lines`: a byte that is
    not UTF-8 is an error naming the file and its line), and the handle that closes the file."""
    lines = text_lines(path, "FERPlus file")  # opened at the first line read: a missing file raises there
    return contextlib.closing(lines), csv.reader(lines)


def _header(reader: Any, path: Path) -> list[str]:
    try:
        return [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty file (expected a header line)") from None


def _usage(text: str, path: Path, line: int) -> str:
    split = USAGE_TO_SPLIT.get(text.strip())
    if split is None:
        raise ValueError(f"{path}, line {line}: unknown Usage {text!r}; expected one of {', '.join(USAGE_TO_SPLIT)}")
    return split


# ---------------------------------------------------------------------------------------------------------------
# CSV layout


def _read_ferplus_new(path: Path) -> tuple[list[tuple[int, str, str | None, tuple[int, ...]]], bool]:
    """Rows of fer2013new.csv as (line, split, image name or None, votes); also whether names exist."""
    handle, reader = _open_csv(path)
    with handle:
        header = _header(reader, path)
        required = ["Usage", *VOTE_COLUMNS]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}, expected "
                f"'Usage,Image name,{','.join(VOTE_COLUMNS)}' (or the older version without 'Image name')"
            )
        has_names = "Image name" in header
        usage_at = header.index("Usage")
        name_at = header.index("Image name") if has_names else -1
        vote_at = [header.index(c) for c in VOTE_COLUMNS]
        rows = []
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ValueError(f"{path}, line {line}: {len(fields)} fields, expected {len(header)} as in the header")
            split = _usage(fields[usage_at], path, line)
            name = fields[name_at].strip() if has_names else None
            votes = _parse_votes([fields[i] for i in vote_at], path, line)
            rows.append((line, split, name, votes))
    return rows, has_names


def read_ferplus_csv(
    fer_csv: str | Path,
    ferplus_csv: str | Path,
    label_mode: str = "majority",
    splits: Iterable[str] = SPLITS,
) -> dict[str, FERPlusSplit]:
    """Read the CSV layout: ``fer2013.csv`` pixels + ``fer2013new.csv`` votes (see the module docstring).

    Pixels are parsed only for rows of the requested ``splits`` (every such row is validated, kept or not) and
    held as one ``(N, 48, 48)`` uint8 tensor per split. Parsing the full file takes several seconds.
    """
    chosen = _check_request(label_mode, splits)
    fer_csv, ferplus_csv = Path(fer_csv), Path(ferplus_csv)
    new_rows, has_names = _read_ferplus_new(ferplus_csv)
    source = f"{fer_csv} + {ferplus_csv}"
    keys_from = "image_name" if has_names else "row_index"
    builders = {s: _SplitBuilder(s, _mode_for(s, label_mode), "csv", source, keys_from) for s in chosen}

    handle, reader = _open_csv(fer_csv)
    with handle:
        header = _header(reader, fer_csv)
        missing = [c for c in ("pixels", "Usage") if c not in header]
        if missing:
            raise ValueError(
                f"{fer_csv}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}, "
                "expected 'emotion,pixels,Usage'"
            )
        pixels_at, usage_at = header.index("pixels"), header.index("Usage")
        index = 0
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ValueError(
                    f"{fer_csv}, line {line}: {len(fields)} fields, expected {len(header)} as in the header"
                )
            split = _usage(fields[usage_at], fer_csv, line)
            if index >= len(new_rows):
                raise ValueError(
                    f"{fer_csv} has more data rows than {ferplus_csv} ({len(new_rows)}); the files must "
                    f"correspond row by row (first extra row at line {line})"
                )
            new_line, new_split, name, votes = new_rows[index]
            if new_split != split:
                raise ValueError(
                    f"{fer_csv}, line {line} (split {split}) and {ferplus_csv}, line {new_line} (split {new_split}) "
                    "disagree on Usage; the files must correspond row by row"
                )
            builder = builders.get(split)
            if builder is not None:
                pixels = _parse_pixels(fields[pixels_at], fer_csv, line)
                builder.rows += 1
                if name == "":
                    builder.empty_name += 1
                else:
                    key = _key_from_name(name, ferplus_csv, new_line) if name is not None else f"fer{index:07d}"
                    builder.add(key, votes, (str(ferplus_csv), new_line), pixels=pixels)
            index += 1
    if index != len(new_rows):
        raise ValueError(
            f"{fer_csv} has {index} data rows but {ferplus_csv} has {len(new_rows)}; the files must correspond "
            "row by row"
        )
    return {s: builders[s].build(with_pixels=True) for s in chosen}


_IMAGE_NAME = re.compile(r"[^/\\]+\.(?:png|jpg|jpeg)", re.IGNORECASE)


def _key_from_name(name: str, path: Path, line: int) -> str:
    if not _IMAGE_NAME.fullmatch(name):
        raise ValueError(f"{path}, line {line}: image name {name!r} is not an image file name like fer0000000.png")
    return name.rsplit(".", 1)[0]


# ---------------------------------------------------------------------------------------------------------------
# Folder layout


def read_ferplus_folders(
    root: str | Path,
    label_mode: str = "majority",
    splits: Iterable[str] = SPLITS,
    check_images: bool = True,
) -> dict[str, FERPlusSplit]:
    """Read the provider's folders ``root/FER2013{Train,Valid,Test}/label.csv`` (+ PNGs, read lazily).

    With ``check_images`` every kept image file must exist (FileNotFoundError listing the missing ones).
    """
    chosen = _check_request(label_mode, splits)
    root = Path(root)
    result = {}
    for split in chosen:
        folder = root / SPLIT_FOLDERS[split]
        label_csv = folder / "label.csv"
        builder = _SplitBuilder(split, _mode_for(split, label_mode), "folder", str(label_csv), "file_name")
        handle, reader = _open_csv(label_csv)
        with handle:
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) not in (_NUM_VOTES + 1, _NUM_VOTES + 2):
                    raise ValueError(
                        f"{label_csv}, line {line}: {len(fields)} fields, expected 12 (name, face box, 10 votes) "
                        "or 11 (name, 10 votes)"
                    )
                name = fields[0].strip()
                if len(fields) == _NUM_VOTES + 2 and not re.fullmatch(r"\(\s*[\d\s,.-]*\)", fields[1].strip()):
                    raise ValueError(
                        f"{label_csv}, line {line}: face box must look like '(0, 0, 48, 48)', got {fields[1]!r}"
                    )
                votes = _parse_votes(fields[-_NUM_VOTES:], label_csv, line)
                builder.rows += 1
                if not name:
                    builder.empty_name += 1
                    continue
                key = _key_from_name(name, label_csv, line)
                builder.add(key, votes, (str(label_csv), line), image_path=folder / name)
        split_data = builder.build(with_pixels=False)
        if check_images:
            missing = [
                r.image_path for r in split_data.records if r.image_path is not None and not r.image_path.is_file()
            ]
            if missing:
                shown = ", ".join(str(p) for p in missing[:5])
                raise FileNotFoundError(f"{len(missing)} image(s) listed in {label_csv} are missing, e.g. {shown}")
        result[split] = split_data
    return result


# ---------------------------------------------------------------------------------------------------------------
# Layout detection


def detect_layout(data_dir: str | Path, splits: Iterable[str] = SPLITS) -> tuple[str, dict[str, Path]]:
    """Find a FERPlus layout under ``data_dir``: ``("csv", {"fer_csv", "ferplus_csv"})`` or
    ``("folder", {"root"})``. Both present: CSV. Neither: FileNotFoundError naming what was looked for."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"FERPlus data directory not found: {data_dir}")
    csv_dirs = [data_dir, data_dir / "fer2013"]
    fer = next((d / "fer2013.csv" for d in csv_dirs if (d / "fer2013.csv").is_file()), None)
    new = next((d / "fer2013new.csv" for d in csv_dirs if (d / "fer2013new.csv").is_file()), None)
    if fer is not None and new is not None:
        return "csv", {"fer_csv": fer, "ferplus_csv": new}
    wanted = [SPLIT_FOLDERS[s] for s in _check_request("majority", splits)]
    roots = [data_dir, data_dir / "data"]
    for root in roots:
        if all((root / f / "label.csv").is_file() for f in wanted):
            return "folder", {"root": root}
    partial = []
    if (fer is None) != (new is None):
        partial.append(f"found {fer or new} but not {'fer2013new.csv' if new is None else 'fer2013.csv'}")
    for root in roots:
        have = [f for f in wanted if (root / f / "label.csv").is_file()]
        if have:
            lacking = [f"{root / f / 'label.csv'}" for f in wanted if f not in have]
            partial.append(f"missing {', '.join(lacking)}")
    raise DataFolderError(
        f"no FERPlus data in {data_dir}: expected fer2013.csv and fer2013new.csv (in it or its fer2013/ folder), "
        f"or {', '.join(f + '/label.csv' for f in wanted)} (in it or its data/ folder)"
        + (f"; {'; '.join(partial)}" if partial else "")
    )


def load_ferplus(
    data_dir: str | Path,
    label_mode: str = "majority",
    splits: Iterable[str] = SPLITS,
    layout: str = "auto",
) -> dict[str, FERPlusSplit]:
    """Load FERPlus from ``data_dir`` (``layout``: ``"auto"``, ``"csv"`` or ``"folder"``).

    Returns ``{split: FERPlusSplit}`` for the requested splits; ``split.report`` has the counts and
    :func:`format_report` prints them. ``label_mode`` applies to train only; valid and test are majority.
    """
    chosen = _check_request(label_mode, splits)
    if layout not in ("auto", "csv", "folder"):
        raise ValueError(f"unknown layout {layout!r}; expected auto, csv or folder")
    if layout == "auto":
        layout, paths = detect_layout(data_dir, chosen)
    elif layout == "csv":
        paths = {"fer_csv": Path(data_dir) / "fer2013.csv", "ferplus_csv": Path(data_dir) / "fer2013new.csv"}
    else:
        paths = {"root": Path(data_dir)}
    if layout == "csv":
        return read_ferplus_csv(paths["fer_csv"], paths["ferplus_csv"], label_mode, chosen)
    return read_ferplus_folders(paths["root"], label_mode, chosen)


# ---------------------------------------------------------------------------------------------------------------
# Dataset


class FERPlusDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int, int]]):
    """Images and targets of one :class:`FERPlusSplit`; items are ``(image, target, label, index)``.

    ``image``: uint8 ``(3, image_size, image_size)``; the grey image resized once with PIL bilinear (no resize if
    ``image_size`` is None or equal to the stored size) and replicated to 3 channels, then passed through
    ``transform`` if given. ``target``: float32 ``(8,)``, :func:`draw_target` of the stored target under the
    split's label mode when ``draw_targets`` (default), else the stored target. ``label``: majority label, -1 if
    none. ``index``: position in the split (``split.records[index]``).
    """

    def __init__(
        self,
        split: FERPlusSplit,
        image_size: int | None = 224,
        draw_targets: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if split.layout == "csv" and (split.pixels is None or split.pixels.shape[0] != len(split.records)):
            raise ValueError("a CSV-layout split needs one 48x48 pixel block per record")
        self.split = split
        self.image_size = image_size
        self.draw_targets = draw_targets
        self.transform = transform
        self.generator = generator
        self.mode = split.label_mode
        self._targets = split.targets()

    def __len__(self) -> int:
        return len(self.split.records)

    def fingerprint(self) -> dict[str, str]:
        """The split's :meth:`FERPlusSplit.fingerprint`."""
        return self.split.fingerprint()

    def _grey(self, index: int) -> Image.Image:
        record = self.split.records[index]
        if self.split.pixels is not None:
            return Image.frombytes("L", (48, 48), bytes(self.split.pixels[index].reshape(-1).tolist()))
        if record.image_path is None:
            raise ValueError(f"FERPlus record {index} has neither pixels nor an image file")
        return read_image(record.image_path, "L", what="FERPlus image")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        grey = self._grey(index)
        size = self.image_size
        if size is not None and grey.size != (size, size):
            grey = grey.resize((size, size), Image.Resampling.BILINEAR)
        width, height = grey.size
        image = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).reshape(1, height, width)
        image = image.expand(3, height, width).contiguous()
        if self.transform is not None:
            image = self.transform(image)
        target = self._targets[index]
        if self.draw_targets:
            target = draw_target(target, self.mode, self.generator)
        return image, target.clone(), self.split.records[index].label, index
