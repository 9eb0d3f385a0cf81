"""What the image-file datasets (RAF-DB, SFEW) share: an image-list dataset and the stratified hold-out split
(the one hold-out of the examples; AffectNet applies it to its label tensor). Generated faces come from
:mod:`examples.common.synthetic`; the options (``--regions``, ``--holdout-fraction``, ...) are defined once in
:mod:`examples.common.engine.config`.

Dataset items (:class:`ImageListDataset`) follow the engine's contract: ``(image, target, label, index)`` or,
with landmarks, ``(image, target, label, index, landmarks)``. ``image`` is uint8 ``(3, S, S)`` (RGB, no mean/std
normalisation: the engine divides by 255, as the RAN authors fed it), ``target`` and ``label`` are the class
index (cross-entropy), ``index`` the position in the split and ``landmarks`` float32 ``(5, 2)`` pixel
coordinates ``(x, y)`` in the ``S x S`` image (NaN where an annotation is missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FITS",
    "IMAGE_SUFFIXES",
    "DataError",
    "DataFolderError",
    "ImageListDataset",
    "ImageRecord",
    "class_counts",
    "convert_image",
    "digest_files",
    "hold_out",
    "image_tensor",
    "read_image",
    "split_records",
    "square_box",
    "stratified_holdout",
    "text_lines",
]


class DataError(ValueError):
    """A dataset file whose content is wrong (a face box outside its image, ...), found while the data is read
    during a run; the message names the file. The scripts print it as one line, exit status 2."""


class DataFolderError(FileNotFoundError):
    """A data folder that holds no dataset in a layout its reader knows (the message says what was looked for).

    The training scripts turn it into a one-line ``--data-dir`` error with exit status 2: it is a command-line
    mistake (the wrong folder), not a failure of the run."""


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
    #: where ``box`` was read (file and line), for error messages
    box_source: str = ""


# ---------------------------------------------------------------------------------------------------------------
# Reading images: the one helper every dataset reader uses


#: 16-bit integer modes (PNG / TIFF greyscale): values 0..65535.
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")


def convert_image(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """``img`` (any PIL mode) as an 8-bit ``mode`` image (``"RGB"`` or ``"L"``), its values *scaled*, not
    clipped: 16-bit greyscale (``I;16``, ``I;16B``, ...) and 32-bit integer ``I`` images are read as 0..65535
    (``I`` outside that range: its own minimum..maximum), float ``F`` images as 0..1 (or 0..255, or their own
    range), then mapped linearly onto 0..255. Every other mode goes through PIL's ``convert`` (palette,
    alpha, CMYK, YCbCr, 1-bit ...). PIL's own ``convert("L")`` clips 16-bit values at 255 (a white image)."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"convert_image expected mode 'RGB' or 'L', got {mode!r}")
    if img.mode in _MODES_16 or img.mode in ("I", "F"):
        values = np.asarray(img).astype(np.float64)
        lo, hi = 0.0, 65535.0
        if img.mode == "F":
            hi = 1.0 if values.size == 0 or values.max() <= 1.0 else 255.0
        if values.size and (values.min() < lo or values.max() > hi):
            lo, hi = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
        img = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    if img.mode != mode:
        if img.mode in ("P", "PA") and "transparency" in img.info:
            img = img.convert("RGBA")
        img = img.convert(mode)
    else:
        img.load()
    return img


def read_image(path: str | Path, mode: str = "RGB", *, what: str = "image") -> Image.Image:
    """Decode ``path`` into an 8-bit ``mode`` image (:func:`convert_image`). Every failure (missing, truncated
    or corrupt file, a decompression bomb over PIL's ``MAX_IMAGE_PIXELS``) is an :class:`OSError` naming the
    file (``what``: how the message calls it, e.g. ``"FERPlus image"``)."""
    try:
        with Image.open(path) as img:
            return convert_image(img, mode)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except Image.DecompressionBombError as err:
        raise OSError(
            f"cannot read {what} {path}: {err} (raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted)"
        ) from err
    except (OSError, ValueError, SyntaxError, struct.error) as err:
        raise OSError(f"cannot read {what} {path}: {err}") from err


def image_tensor(img: Image.Image, channels: str = "RGB") -> Tensor:
    """An 8-bit ``"RGB"`` or ``"L"`` PIL image as uint8 ``(3, H, W)``: RGB as is, grey replicated to three
    channels (``channels="L"``: the image is first made grey, as grey-trained runs see every face)."""
    if channels == "L" and img.mode != "L":
        img = img.convert("L")
    width, height = img.size
    if img.mode == "L":
        grey = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(1, height, width)
        return grey.expand(3, height, width).contiguous()
    data = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8).reshape(height, width, 3)
    return data.permute(2, 0, 1).contiguous()


def text_lines(path: str | Path, what: str = "file") -> Generator[str, None, None]:
    """The lines of a UTF-8 text file (a BOM accepted), line ends kept, for ``csv.reader``: read and decoded one
    line at a time, so a byte that is not UTF-8 is a :class:`DataError` naming the file and its true 1-based
    line (a decoder reading blocks reports the line where its block began). A missing file is a
    ``FileNotFoundError`` naming it (``what``: how the message calls the file)."""
    path = Path(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}, line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); save the file as UTF-8"
                ) from None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except OSError as err:
        raise OSError(f"cannot read image {path}: {err.strerror or err}") from None
    return h.hexdigest()


def digest_files(paths: Iterable[str | Path], workers: int | None = None) -> list[str]:
    """The SHA-256 of every file's bytes, in order (``workers`` threads; default: up to 8). What a run's data
    fingerprint records of image files: a file changed on disk changes it."""
    items = [Path(p) for p in paths]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 64:
        return [_file_digest(p) for p in items]
    with ThreadPoolExecutor(workers) as pool:  # hashlib releases the GIL on large buffers
        return list(pool.map(_file_digest, items, chunksize=64))


def square_box(box: Sequence[float], margin: float = 0.0) -> tuple[float, float, float, float]:
    """The square around ``box``'s centre whose side is the box's longer side times ``1 + 2 * margin``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


class ImageListDataset(Dataset[tuple[Any, ...]]):
    """Images of a list of :class:`ImageRecord`, read lazily with PIL, as RGB uint8 ``(3, S, S)``.

    With ``crop_to_box`` each image is cut to the square around its record's ``box`` (enlarged by ``margin``
    on each side, as a fraction of the box's longer side; parts outside the image are black) before resizing;
    otherwise ``fit`` (one of :data:`FITS`) makes it square. With ``landmarks`` the items carry the record's
    landmarks mapped into the ``S x S`` image (NaN if the record has none). ``channels="L"``: the faces are read
    grey and replicated to three channels (how ``examples/predict.py`` feeds a grey-trained checkpoint).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        image_size: int = 224,
        *,
        crop_to_box: bool = False,
        margin: float = 0.0,
        fit: str = "stretch",
        landmarks: bool = False,
        transform: Callable[[Tensor], Tensor] | None = None,
        channels: str = "RGB",
    ) -> None:
        if channels not in ("RGB", "L"):
            raise ValueError(f"channels must be 'RGB' or 'L', got {channels!r}")
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
        self.channels = channels
        self._labels = torch.tensor([r.label for r in self.records], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> Tensor:
        """Class indices ``(N,)`` int64."""
        return self._labels.clone()

    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    def fingerprint(self, workers: int | None = None) -> dict[str, str]:
        """What a resume must find again (the run's data fingerprint): ``images``, the SHA-256 over the bytes of
        every image file in order (one read of each file), and ``labels``, over every record's label, face box
        and landmarks (all a run reads besides the pixels)."""
        images = hashlib.sha256("\n".join(digest_files((r.path for r in self.records), workers)).encode())
        labels = hashlib.sha256(json.dumps([[r.label, r.box, r.landmarks] for r in self.records]).encode())
        return {"images": images.hexdigest(), "labels": labels.hexdigest()}

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
        img = read_image(record.path, self.channels)
        width, height = img.size
        if self.crop_to_box:
            check_box_inside(record, width, height)
        x1, y1, x2, y2 = self._region(record, width, height)
        size = self.image_size
        if (x1, y1, x2, y2) != (0.0, 0.0, float(width), float(height)):
            box = (round(x1), round(y1), round(x2), round(y2))
            img = img.crop(box)  # zero-pads outside the image
            x1, y1, x2, y2 = (float(v) for v in box)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        image = image_tensor(img)
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


def check_box_inside(record: ImageRecord, width: int, height: int) -> None:
    """A face box entirely outside its image (which would give an all-black face) is an error naming the image
    and where the box and the label were read."""
    assert record.box is not None
    x1, y1, x2, y2 = record.box
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        where = "; ".join(
            w
            for w in (
                record.box_source and f"box from {record.box_source}",
                record.source and f"label from {record.source}",
            )
            if w
        )
        raise DataError(
            f"{record.path}: face box (x1 {x1:g}, y1 {y1:g}, x2 {x2:g}, y2 {y2:g}) lies entirely "
            f"outside the {width} x {height} image" + (f" ({where})" if where else "")
        )


# ---------------------------------------------------------------------------------------------------------------
# Splits and counts


def stratified_holdout(labels: Sequence[int] | Tensor, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split positions into ``(kept, held_out)``, holding out ``round(fraction * n_c)`` of every class ``c``
    (at least one when ``fraction > 0`` and the class has two or more images), chosen by ``seed``.

    Both lists are sorted, so the split is a pure function of (labels, fraction, seed). ``labels``: a sequence
    or a 1-d tensor (the examples' one hold-out, for every dataset).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    if isinstance(labels, Tensor):
        labels = labels.tolist()
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


def split_records(
    records: Sequence[ImageRecord], fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """:func:`stratified_holdout` applied to records: ``(train, held_out)``."""
    kept, held = stratified_holdout([r.label for r in records], fraction, seed)
    return [records[i] for i in kept], [records[i] for i in held]


def hold_out(
    records: Sequence[ImageRecord], fraction: float, seed: int, class_names: Sequence[str]
) -> tuple[list[ImageRecord], list[ImageRecord], dict[str, Any]]:
    """:func:`split_records` and its report (``summary.json``'s ``data.model_selection``): ``(train, held_out,
    report)``."""
    train, held = split_records(records, fraction, seed)
    report = {
        "holdout_fraction": fraction,
        "seed": seed,
        "train": {"images": len(train), "class_counts": class_counts([r.label for r in train], class_names)},
        "valid": {"images": len(held), "class_counts": class_counts([r.label for r in held], class_names)},
    }
    return train, held, report


def class_counts(labels: Sequence[int] | Tensor, class_names: Sequence[str]) -> dict[str, int]:
    """Images per class, keyed by class name in class order; labels outside the classes (``-1``: none) are not
    counted. ``labels``: a sequence or a 1-d tensor (the examples' one class count: every dataset's report and
    the class histograms of a run's summary)."""
    counts = Counter(labels.tolist() if isinstance(labels, Tensor) else (int(v) for v in labels))
    return {name: counts.get(i, 0) for i, name in enumerate(class_names)}
