"""AffectNet readers for both provider layouts, the face-crop dataset, balancing and the bad-image check.

Layouts (:func:`detect_layout`; when both are present the CSV layout is used):

* **csv** (the original release): ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` with the
  header ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``
  and the images under ``Manually_Annotated_Images/<subDirectory_filePath>`` (also looked for in
  ``Manually_Annotated/Manually_Annotated_Images``). ``facial_landmarks`` is 136 ``;``-separated floats
  ``x1;y1;...;x68;y68`` in image pixels (iBUG order); an empty field means no landmarks (NaN). The face box
  ``(face_x, face_y, face_width, face_height)`` is in image pixels.
* **npy** (the newer release): ``train_set/`` and ``val_set/``, each ``images/<id>.jpg`` (already face crops:
  the whole image is the face, there is no box) and ``annotations/<id>_exp.npy`` (the class, a numpy string
  such as ``'3'`` or a number), ``<id>_lnd.npy`` (68 x 2 or 136 floats, pixels of the image; optional),
  ``<id>_val.npy``, ``<id>_aro.npy`` (not read). The ``.npy`` files are read with
  ``numpy.load(allow_pickle=False)`` (:func:`read_npy`).

``expression`` codes: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt (the order
of the published AffectNet occlusion/pose lists), 8 none, 9 uncertain, 10 no-face. ``classes=8`` keeps 0-7,
``classes=7`` keeps 0-6; everything else is dropped and counted per code in the split's report.

The provider's validation set (500 images per class) is the **test** set; :func:`stratified_holdout` holds out a
part of the training set, stratified by class and deterministic in the seed, for model selection.

Memory: a split holds only compact tensors (the image paths as one UTF-8 byte buffer with offsets, face boxes,
5-point landmarks, labels), about 70 bytes per image, never decoded images; this also keeps DataLoader workers
from copying Python objects on access.

Face crops (:func:`load_face`): the face box grows by ``margin`` times its width (height) on the left and right
(top and bottom), is cut from the image and resized to ``S x S`` with PIL bilinear (antialiased) resampling, once,
in the data workers. Parts of the grown box outside the image are **zero (black) padding**, so the face keeps its
position and scale. Non-square boxes are stretched to the square, as the authors' code does. Large JPEGs are
decoded at a reduced DCT scale (1/2, 1/4, 1/8) first when the face still has at least ``S`` pixels, which is much
faster and changes the result only by the resampling. Coordinates are continuous pixel coordinates (pixel ``i``
covers ``[i, i + 1)``), so a landmark at ``x`` maps to ``(x - left) * S / width`` in the crop (:func:`map_points`).
All region cropping then happens on the device, in ``RegionCropper``.

Dataset items (:class:`AffectNetDataset`): ``(image, target, label, index, landmarks)``: ``image`` uint8
``(3, S, S)``, ``target`` = ``label`` the class (int64), ``index`` the position in the split, ``landmarks``
float32 ``(5, 2)``: the 68 points reduced to the 5 MTCNN points (eye centres = mean of points 36-41 / 42-47,
nose tip 30, mouth corners 48 and 54; ``region_attention.functional.reduce_landmarks``) in pixels of the
``S x S`` crop, NaN where missing. Points outside the crop are left there: a landmark cropper masks their regions.

Unreadable images: a missing file is found when the split is read (``os.stat``) and a file that does not decode
raises :class:`BadImageError` naming its path when it is loaded. :func:`verify_images` decodes every image (in
parallel DataLoader workers) so that bad ones can be excluded and reported instead (``--skip-bad-images``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from examples.affectnet.formats import (
    AFFECTNET_CLASSES,
    CSV_COLUMNS,
    CSV_FILES,
    EXPRESSION_CODES,
    IMAGE_ROOTS,
    LAYOUTS,
    NPY_FOLDERS,
)
from examples.common.folder_data import (
    DataFolderError,
    class_counts,
    convert_image,
    digest_files,
    stratified_holdout,
    text_lines,
)
from examples.common.subsets import image_key
from region_attention import RegionAttentionLoss
from region_attention.functional import reduce_landmarks

__all__ = [
    "AFFECTNET_CLASSES",
    "CSV_COLUMNS",
    "EXPRESSION_CODES",
    "LAYOUTS",
    "AffectNetDataset",
    "AffectNetSplit",
    "BadImageError",
    "ClassWeightedCrossEntropy",
    "PathTable",
    "balanced_sample_weights",
    "check_images",
    "class_counts",
    "detect_layout",
    "format_report",
    "inverse_frequency_weights",
    "load_affectnet",
    "load_face",
    "map_points",
    "parse_landmarks",
    "read_affectnet_csv",
    "read_affectnet_npy",
    "read_npy",
    "reduce_68",
    "stratified_holdout",
    "verify_images",
]

SKIP_HINT = "rerun with --skip-bad-images to check every image first and leave unreadable ones out"

# iBUG 68-point indices kept to build the 5 MTCNN points: both eye contours, the nose tip, the mouth corners.
_KEEP_POINTS = (*range(36, 48), 30, 48, 54)
_NUM_KEEP = len(_KEEP_POINTS)
_KEEP_VALUES = tuple(v for p in _KEEP_POINTS for v in (2 * p, 2 * p + 1))  # positions in x1;y1;x2;y2;...


class BadImageError(OSError):
    """An image file that is missing or cannot be decoded; the message names its path."""


# ---------------------------------------------------------------------------------------------------------------
# Compact storage


class PathTable:
    """Many path strings as one ``bytes`` buffer of UTF-8 plus int64 start/end offsets: no Python object per path,
    so DataLoader workers do not copy them on read. A subset shares the buffer."""

    def __init__(self, data: bytes, starts: Tensor, ends: Tensor) -> None:
        self.data, self.starts, self.ends = data, starts, ends

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> PathTable:
        buf = bytearray()
        starts = array("q")
        ends = array("q")
        for s in strings:
            starts.append(len(buf))
            buf += s.encode("utf-8")
            ends.append(len(buf))
        return cls(bytes(buf), _from_array(starts, torch.int64), _from_array(ends, torch.int64))

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __getitem__(self, index: int) -> str:
        return self.data[int(self.starts[index]) : int(self.ends[index])].decode("utf-8")

    def take(self, indices: Tensor) -> PathTable:
        return PathTable(self.data, self.starts[indices], self.ends[indices])


@dataclass
class AffectNetSplit:
    """The kept images of one split.

    ``paths``: image paths relative to ``image_root``; ``boxes``: float32 ``(N, 4)`` face boxes ``(x, y, w, h)``
    in image pixels, NaN rows where the whole image is the face (npy layout); ``landmarks``: float32 ``(N, 5, 2)``
    5-point landmarks in image pixels (NaN where missing); ``labels``: int64 ``(N,)`` class indices; ``lines``:
    int64 ``(N,)`` 1-based line in the CSV (0 for the npy layout).
    """

    name: str
    layout: str
    image_root: Path
    paths: PathTable
    boxes: Tensor
    landmarks: Tensor
    labels_: Tensor
    lines: Tensor
    report: dict[str, Any] = field(default_factory=dict)
    #: indices of records whose image file does not exist (filled by :func:`load_affectnet`)
    missing: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels_.shape[0])

    def labels(self) -> Tensor:
        return self.labels_

    def path(self, index: int) -> Path:
        return self.image_root / self.paths[index]

    def keys(self) -> list[str]:
        """Image ids in split order (the file stem: the 56-hex id of the csv layout), for subset matching."""
        return [image_key("affectnet", self.paths[i]) for i in range(len(self))]

    def take(self, indices: Tensor | Sequence[int], name: str | None = None) -> AffectNetSplit:
        """The records at ``indices`` (report: a copy with the new counts)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        labels = self.labels_[idx]
        num_classes = len(self.report.get("class_counts", AFFECTNET_CLASSES))
        report = {
            "split": name or self.name,
            "layout": self.layout,
            "source": self.report.get("source"),
            "kept": len(idx),
            "class_counts": class_counts(labels, AFFECTNET_CLASSES[:num_classes]),
        }
        return AffectNetSplit(
            name or self.name,
            self.layout,
            self.image_root,
            self.paths.take(idx),
            self.boxes[idx],
            self.landmarks[idx],
            labels,
            self.lines[idx],
            report,
        )

    def dataset(self, image_size: int = 224, margin: float = 0.0, **kwargs: Any) -> AffectNetDataset:
        return AffectNetDataset(self, image_size=image_size, margin=margin, **kwargs)

    def fingerprint(self) -> dict[str, str]:
        """``images``: SHA-256 over the bytes of every image file in order (one read of each); ``labels``: over
        the class indices, face boxes and landmarks (everything else a run reads)."""
        images = hashlib.sha256("\n".join(digest_files(self.path(i) for i in range(len(self)))).encode())
        labels = hashlib.sha256()
        for tensor in (self.labels_, self.boxes, self.landmarks):
            labels.update(tensor.contiguous().numpy().tobytes())
        return {"images": images.hexdigest(), "labels": labels.hexdigest()}


# ---------------------------------------------------------------------------------------------------------------
# Landmarks


def parse_landmarks(text: str, path: Path | str, line: int, only_used: bool = False) -> list[float] | None:
    """The 136 ``;``-separated values of ``facial_landmarks`` (``x1;y1;...;x68;y68``) as floats; None for an
    empty field. ``only_used``: check the count but convert only the 30 values of the 15 points that the 5-point
    reduction uses (eye contours 36-47, nose tip 30, mouth corners 48 and 54), in that order; that is most of the
    time spent reading the 287k-row training list."""
    text = text.strip()
    if not text:
        return None
    parts = text.split(";")
    if len(parts) != 136:
        raise ValueError(
            f"{path}, line {line}: facial_landmarks has {len(parts)} values, expected 136 "
            "(68 points as x1;y1;x2;y2;...)"
        )
    try:
        return [float(parts[i]) for i in _KEEP_VALUES] if only_used else [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise ValueError(f"{path}, line {line}: facial_landmarks value {bad!r} is not a number") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def reduce_68(points: Tensor) -> Tensor:
    """``(..., 68, 2)`` iBUG landmarks -> ``(..., 5, 2)`` with ``region_attention.functional.reduce_landmarks``
    (eye centres = mean of 36-41 and 42-47, nose tip 30, mouth corners 48 and 54). A NaN point makes its
    reduced point NaN (a mean over a NaN is NaN)."""
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"reduce_68 expected landmarks of shape (..., 68, 2), got {tuple(points.shape)}")
    lead = points.shape[:-2]
    return reduce_landmarks(points.reshape(-1, 68, 2)).reshape(*lead, 5, 2)


def _reduce_kept(kept: Tensor, chunk: int = 65536) -> Tensor:
    """The 15 kept points (``_KEEP_POINTS``: eye contours, nose tip, mouth corners) of ``(N, 15, 2)`` -> the 5
    points, through :func:`reduce_68` (the 53 points the reduction does not read stay NaN; in chunks, so the
    287k-row training list never holds 68 points per row at once)."""
    out = kept.new_empty(kept.shape[0], 5, 2)
    for start in range(0, kept.shape[0], chunk):
        part = kept[start : start + chunk]
        full = part.new_full((part.shape[0], 68, 2), math.nan)
        full[:, list(_KEEP_POINTS)] = part
        out[start : start + chunk] = reduce_68(full)
    return out


def map_points(points: Tensor, crop: tuple[float, float, float, float], size: int) -> Tensor:
    """Map pixel coordinates of the image into the ``size x size`` crop of the box ``crop = (left, top, width,
    height)``: ``x' = (x - left) * size / width``, ``y' = (y - top) * size / height`` (continuous pixel
    coordinates; NaN stays NaN)."""
    left, top, width, height = crop
    out = points.clone()
    out[..., 0] = (points[..., 0] - left) * (size / width)
    out[..., 1] = (points[..., 1] - top) * (size / height)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The .npy annotations


def read_npy(path: str | Path) -> tuple[Any, tuple[int, ...]]:
    """Read a ``.npy`` file with ``numpy.load(allow_pickle=False)``: ``(value, shape)``, numbers as a float/int
    (0-d) or a flat list in C order, strings (``<U``, ``|S``) as a str or a list of str. Object arrays (pickles)
    and structured arrays are refused with a ValueError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path}: not a .npy file (missing the \\x93NUMPY magic)")
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"AffectNet annotation not found: {path}") from None
    except (ValueError, OSError, EOFError) as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: unsupported .npy dtype or malformed .npy file ({err})") from None
    if array.dtype.kind not in "biufUS":
        raise ValueError(f"{path}: unsupported .npy dtype {array.dtype.str!r} (structured arrays are not read)")
    values = array.reshape(-1).tolist()
    if array.dtype.kind == "S":
        values = [v.decode("latin1") for v in values]
    return (values[0] if array.shape == () else values), array.shape


# ---------------------------------------------------------------------------------------------------------------
# Readers


class _Builder:
    """Collects the kept rows of one split and the counts of its report."""

    def __init__(self, name: str, layout: str, source: str, image_root: Path, num_classes: int) -> None:
        self.name, self.layout, self.source, self.image_root = name, layout, source, image_root
        self.num_classes = num_classes
        self.paths: list[str] = []
        self.boxes = array("f")
        self.points = array("f")  # 15 kept points per row (x, y)
        self.labels = array("q")
        self.lines = array("q")
        self.rows = 0
        self.dropped: Counter[str] = Counter()
        self.no_landmarks = 0
        self.seen: set[str] = set()
        self.duplicates: list[str] = []

    def drop(self, code: int) -> None:
        self.rows += 1
        self.dropped[f"{code} {EXPRESSION_CODES[code]}"] += 1

    def add_row(
        self, code: int, rel: str, box: Sequence[float], kept_points: Sequence[float] | None, line: int
    ) -> None:
        """A kept row; ``kept_points``: the 30 values of :data:`_KEEP_VALUES` (or None: no landmarks)."""
        self.rows += 1
        key = _key(rel)
        if key in self.seen:
            self.duplicates.append(key)
        self.seen.add(key)
        self.paths.append(rel)
        self.boxes.extend(box)
        if kept_points is None:
            self.points.extend(_NAN_POINTS)
            self.no_landmarks += 1
        else:
            self.points.extend(kept_points)
        self.labels.append(code)
        self.lines.append(line)

    def build(self) -> AffectNetSplit:
        n = len(self.paths)
        labels = _from_array(self.labels, torch.int64)
        kept = _from_array(self.points, torch.float32).reshape(n, _NUM_KEEP, 2)
        report = {
            "split": self.name,
            "layout": self.layout,
            "source": self.source,
            "rows": self.rows,
            "dropped": dict(sorted(self.dropped.items(), key=lambda kv: int(kv[0].split()[0]))),
            "dropped_total": sum(self.dropped.values()),
            "kept": n,
            "class_counts": class_counts(labels, AFFECTNET_CLASSES[: self.num_classes]),
            "without_landmarks": self.no_landmarks,
            "duplicate_ids": len(self.duplicates),
        }
        if self.duplicates:
            report["duplicate_examples"] = self.duplicates[:5]
        return AffectNetSplit(
            self.name,
            self.layout,
            self.image_root,
            PathTable.from_strings(self.paths),
            _from_array(self.boxes, torch.float32).reshape(n, 4),
            _reduce_kept(kept),
            labels,
            _from_array(self.lines, torch.int64),
            report,
        )


_NAN_POINTS = array("f", [math.nan] * (2 * _NUM_KEEP))


def _from_array(values: array[int] | array[float], dtype: torch.dtype) -> Tensor:
    return torch.frombuffer(values, dtype=dtype).clone() if len(values) else torch.zeros(0, dtype=dtype)


def _key(rel: str) -> str:
    """``image_key("affectnet", rel)`` (the file stem), without pathlib: it runs once per row."""
    stem = rel.rsplit("/", 1)[-1]
    return stem.rsplit(".", 1)[0] if "." in stem else stem


def _check_classes(classes: int) -> int:
    if classes not in (7, 8):
        raise ValueError(f"classes must be 7 (codes 0-6) or 8 (codes 0-7), got {classes!r}")
    return classes


def _parse_code(text: str, path: Path | str, line: int | None) -> int:
    text = text.strip()
    where = f"{path}, line {line}" if line is not None else str(path)
    if not (text.isascii() and text.isdigit()):  # as the other readers: "٣", "３", "1e0", "1.0" are refused
        raise ValueError(f"{where}: expression {text!r} is not an integer code 0-10")
    code = int(text)
    if not 0 <= code < len(EXPRESSION_CODES):
        raise ValueError(
            f"{where}: expression {code} is outside 0-10 "
            f"({', '.join(f'{i} {n}' for i, n in enumerate(EXPRESSION_CODES))})"
        )
    return code


def read_affectnet_csv(
    csv_path: str | Path,
    image_root: str | Path,
    classes: int = 8,
    name: str = "train",
) -> AffectNetSplit:
    """Read ``training.csv`` / ``validation.csv`` (see the module docstring); images are not opened.

    Malformed rows raise ValueError naming the file and the 1-based line.
    """
    num_classes = _check_classes(classes)
    csv_path, image_root = Path(csv_path), Path(image_root)
    builder = _Builder(name, "csv", str(csv_path), image_root, num_classes)
    lines = text_lines(csv_path, "AffectNet list")  # a byte that is not UTF-8: an error naming its line
    with contextlib.closing(lines):
        return _read_affectnet_rows(lines, csv_path, builder, num_classes)


def _read_affectnet_rows(handle: Any, csv_path: Path, builder: _Builder, num_classes: int) -> AffectNetSplit:
    first = next(handle, "")
    if not first.strip():
        raise ValueError(f"{csv_path}: empty file (expected a header line)")
    header = [h.strip() for h in next(csv.reader([first]))]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}, "
            f"expected {','.join(CSV_COLUMNS)},valence,arousal"
        )
    at = [header.index(c) for c in CSV_COLUMNS]
    width = len(header)
    # Rows have no quoted fields (no commas inside a field), so a plain split is exact and several times faster
    # than the csv module on the 1 kB rows; a row with a quote goes through the csv module.
    for line, text in enumerate(handle, start=2):
        text = text.rstrip("\r\n")
        fields = next(csv.reader([text])) if '"' in text else text.split(",")
        if not text.strip() or all(not f.strip() for f in fields):
            continue
        if len(fields) != width:
            raise ValueError(f"{csv_path}, line {line}: {len(fields)} fields, expected {width} as in the header")
        rel, fx, fy, fw, fh, lm, expr = (fields[i] for i in at)
        code = _parse_code(expr, csv_path, line)
        if code >= num_classes:  # dropped rows are counted, not checked further
            builder.drop(code)
            continue
        rel = rel.strip().replace("\\", "/")
        if not rel:
            raise ValueError(f"{csv_path}, line {line}: empty subDirectory_filePath")
        try:
            box = [float(fx), float(fy), float(fw), float(fh)]
        except ValueError:
            raise ValueError(f"{csv_path}, line {line}: face box {fx},{fy},{fw},{fh} is not four numbers") from None
        if not (box[2] > 0 and box[3] > 0 and all(map(math.isfinite, box))):
            raise ValueError(
                f"{csv_path}, line {line}: face box (x {fx}, y {fy}, width {fw}, height {fh}) "
                "must be finite with a positive width and height"
            )
        builder.add_row(code, rel, box, parse_landmarks(lm, csv_path, line, only_used=True), line)
    return builder.build()


def _read_npy_item(args: tuple[Path, str]) -> tuple[str, int | str, list[float] | None]:
    ann, ident = args
    exp_path = ann / f"{ident}_exp.npy"
    value, _ = read_npy(exp_path)
    if isinstance(value, list) and len(value) == 1:  # a 1-element array instead of a 0-d one
        value = value[0]
    if isinstance(value, float) and value.is_integer():  # a float array: a number, not text to parse
        value = int(value)
    try:
        code = _parse_code(str(value), exp_path, None)
    except ValueError as err:
        return ident, str(err), None
    lnd_path = ann / f"{ident}_lnd.npy"
    if not lnd_path.is_file():
        return ident, code, None
    values, shape = read_npy(lnd_path)
    if math.prod(shape) != 136 or shape not in ((68, 2), (136,), (1, 136)):
        return ident, f"{lnd_path}: landmarks of shape {shape}, expected (68, 2) or (136,)", None
    return ident, code, [float(v) for v in values]


def read_affectnet_npy(
    split_dir: str | Path,
    classes: int = 8,
    name: str = "train",
    workers: int = 8,
) -> AffectNetSplit:
    """Read one split folder of the npy layout (``images/``, ``annotations/``); every ``<id>_exp.npy`` is one
    image ``images/<id>.jpg`` (the whole image is the face). Annotations are read with ``workers`` threads."""
    num_classes = _check_classes(classes)
    split_dir = Path(split_dir)
    ann, images = split_dir / "annotations", split_dir / "images"
    for folder in (ann, images):
        if not folder.is_dir():
            raise FileNotFoundError(f"AffectNet folder not found: {folder}")
    ids = [e.name[: -len("_exp.npy")] for e in os.scandir(ann) if e.name.endswith("_exp.npy")]
    ids.sort(key=lambda s: (0, int(s), "") if s.isascii() and s.isdigit() else (1, 0, s))
    builder = _Builder(name, "npy", str(split_dir), images, num_classes)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(_read_npy_item, [(ann, i) for i in ids], chunksize=256))
    nan_box = [math.nan] * 4
    for ident, code, landmarks in results:
        if isinstance(code, str):
            raise ValueError(code)
        if code >= num_classes:
            builder.drop(code)
            continue
        kept = None if landmarks is None else [landmarks[i] for i in _KEEP_VALUES]
        builder.add_row(code, f"{ident}.jpg", nan_box, kept, 0)
    return builder.build()


def detect_layout(data_dir: str | Path) -> tuple[str, dict[str, Path]]:
    """``("csv", {"lists", "images"})`` or ``("npy", {"train", "test"})`` under ``data_dir``; csv when both."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"AffectNet data directory not found: {data_dir}")
    lists = data_dir / "Manually_Annotated_file_lists"
    if all((lists / f).is_file() for f in CSV_FILES.values()):
        root = next((data_dir / r for r in IMAGE_ROOTS if (data_dir / r).is_dir()), None)
        if root is None:
            raise DataFolderError(
                f"found {lists} but no image folder: expected one of "
                f"{', '.join(str(data_dir / r) for r in IMAGE_ROOTS)}"
            )
        return "csv", {"lists": lists, "images": root}
    npy = {s: data_dir / f for s, f in NPY_FOLDERS.items()}
    if all((p / "annotations").is_dir() and (p / "images").is_dir() for p in npy.values()):
        return "npy", npy
    raise DataFolderError(
        f"no AffectNet data in {data_dir}: expected Manually_Annotated_file_lists/training.csv and validation.csv "
        "with Manually_Annotated_Images/, or train_set/ and val_set/ each with images/ and annotations/"
    )


def load_affectnet(
    data_dir: str | Path, classes: int = 8, layout: str = "auto", check_files: bool = True, workers: int = 8
) -> dict[str, AffectNetSplit]:
    """``{"train": ..., "test": ...}`` (the provider's validation set is the test set) from ``data_dir``.

    ``check_files``: look for every kept image (``os.stat``, cheap); the indices of missing ones go into
    ``split.missing`` and the count into the report, and :func:`check_images` decides whether that is an error.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    found, paths = detect_layout(data_dir)
    if layout != "auto" and layout != found:
        data_dir = Path(data_dir)
        paths = (
            {"lists": data_dir / "Manually_Annotated_file_lists", "images": data_dir / IMAGE_ROOTS[0]}
            if layout == "csv"
            else {s: data_dir / f for s, f in NPY_FOLDERS.items()}
        )
        found = layout
    if found == "csv":
        splits = {
            s: read_affectnet_csv(paths["lists"] / f, paths["images"], classes, name=s) for s, f in CSV_FILES.items()
        }
    else:
        splits = {s: read_affectnet_npy(paths[s], classes, name=s, workers=workers) for s in NPY_FOLDERS}
    if check_files:
        for split in splits.values():
            split.missing = [i for i in range(len(split)) if not os.path.isfile(split.path(i))]
            split.report["missing_images"] = len(split.missing)
    return splits


# ---------------------------------------------------------------------------------------------------------------
# Holdout, balancing, loss


def balanced_sample_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Per-image sampling weight ``1 / count(class)``: every class is drawn equally often (oversampling)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return 1.0 / counts[labels]


def inverse_frequency_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Class weights ``N / (C * count_c)`` (1 for every class when balanced); 0 for a class without images."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def ClassWeightedCrossEntropy(weight: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """The class-weighted cross-entropy of ``--balance weighted-loss``: the classification part of the library's
    ``RegionAttentionLoss(class_weight=weight)`` (kept under this name for code written against older
    examples; the engine passes the weights to ``RegionAttentionLoss`` itself)."""
    return RegionAttentionLoss(rb_weight=0.0, class_weight=weight).classification_loss


# ---------------------------------------------------------------------------------------------------------------
# Images


def _draft_scale(size: tuple[int, int], new: tuple[int, int]) -> int:
    for k in (1, 2, 4, 8):
        if -(-size[0] // k) == new[0] and -(-size[1] // k) == new[1]:
            return k
    raise RuntimeError(f"unexpected JPEG draft size {new} for {size}")


def load_face(
    path: str | Path,
    box: Sequence[float] | None,
    margin: float,
    size: int,
    source: str = "",
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Decode ``path`` and return the ``size x size`` RGB face crop and the crop box ``(left, top, width,
    height)`` in pixels of the original image (see the module docstring). ``box``: ``(x, y, w, h)`` or None /
    NaN for the whole image (``margin`` is not applied then). Errors raise :class:`BadImageError` naming the
    path (and ``source``, where the box was read: a box entirely outside the image is one of them, so
    ``--skip-bad-images`` counts and skips it)."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if box is None or any(math.isnan(v) for v in box):
                left, top, cw, ch = 0.0, 0.0, float(width), float(height)
            else:
                x, y, w, h = (float(v) for v in box)
                if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
                    where = f" ({source})" if source else ""
                    raise BadImageError(
                        f"AffectNet face box (x {x:g}, y {y:g}, width {w:g}, height {h:g}) of {path}"
                        f"{where} lies entirely outside the {width} x {height} image; {SKIP_HINT}"
                    )
                left, top, cw, ch = x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)
            k = 1
            if im.format == "JPEG":
                shrink = min(cw, ch) / size
                want = next((s for s in (8, 4, 2) if shrink >= s), 1)
                if want > 1:
                    im.draft("RGB", (max(1, width // want), max(1, height // want)))
                    k = _draft_scale((width, height), im.size)
            img = convert_image(im, "RGB")  # decodes (16-bit scaled); truncated or corrupt data raises here
        lf, tf, rf, bf = left / k, top / k, (left + cw) / k, (top + ch) / k
        il, it, ir, ib = math.floor(lf), math.floor(tf), math.ceil(rf), math.ceil(bf)
        if (il, it, ir, ib) != (0, 0, img.width, img.height):
            img = img.crop((il, it, ir, ib))  # zero padding outside the image
        face = img.resize((size, size), Image.Resampling.BILINEAR, box=(lf - il, tf - it, rf - il, bf - it))
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"AffectNet image not found: {path}; {SKIP_HINT}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, struct.error) as err:
        raise BadImageError(f"cannot read AffectNet image {path}: {err}; {SKIP_HINT}") from None
    return face, (left, top, cw, ch)


class AffectNetDataset(Dataset[tuple[Tensor, int, int, int, Tensor]]):
    """Face crops of one :class:`AffectNetSplit`; items ``(image, target, label, index, landmarks)`` (see the
    module docstring)."""

    def fingerprint(self) -> dict[str, str]:
        """The split's :meth:`AffectNetSplit.fingerprint`."""
        return self.split.fingerprint()

    def __init__(
        self,
        split: AffectNetSplit,
        image_size: int = 224,
        margin: float = 0.0,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not 0.0 <= margin <= 2.0:
            raise ValueError(f"face margin must be in [0, 2] (a fraction of the box side), got {margin}")
        self.split, self.image_size, self.margin, self.transform = split, image_size, margin, transform

    def __len__(self) -> int:
        return len(self.split)

    def labels(self) -> Tensor:
        return self.split.labels()

    def keys(self) -> list[str]:
        return self.split.keys()

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """The uint8 ``(3, S, S)`` face and its float32 ``(5, 2)`` landmarks in crop pixels."""
        line = int(self.split.lines[index])
        source = f"{self.split.report.get('source')}, line {line}" if line else ""
        face, crop = load_face(
            self.split.path(index), self.split.boxes[index].tolist(), self.margin, self.image_size, source
        )
        s = self.image_size
        image = torch.frombuffer(bytearray(face.tobytes()), dtype=torch.uint8).reshape(s, s, 3).permute(2, 0, 1)
        return image.contiguous(), map_points(self.split.landmarks[index], crop, s)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int, int, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image, landmarks = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        label = int(self.split.labels_[index])
        return image, label, label, index, landmarks


class _Verify(Dataset[tuple[int, str]]):
    def __init__(self, dataset: AffectNetDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, str]:
        try:
            self.dataset.load(index)
        except BadImageError as err:
            return index, str(err).replace(f"; {SKIP_HINT}", "")
        return index, ""


def _collate_list(batch: list[Any]) -> list[Any]:
    return batch


def verify_images(
    dataset: AffectNetDataset,
    workers: int = 0,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[int, str]]:
    """Load every image of ``dataset`` as training will (``workers`` DataLoader processes); returns ``(index,
    error message naming the path)`` of those that fail, in index order."""
    loader = DataLoader(_Verify(dataset), batch_size=batch_size, num_workers=workers, collate_fn=_collate_list)
    bad: list[tuple[int, str]] = []
    done = 0
    for batch in loader:
        bad += [(i, msg) for i, msg in batch if msg]
        done += len(batch)
        if progress is not None:
            progress(done, len(dataset))
    return sorted(bad)


def check_images(
    split: AffectNetSplit,
    *,
    skip_bad: bool,
    image_size: int,
    margin: float = 0.0,
    workers: int = 0,
) -> tuple[AffectNetSplit, list[dict[str, str]]]:
    """Deal with unreadable images of ``split``.

    Without ``skip_bad`` a missing file raises :class:`BadImageError` (naming it and how many are missing) and a
    file that does not decode will raise when it is loaded. With ``skip_bad`` every image is decoded once
    (:func:`verify_images`) and the missing or unreadable ones are left out; returns the kept split (its report
    gets ``bad_images``) and ``[{"path", "error"}]`` of those left out.
    """
    if not skip_bad:
        if split.missing:
            shown = ", ".join(str(split.path(i)) for i in split.missing[:3])
            raise BadImageError(
                f"{len(split.missing)} image(s) of the {split.name} split listed in "
                f"{split.report.get('source')} are missing, e.g. {shown}; {SKIP_HINT}"
            )
        return split, []
    bad = {i: f"AffectNet image not found: {split.path(i)}" for i in split.missing}
    present = torch.tensor([i for i in range(len(split)) if i not in bad], dtype=torch.int64)
    sub = split.take(present)
    for j, message in verify_images(sub.dataset(image_size, margin), workers=workers):
        bad[int(present[j])] = message
    keep = [i for i in range(len(split)) if i not in bad]
    kept = split.take(keep)
    kept.report = {
        **split.report,
        "kept": len(keep),
        "class_counts": kept.report["class_counts"],
        "bad_images": len(bad),
    }
    entries = [{"path": str(split.path(i)), "error": bad[i]} for i in sorted(bad)]
    return kept, entries


# ---------------------------------------------------------------------------------------------------------------
# Reports


def format_report(report: dict[str, Any]) -> str:
    """Human-readable counts of every split of a data report (as written into summary.json)."""
    lines = []
    for key in ("provider_train", "train", "holdout", "test"):
        r = report.get(key)
        if not r:
            continue
        classes = ", ".join(f"{k} {v}" for k, v in r["class_counts"].items())
        text = f"{key}: {r['kept']} images [{classes}]"
        if "rows" in r:
            dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none"
            text += f"; {r['rows']} rows read, dropped {dropped}"
            if r.get("without_landmarks"):
                text += f"; {r['without_landmarks']} without landmarks"
        if r.get("bad_images"):
            text += f"; {r['bad_images']} unreadable image(s) left out"
        lines.append(text)
    bad = report.get("bad_images")
    if bad and bad.get("count"):
        lines.append(f"bad images: {bad['count']} (e.g. {bad['examples'][0]['path']})")
    return "\n".join(lines)
