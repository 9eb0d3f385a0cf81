"""Input checks shared by the functional ops and the modules.

Every check raises :class:`TypeError` or :class:`ValueError` with a message that names the
argument and shows what was received against what was expected. None of them reads tensor
*values*, so they cost no host synchronisation and trace cleanly under ``torch.compile`` and
``torch.export`` (shape comparisons become guards); the one exception, :func:`check_box_values`, says so
and its callers run it behind a flag and skip it while compiling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

#: A box ``(x1, y1, x2, y2)`` of Python numbers.
Box = tuple[float, float, float, float]


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """Format a shape the way the error messages show it: ``(8, 6, 256)``."""
    items = [str(s) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _package(value: object) -> str:
    return (type(value).__module__ or "").split(".")[0]


def conversion_hint(value: object) -> str:
    """What to call to turn a numpy array or a PIL image (or a list of them) into a tensor; ``""`` otherwise."""
    if isinstance(value, (list, tuple)) and value:
        inner = conversion_hint(value[0])
        if inner:
            return f"{inner}, then torch.stack the list"
        if isinstance(value[0], Tensor):
            return "; torch.stack the list into one tensor"
        return ""
    if _package(value) == "numpy":
        return "; convert it with torch.from_numpy(...)"
    if _package(value) == "PIL":
        return (
            "; convert it with torchvision.transforms.functional.pil_to_tensor(...) (uint8) or "
            "torchvision.transforms.functional.to_tensor(...) (float in [0, 1])"
        )
    return ""


def check_tensor(value: object, name: str, owner: str) -> Tensor:
    if not isinstance(value, Tensor):
        hint = conversion_hint(value)
        raise TypeError(f"{owner} expected {name} to be a torch.Tensor, got {type(value).__name__}{hint}")
    return value


def check_floating(value: Tensor, name: str, owner: str) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{owner} expected {name} to have a floating point dtype, got {value.dtype}")


def check_region_features(x: object, owner: str, dim: int | None = None, name: str = "x") -> Tensor:
    """Check ``x`` is a floating ``(B, K, D)`` tensor with ``K >= 1`` (and ``D == dim`` if given)."""
    x = check_tensor(x, name, owner)
    expected = f"(B, K, {dim if dim is not None else 'D'})"
    if x.dim() != 3:
        raise ValueError(f"{owner} expected {name} of shape {expected}, got {x.dim()}-D shape {shape_str(x.shape)}")
    check_floating(x, name, owner)
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"{owner} expected {name} of shape {expected}, got {shape_str(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{owner} expected {name} with at least one region (K >= 1), got {shape_str(x.shape)}")
    return x


def check_mask(mask: object, reference: Tensor, owner: str, name: str = "mask") -> Tensor | None:
    """Check an optional ``(B, K)`` bool mask against the leading dims of ``reference``."""
    if mask is None:
        return None
    mask = check_tensor(mask, name, owner)
    if mask.dtype != torch.bool:
        raise TypeError(f"{owner} expected {name} to be a bool tensor (True = region present), got dtype {mask.dtype}")
    expected = tuple(reference.shape[:2])
    if mask.dim() != 2 or tuple(mask.shape) != expected:
        raise ValueError(f"{owner} expected {name} of shape {shape_str(expected)} (B, K), got {shape_str(mask.shape)}")
    if mask.device != reference.device:
        raise ValueError(f"{owner} expected {name} on {reference.device} like the features, got {mask.device}")
    return mask


def check_same_device(value: Tensor, name: str, device: torch.device, owner: str, what: str = "the parameters") -> None:
    if value.device != device:
        raise ValueError(f"{owner} expected {name} on {device} like {what}, got {value.device}")


def check_choice(value: object, name: str, choices: Sequence[str], owner: str) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{owner} expected {name} to be one of {options}, got {value!r}")
    return value


def check_positive_int(value: object, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} expected {name} to be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{owner} expected {name} > 0, got {value}")
    return value


def check_batch_size(value: object, owner: str, name: str = "batch_size") -> int:
    """An int ``>= 0`` (an empty batch gives empty outputs), or the symbolic batch size of ``torch.export`` /
    ``torch.compile(dynamic=True)``."""
    if isinstance(value, torch.SymInt):  # traced: the tensors' shapes already guarantee it
        return cast(int, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} expected {name} to be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{owner} expected {name} >= 0, got {value}")
    return value


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the attention math runs in: at least float32, float64 kept for gradcheck."""
    return torch.promote_types(dtype, torch.float32)


# ----------------------------------------------------------------------------------------------------
# Region cropping: images, sizes, boxes, landmarks
# ----------------------------------------------------------------------------------------------------

#: How far (as a fraction of the image) a normalised box may reach beyond [0, 1] before it is taken for a
#: box in pixels: float rounding of fractions, not a margin.
FRACTION_TOLERANCE = 1e-3


def check_images(images: object, owner: str) -> Tensor:
    """Check ``images`` is a ``(B, C, H, W)`` floating point or uint8 tensor with data (``B = 0`` allowed),
    not channels-last data."""
    if not isinstance(images, Tensor):
        hint = conversion_hint(images)
        if hint and not isinstance(images, (list, tuple)) and _package(images) == "numpy":
            hint += " (and .permute(0, 3, 1, 2) if it is laid out (B, H, W, C))"
        raise TypeError(f"{owner} expected images to be a torch.Tensor, got {type(images).__name__}{hint}")
    if images.dim() != 4:
        raise ValueError(
            f"{owner} expected images of shape (B, C, H, W), got {images.dim()}-D shape {shape_str(images.shape)}"
        )
    if images.shape[-1] in (1, 3) and images.shape[1] > 4:
        raise ValueError(
            f"{owner} expected images of shape (B, C, H, W), got {shape_str(images.shape)}, which looks like "
            f"channels-last data (B, H, W, C) with C = {images.shape[-1]}; pass images.permute(0, 3, 1, 2)"
        )
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(f"{owner} expected images with a floating point or uint8 dtype, got {images.dtype}")
    check_computable(images, "images", owner)
    if min(images.shape[1:]) == 0:
        raise ValueError(f"{owner} expected images with C, H, W >= 1, got {shape_str(images.shape)}")
    return images


def check_size(value: object, name: str, owner: str, *, square: bool = True) -> tuple[int, int]:
    """``(height, width)`` of positive ints (an ``int`` too when ``square``), returned as ``(height, width)``.

    A wrong type is a :class:`TypeError`, a size ``<= 0`` a :class:`ValueError`. ``torch.SymInt`` sizes (traced
    with dynamic shapes) pass as they are.
    """
    ints = (int, torch.SymInt)
    pair = (value, value) if square and isinstance(value, ints) and not isinstance(value, bool) else value
    what = "an int or a (height, width) pair of ints" if square else "a (height, width) pair of ints"
    if (
        not isinstance(pair, (tuple, list, torch.Size))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, ints) for v in pair)
    ):
        raise TypeError(f"{owner} expected {name} to be {what}, got {value!r}")
    if any(not isinstance(v, torch.SymInt) and v <= 0 for v in pair):
        raise ValueError(f"{owner} expected {name} > 0, got {value!r}")
    return cast(int, pair[0]), cast(int, pair[1])


def check_output_size(output_size: object, owner: str) -> tuple[int, int]:
    """``int`` or ``(height, width)`` of positive ints, returned as ``(height, width)``."""
    return check_size(output_size, "output_size", owner)


def check_image_size(image_size: object, owner: str, *, square: bool = False) -> tuple[int, int]:
    """A ``(height, width)`` pair of positive ints (an ``int`` too with ``square``)."""
    return check_size(image_size, "image_size", owner, square=square)


def check_dropout(value: object, owner: str) -> float:
    """``dropout`` is a probability in ``[0, 1]``, as for ``nn.Dropout`` (1 zeroes everything)."""
    return check_number(value, "dropout", owner, high=1.0)


def check_bool(value: object, name: str, owner: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner} expected {name} to be a bool, got {type(value).__name__}")
    return value


def check_number(value: object, name: str, owner: str, *, low: float = 0.0, high: float | None = None) -> float:
    """A real Python number in ``[low, high]`` (NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner} expected {name} to be a float, got {type(value).__name__}")
    if not (value >= low and (high is None or value <= high)):
        bounds = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{owner} expected {name} {bounds}, got {value}")
    return float(value)


def check_whole_index(value: object, owner: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int or None" if optional else "an int"
        raise TypeError(f"{owner} expected whole_index to be {expected}, got {type(value).__name__}")
    return value


#: What the region biased loss reduces its rows to.
REDUCTIONS = ("mean", "sum", "none")


def check_loss_settings(margin: object, whole_index: object, reduction: object, owner: str) -> None:
    check_number(margin, "margin", owner)
    check_whole_index(whole_index, owner)
    check_choice(reduction, "reduction", REDUCTIONS, owner)


def check_sampling_ratio(value: object, owner: str) -> int:
    """``sampling_ratio`` must be a fixed grid ``>= 1``; say why the adaptive grid is not offered."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} expected sampling_ratio to be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(
            f"{owner} expected sampling_ratio >= 1, got {value}: torchvision's adaptive grid (sampling_ratio "
            "<= 0, ceil(box size / output size) samples per bin) depends on the box values, which would need "
            "data-dependent shapes and a device synchronisation; pick a fixed grid such as 2"
        )
    return value


def check_same_batch(value: Tensor, name: str, batch: int, reference: str, owner: str) -> None:
    """``value``'s first dimension is ``batch``, the batch size of ``reference``."""
    if value.dim() == 0 or value.shape[0] != batch:
        raise ValueError(
            f"{owner} expected {name} with batch size {batch} like {reference}, got {name} of shape "
            f"{shape_str(value.shape)}"
        )


def check_computable(value: Tensor, name: str, owner: str) -> None:
    """Refuse meta tensors (shapes without data) where values are computed."""
    if value.device.type == "meta":
        raise ValueError(
            f"{owner} expected {name} with data, got a meta tensor (a shape without values); materialise it "
            "first (e.g. module.to_empty(device=...) and real weights)"
        )


def check_output_dtype(dtype: object, images: Tensor | None, owner: str) -> torch.dtype:
    """The crops' dtype: ``dtype`` if given (floating), else the images' dtype, float32 for uint8 images."""
    if dtype is None:
        return images.dtype if images is not None and images.is_floating_point() else torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner} expected dtype to be a floating point torch.dtype or None, got {dtype!r}")
    return dtype


def check_scale(scale: object, owner: str) -> tuple[float, float]:
    """A ``(min, max)`` side ratio with ``0 < min <= max <= 1``."""
    if (
        not isinstance(scale, (tuple, list))
        or len(scale) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scale)
    ):
        raise TypeError(f"{owner} expected scale to be a (min, max) pair of floats, got {scale!r}")
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{owner} expected scale with 0 < min <= max <= 1, got {scale!r}")
    return lo, hi


def check_radius(radius: object, owner: str) -> float:
    """A finite positive number."""
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        raise TypeError(f"{owner} expected radius to be a float, got {type(radius).__name__}")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"{owner} expected radius > 0, got {radius}")
    return float(radius)


def check_box_list(boxes: object, owner: str, name: str = "boxes") -> tuple[Box, ...]:
    """Boxes given as a non-empty sequence of ``(x1, y1, x2, y2)`` Python numbers, finite, ``x2 > x1``, ``y2 > y1``."""
    if not isinstance(boxes, Sequence) or isinstance(boxes, str):
        raise TypeError(
            f"{owner} expected {name} to be a tensor or a sequence of (x1, y1, x2, y2) boxes, "
            f"got {type(boxes).__name__}{conversion_hint(boxes)}"
        )
    out = []
    for i, box in enumerate(boxes):
        if (
            not isinstance(box, Sequence)
            or len(box) != 4
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in box)
        ):
            raise ValueError(f"{owner} expected {name}[{i}] to be 4 numbers (x1, y1, x2, y2), got {box!r}")
        out.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    if not out:
        raise ValueError(f"{owner} expected at least one box (K >= 1), got an empty sequence")
    for i, (x1, y1, x2, y2) in enumerate(out):
        if not (x2 > x1 and y2 > y1 and all(math.isfinite(v) for v in (x1, y1, x2, y2))):
            raise ValueError(
                f"{owner} expected {name} with finite coordinates, x2 > x1 and y2 > y1, got {name}[{i}] = {out[i]}"
            )
    return tuple(out)


def check_unit_boxes(boxes: Sequence[Box], owner: str, name: str = "boxes") -> tuple[Box, ...]:
    """Normalised boxes (checked by :func:`check_box_list`) must be fractions of the image in ``[0, 1]``.

    Pixel boxes given where fractions are expected would otherwise be scaled by the image size a second
    time (a 48-pixel box on a 32-pixel image becoming 1536 pixels wide) and crop zeros that the mask
    calls present.
    """
    lo, hi = -FRACTION_TOLERANCE, 1 + FRACTION_TOLERANCE
    for i, box in enumerate(boxes):
        if not all(lo <= v <= hi for v in box):
            raise ValueError(
                f"{owner} expected {name} as fractions of the image in [0, 1], got {name}[{i}] = {tuple(box)}; "
                f"divide pixel boxes by the image size (W, H, W, H)"
            )
        x1, y1, x2, y2 = box
        if x1 >= 1 or y1 >= 1 or x2 <= 0 or y2 <= 0:
            raise ValueError(
                f"{owner} expected {name} that overlap the image (0, 0, 1, 1), got {name}[{i}] = {tuple(box)}, "
                f"which lies entirely outside it"
            )
    return tuple(boxes)


def check_box_tensor(
    boxes: object, batch_size: int, device: torch.device, owner: str, *, shared: bool = True, like: str = "the images"
) -> Tensor:
    """A ``(B, K, 4)`` (or, with ``shared``, ``(K, 4)``) real tensor on ``device`` (shapes only, no values)."""
    boxes = check_tensor(boxes, "boxes", owner)
    three = boxes.dim() == 3 and boxes.shape[0] == batch_size
    if boxes.shape[-1:] != (4,) or not (three or (shared and boxes.dim() == 2)):
        expected = f"(B, K, 4) = ({batch_size}, K, 4)"
        if shared:
            expected = f"(K, 4) or {expected}"
        raise ValueError(f"{owner} expected boxes of shape {expected} to match {like}, got {shape_str(boxes.shape)}")
    if boxes.shape[-2] == 0:
        raise ValueError(f"{owner} expected at least one box (K >= 1), got {shape_str(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{owner} expected boxes with a real dtype, got {boxes.dtype}")
    if boxes.device != device:
        raise ValueError(f"{owner} expected boxes on {device} like {like}, got {boxes.device}")
    return boxes


def check_box_mask(mask: object, batch_size: int, num_boxes: int, device: torch.device, owner: str) -> Tensor:
    """A ``(B, K)`` bool mask (True = region present) on the boxes' device."""
    mask = check_tensor(mask, "mask", owner)
    if mask.dtype != torch.bool:
        raise TypeError(f"{owner} expected mask to be a bool tensor (True = region present), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch_size, num_boxes):
        raise ValueError(
            f"{owner} expected mask of shape (B, K) = {shape_str((batch_size, num_boxes))}, got {shape_str(mask.shape)}"
        )
    if mask.device != device:
        raise ValueError(f"{owner} expected mask on {device} like the images, got {mask.device}")
    return mask


def _first_bad(bad: Tensor, boxes: Tensor) -> tuple[int, str, tuple[float, ...]]:
    where = bad.nonzero()
    first = tuple(int(i) for i in where[0].tolist())
    value = tuple(round(float(v), 4) for v in boxes[first].tolist())
    return where.shape[0], ", ".join(map(str, first)), value


def check_box_values(
    boxes: Tensor, owner: str, mask: Tensor | None = None, image_size: tuple[int, int] | None = None
) -> None:
    """Reject non-finite boxes, ``x2 <= x1`` or ``y2 <= y1``, and with ``image_size`` boxes entirely outside it.

    Boxes where ``mask`` is ``False`` are not checked. Reads the values: a host sync on accelerators, so
    callers run it behind a flag and skip it while compiling.
    """
    if boxes.dim() == 2 and mask is not None:
        boxes = boxes.expand(mask.shape[0], -1, -1)
    good = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]) & torch.isfinite(boxes).all(-1)
    if mask is not None:
        good = good | ~mask
    if not bool(good.all()):
        count, index, value = _first_bad(~good, boxes)
        raise ValueError(
            f"{owner} expected boxes with finite coordinates, x2 > x1 and y2 > y1, got {count} invalid "
            f"box(es), e.g. boxes[{index}] = {value}"
        )
    if image_size is None:
        return
    height, width = image_size
    outside = (boxes[..., 0] >= width) | (boxes[..., 1] >= height) | (boxes[..., 2] <= 0) | (boxes[..., 3] <= 0)
    if mask is not None:
        outside = outside & mask
    if bool(outside.any()):
        count, index, value = _first_bad(outside, boxes)
        raise ValueError(
            f"{owner} expected boxes that overlap the image (0, 0, W, H) = (0, 0, {width}, {height}), got {count} "
            f"box(es) entirely outside it, e.g. boxes[{index}] = {value}; mark regions that do not exist with "
            f"mask=..., or pass outside='zero' to crop them as zeros"
        )


def check_landmarks(landmarks: object, batch_size: int, device: torch.device, owner: str) -> Tensor:
    """``(B, 5, 2)`` or ``(B, 68, 2)`` pixel landmarks of a real dtype on ``device``."""
    if landmarks is None:
        raise ValueError(f"{owner} expected landmarks of shape (B, 5, 2) or (B, 68, 2) in pixels, got None")
    landmarks = check_tensor(landmarks, "landmarks", owner)
    if landmarks.dim() != 3 or landmarks.shape[0] != batch_size or tuple(landmarks.shape[1:]) not in ((5, 2), (68, 2)):
        raise ValueError(
            f"{owner} expected landmarks of shape ({batch_size}, 5, 2) or ({batch_size}, 68, 2) in pixels, "
            f"got {shape_str(landmarks.shape)}"
        )
    if landmarks.dtype == torch.bool or landmarks.is_complex():
        raise TypeError(f"{owner} expected landmarks with a real dtype, got {landmarks.dtype}")
    if landmarks.device != device:
        raise ValueError(f"{owner} expected landmarks on {device} like the images, got {landmarks.device}")
    return landmarks


def warn_ignored_landmarks(owner: str, stacklevel: int = 2) -> None:
    """Landmarks given to a strategy that does not use them: a warning, not an error, because a generic loop
    passes the landmarks its data has whatever the regions (skipped while compiling)."""
    if torch.compiler.is_compiling():
        return
    warnings.warn(
        f"{owner} ignores landmarks: its regions do not depend on them. Pass landmarks=None, or use "
        f"strategy='landmarks' for regions around the landmarks",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def check_boxes_flag(
    check_boxes: object,
    boxes: Tensor,
    owner: str,
    mask: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
) -> None:
    """The one place where the ops that take boxes decide whether to read their values.

    With ``check_boxes`` true (outside ``torch.compile``) :func:`check_box_values` runs: it reads the values,
    a host synchronisation on accelerators; ``False`` skips it for a hot path.
    """
    if check_bool(check_boxes, "check_boxes", owner) and not torch.compiler.is_compiling():
        check_box_values(boxes, owner, None if mask is None else mask.to(boxes.device), image_size)


#: The strategy each strategy-specific option of the region boxes belongs to.
STRATEGY_OPTIONS = {
    "boxes": "fixed",
    "num_regions": "random",
    "scale": "random",
    "eval_seed": "random",
    "generator": "random",
    "radius": "landmarks",
    "border": "landmarks",
}


def check_strategy_options(strategy: str, given: dict[str, object], owner: str) -> None:
    """Refuse an option given (not ``None``) for a strategy it does not belong to, as ``nn.Upsample`` refuses
    ``align_corners`` for a mode without corners: the option would be silently ignored otherwise."""
    for name, value in given.items():
        belongs = STRATEGY_OPTIONS[name]
        if value is not None and belongs != strategy:
            raise ValueError(
                f"{owner} got {name}={value!r}, an option of strategy={belongs!r} only; strategy={strategy!r} "
                f"does not use it, so leave it out (None)"
            )
