r"""Region boxes of RAN (paper Sec. III-C): which parts of each face become regions, as tensors of boxes.

:func:`~region_attention.functional.preset_boxes` (fixed position cropping),
:func:`~region_attention.functional.random_boxes` (random cropping) and
:func:`~region_attention.functional.landmark_boxes` (landmark-based cropping, with
:func:`~region_attention.functional.reduce_landmarks` for 68-point landmarks) make the boxes of one
strategy; :func:`~region_attention.functional.region_boxes` makes a whole
:class:`~region_attention.RegionCropper`'s boxes and mask (the strategy's regions plus the whole face),
without cropping a pixel. :func:`~region_attention.functional.crop_regions` then crops them.

Convention:
    A box is ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the input image: pixel ``i`` covers
    :math:`[i, i + 1)`, so the whole ``H x W`` image is ``(0, 0, W, H)``. Normalised boxes (the presets,
    random boxes, a cropper's fixed boxes) are fractions of the width and height in :math:`[0, 1]` and
    become pixel boxes by multiplying by ``(W, H, W, H)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._validation import (
    Box,
    check_batch_size,
    check_box_list,
    check_choice,
    check_image_size,
    check_landmarks,
    check_positive_int,
    check_radius,
    check_scale,
    check_strategy_options,
    check_tensor,
    check_unit_boxes,
    shape_str,
    warn_ignored_landmarks,
)

__all__ = [
    "BOX_PRESETS",
    "LANDMARK_BORDERS",
    "STRATEGIES",
    "WHOLE_POSITIONS",
    "RegionBoxes",
    "landmark_boxes",
    "preset_boxes",
    "random_boxes",
    "reduce_landmarks",
    "region_boxes",
]

#: Fixed boxes ``(x1, y1, x2, y2)`` as fractions of the width and height, in order.
#: ``"paper"``: the paper's five regions (Sec. III-C): top-left, top-right and center-down at 0.75 of
#: the face, then the center at 0.9 and at 0.85. ``"authors-affectnet"``: the seven regions of the
#: authors' AffectNet code, in their order: center-down, top-left, top-right, center 0.9, center 0.8,
#: center 0.75, center-top.
BOX_PRESETS: dict[str, tuple[Box, ...]] = {
    "paper": (
        (0.0, 0.0, 0.75, 0.75),
        (0.25, 0.0, 1.0, 0.75),
        (0.125, 0.25, 0.875, 1.0),
        (0.05, 0.05, 0.95, 0.95),
        (0.075, 0.075, 0.925, 0.925),
    ),
    "authors-affectnet": (
        (0.125, 0.25, 0.875, 1.0),
        (0.0, 0.0, 0.75, 0.75),
        (0.25, 0.0, 1.0, 0.75),
        (0.05, 0.05, 0.95, 0.95),
        (0.1, 0.1, 0.9, 0.9),
        (0.125, 0.125, 0.875, 0.875),
        (0.125, 0.0, 0.875, 0.75),
    ),
}

#: What :func:`~region_attention.functional.landmark_boxes` does with a region that crosses the image border.
LANDMARK_BORDERS = ("shift", "clip", "pad", "drop")

#: How :class:`~region_attention.RegionCropper` and :func:`~region_attention.functional.region_boxes` make
#: their regions.
STRATEGIES = ("fixed", "random", "landmarks")

#: Where the whole face goes among the regions: ``"first"`` (the paper's :math:`I_0`) or ``"last"``
#: (the authors' code).
WHOLE_POSITIONS = ("first", "last")

#: Indices of the iBUG 68-point landmarks (0-based) reduced to the 5 MTCNN points: the mean of each eye
#: contour, the nose tip, the two mouth corners.
_IBUG_EYES = ((36, 42), (42, 48))
#: Regions per face of the ``"landmarks"`` strategy: one per point of the 5-point layout (68-point landmarks
#: are reduced to it by :func:`~region_attention.functional.reduce_landmarks`).
LANDMARK_REGIONS = 5
_IBUG_NOSE, _IBUG_MOUTH = 30, (48, 54)


def preset_boxes(name: str, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The fixed boxes of a preset (``BOX_PRESETS``), normalised, as a ``(k, 4)`` tensor.

    Args:
        name: ``"paper"`` (5 regions) or ``"authors-affectnet"`` (7 regions).
        dtype, device: of the returned tensor.

    Example:
        >>> from region_attention.functional import preset_boxes
        >>> preset_boxes("paper")
        tensor([[0.0000, 0.0000, 0.7500, 0.7500],
                [0.2500, 0.0000, 1.0000, 0.7500],
                [0.1250, 0.2500, 0.8750, 1.0000],
                [0.0500, 0.0500, 0.9500, 0.9500],
                [0.0750, 0.0750, 0.9250, 0.9250]])
    """
    check_choice(name, "name", tuple(BOX_PRESETS), "preset_boxes")
    return torch.tensor(BOX_PRESETS[name], dtype=dtype, device=device)


def random_boxes(
    batch_size: int,
    num_regions: int,
    *,
    scale: tuple[float, float] = (0.7, 0.95),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Random square-ratio boxes inside the face, drawn per image (paper Sec. III-C, random cropping).

    Each box has side ratio :math:`s \sim U(\text{scale})` of the face on both axes and a uniformly random
    position inside it: :math:`x_1 \sim U(0, 1 - s)`, :math:`y_1 \sim U(0, 1 - s)`. One ``torch.rand`` call
    draws the whole batch.

    Args:
        batch_size, num_regions: ``B`` and the number of boxes per image.
        scale: range of the side ratio, ``0 < min <= max <= 1``; the paper uses ``(0.7, 0.95)``.
        generator: draws from this generator (on its device) for reproducible boxes.
        device, dtype: of the returned boxes; ``device`` defaults to the generator's.

    Shapes:
        - output: :math:`(B, n, 4)` normalised ``(x1, y1, x2, y2)``; multiply by ``(W, H, W, H)`` for pixels

    Example:
        >>> import torch
        >>> from region_attention.functional import random_boxes
        >>> g = torch.Generator().manual_seed(0)
        >>> boxes = random_boxes(2, 5, generator=g)
        >>> boxes.shape, bool(((boxes[..., 2] - boxes[..., 0]) >= 0.7).all()), bool((boxes <= 1).all())
        (torch.Size([2, 5, 4]), True, True)
        >>> torch.equal(boxes, random_boxes(2, 5, generator=torch.Generator().manual_seed(0)))
        True
    """
    owner = "random_boxes"
    check_batch_size(batch_size, owner)
    check_positive_int(num_regions, "num_regions", owner)
    lo, hi = check_scale(scale, owner)
    sample_device = generator.device if generator is not None else device
    u = torch.rand(batch_size, num_regions, 3, generator=generator, device=sample_device, dtype=dtype)
    side = lo + (hi - lo) * u[..., 0]
    x1 = (1 - side) * u[..., 1]
    y1 = (1 - side) * u[..., 2]
    boxes = torch.stack((x1, y1, x1 + side, y1 + side), dim=-1)
    return boxes if device is None else boxes.to(device)


def reduce_landmarks(landmarks: Tensor) -> Tensor:
    """Reduce iBUG 68-point landmarks to the 5 MTCNN points; 5-point landmarks pass through.

    The five points, in order: the eye on the image's left (mean of points 36-41, 0-based), the other eye
    (mean of 42-47), the nose tip (30), the mouth corners 48 and 54.

    Shapes:
        - landmarks: :math:`(B, 68, 2)` or :math:`(B, 5, 2)`, ``(x, y)`` in pixels
        - output: :math:`(B, 5, 2)`

    Example:
        >>> import torch
        >>> from region_attention.functional import reduce_landmarks
        >>> reduce_landmarks(torch.arange(68.0).repeat_interleave(2).reshape(1, 68, 2))[0, :, 0]
        tensor([38.5000, 44.5000, 30.0000, 48.0000, 54.0000])
    """
    owner = "reduce_landmarks"
    landmarks = check_tensor(landmarks, "landmarks", owner)
    if landmarks.dim() != 3 or landmarks.shape[1] not in (5, 68) or landmarks.shape[2] != 2:
        raise ValueError(
            f"{owner} expected landmarks of shape (B, 5, 2) or (B, 68, 2) in pixels (x, y), "
            f"got {shape_str(landmarks.shape)}"
        )
    if landmarks.shape[1] == 5:
        return landmarks
    (a0, a1), (b0, b1) = _IBUG_EYES
    return torch.stack(
        (
            landmarks[:, a0:a1].mean(1),
            landmarks[:, b0:b1].mean(1),
            landmarks[:, _IBUG_NOSE],
            landmarks[:, _IBUG_MOUTH[0]],
            landmarks[:, _IBUG_MOUTH[1]],
        ),
        dim=1,
    )


def landmark_boxes(
    landmarks: Tensor,
    image_size: tuple[int, int],
    *,
    radius: float = 0.4,
    border: str = "shift",
) -> tuple[Tensor, Tensor]:
    r"""One square box per landmark (paper Sec. III-C, landmark-based cropping), with a border policy.

    The box of a landmark :math:`(x, y)` is centred on it with half-side :math:`r = \text{radius} \cdot
    \min(H, W)`: the face is the image, and its side is the image's shorter side. A landmark that is
    missing (NaN or inf) or outside the image has no region: its ``mask`` entry is ``False`` and its box
    is all zeros. A box that crosses the image border is handled by ``border``:

    - ``"shift"`` (default): moved inside the image keeping its size (clipped on an axis where it is larger
      than the image). Two landmarks shifted onto the same box would give duplicate regions, so a shifted
      box that coincides with another region's box is clipped instead. With ``radius <= 0.5`` distinct
      landmarks therefore always give distinct boxes, each inside the image and containing its landmark.
    - ``"clip"``: intersected with the image (the box shrinks and stops being square).
    - ``"pad"``: kept as is; the part outside the image is cropped as zeros.
    - ``"drop"``: masked (``mask`` is ``False``), as a literal reading of the paper's "remove the regions
      which are out of the original image"; on a tightly detected face this leaves few regions.

    Args:
        landmarks: ``(x, y)`` in pixels of the image; 68-point landmarks are reduced by
            :func:`~region_attention.functional.reduce_landmarks`.
        image_size: ``(H, W)`` of the image.
        radius: half-side of a box as a fraction of the face side, ``> 0``; the authors use 0.4.
        border: ``"shift"`` (default), ``"clip"``, ``"pad"`` or ``"drop"``.

    Shapes:
        - landmarks: :math:`(B, 5, 2)` or :math:`(B, 68, 2)`
        - output: boxes :math:`(B, 5, 4)` xyxy in pixels (dtype at least float32), mask :math:`(B, 5)` bool

    Example:
        >>> import torch
        >>> from region_attention.functional import landmark_boxes
        >>> pts = torch.tensor([[[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [10.0, 90.0], [float("nan"), 0.0]]])
        >>> boxes, mask = landmark_boxes(pts, (100, 100), radius=0.25)   # half-side 25 px
        >>> boxes[0]   # the fourth box is shifted inside the image, the fifth landmark is missing
        tensor([[  5.,  15.,  55.,  65.],
                [ 45.,  15.,  95.,  65.],
                [ 25.,  35.,  75.,  85.],
                [  0.,  50.,  50., 100.],
                [  0.,   0.,   0.,   0.]])
        >>> mask
        tensor([[ True,  True,  True,  True, False]])
    """
    owner = "landmark_boxes"
    points = reduce_landmarks(landmarks)
    if points.dtype == torch.bool or points.is_complex():
        raise TypeError(f"{owner} expected landmarks with a real dtype, got {points.dtype}")
    height, width = check_image_size(image_size, owner)
    radius = check_radius(radius, owner)
    check_choice(border, "border", LANDMARK_BORDERS, owner)
    ct = torch.promote_types(points.dtype, torch.float32)
    points = points.to(ct)
    x, y = points[..., 0], points[..., 1]
    present = torch.isfinite(x) & torch.isfinite(y) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    x = torch.where(present, x, torch.full_like(x, width / 2))
    y = torch.where(present, y, torch.full_like(y, height / 2))
    r = radius * min(height, width)
    raw = torch.stack((x - r, y - r, x + r, y + r), dim=-1)
    crosses = (raw[..., 0] < 0) | (raw[..., 1] < 0) | (raw[..., 2] > width) | (raw[..., 3] > height)
    clipped = torch.stack(
        (
            raw[..., 0].clamp_min(0),
            raw[..., 1].clamp_min(0),
            raw[..., 2].clamp_max(width),
            raw[..., 3].clamp_max(height),
        ),
        dim=-1,
    )
    mask = present
    if border == "pad":
        boxes = raw
    elif border == "clip":
        boxes = clipped
    elif border == "drop":
        boxes = raw
        mask = present & ~crosses
    else:
        sx1, sx2 = _shift_axis(x, r, width)
        sy1, sy2 = _shift_axis(y, r, height)
        shifted = torch.stack((sx1, sy1, sx2, sy2), dim=-1)
        same = (shifted.unsqueeze(2) == shifted.unsqueeze(1)).all(-1)
        same = same & present.unsqueeze(2) & present.unsqueeze(1)
        same = same & ~torch.eye(same.shape[-1], dtype=torch.bool, device=same.device)
        collides = same.any(-1) & crosses
        boxes = torch.where(collides.unsqueeze(-1), clipped, shifted)
    boxes = torch.where(mask.unsqueeze(-1), boxes, torch.zeros_like(boxes))
    return boxes, mask


def _shift_axis(centre: Tensor, r: float, length: int) -> tuple[Tensor, Tensor]:
    """``[centre - r, centre + r]`` moved inside ``[0, length]`` keeping its size (clipped if larger)."""
    if 2 * r >= length:
        return torch.zeros_like(centre), torch.full_like(centre, float(length))
    lo = (centre - r).clamp(0, length - 2 * r)
    return lo, lo + 2 * r


# ----------------------------------------------------------------------------------------------------
# A cropper's regions: the strategy's boxes plus the whole face
# ----------------------------------------------------------------------------------------------------


class RegionBoxes(NamedTuple):
    """What :func:`~region_attention.functional.region_boxes` and the ``boxes`` method of
    :class:`~region_attention.RegionCropper` and both networks return: where the regions are, before any
    pixel is cropped.

    Attributes:
        boxes: ``(B, K, 4)`` xyxy in continuous pixel coordinates of the images, at least float32; all
            zeros where ``mask`` is ``False``. For fixed boxes it is one ``(K, 4)`` tensor expanded over
            the batch (batch stride 0, which :func:`~region_attention.functional.crop_regions` recognises
            as shared boxes): call ``.contiguous()`` before writing into it.
        mask: ``(B, K)`` bool, ``True`` = region present.
        whole_index: index of the whole face among the ``K`` regions (0 or -1), or ``None`` when the regions
            hold no whole face (or, for boxes you made yourself, when you do not say where it is).
            :class:`~region_attention.RegionAttentionLoss` reads it from the network's output.
    """

    boxes: Tensor
    mask: Tensor
    whole_index: int | None = None


def _fixed_unit_boxes(
    boxes: object, device: torch.device | None, dtype: torch.dtype, check_boxes: bool, owner: str
) -> Tensor:
    """Normalised fixed boxes as a ``(k, 4)`` tensor on ``device``, checked to lie in ``[0, 1]``."""
    if isinstance(boxes, str):
        check_choice(boxes, "boxes", tuple(BOX_PRESETS), owner)
        return torch.tensor(BOX_PRESETS[boxes], dtype=dtype, device=device)
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
            raise ValueError(
                f"{owner} expected boxes of shape (k, 4) (normalised x1, y1, x2, y2), got {shape_str(boxes.shape)}"
            )
        if boxes.dtype == torch.bool or boxes.is_complex():
            raise TypeError(f"{owner} expected boxes with a real dtype, got {boxes.dtype}")
        if check_boxes and not torch.compiler.is_compiling():  # reads the values: a sync on accelerators
            check_unit_boxes(check_box_list(boxes.detach().tolist(), owner), owner)
        return boxes.to(device=device, dtype=dtype)
    unit = check_unit_boxes(check_box_list(boxes, owner), owner)
    return torch.tensor(unit, dtype=dtype, device=device)


def _to_pixels(unit: Tensor, height: int, width: int) -> Tensor:
    # Columns times Python numbers: no (W, H, W, H) tensor to copy to the device on every call.
    x1, y1, x2, y2 = unit.unbind(-1)
    return torch.stack((x1 * width, y1 * height, x2 * width, y2 * height), dim=-1)


def region_boxes(
    strategy: str,
    batch_size: int,
    image_size: tuple[int, int],
    *,
    boxes: str | Tensor | Sequence[Sequence[float]] | None = None,
    num_regions: int | None = None,
    scale: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    landmarks: Tensor | None = None,
    radius: float | None = None,
    border: str | None = None,
    whole_position: str | None = "first",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    check_boxes: bool = True,
) -> RegionBoxes:
    r"""The boxes and mask of a cropper's regions: the strategy's boxes with the whole face added.

    The functional twin of :meth:`RegionCropper.boxes <region_attention.RegionCropper.boxes>`: the
    cropper's regions without cropping a pixel, for models that pool features of the whole image over the
    boxes instead. :func:`~region_attention.functional.crop_regions` crops them.

    - ``"fixed"``: the same ``boxes`` for every image (a preset name, or normalised boxes in
      :math:`[0, 1]`), scaled to the image; every region present.
    - ``"random"``: :func:`~region_attention.functional.random_boxes` with ``num_regions``, ``scale`` and
      ``generator``, scaled to the image; every region present.
    - ``"landmarks"``: :func:`~region_attention.functional.landmark_boxes` of ``landmarks`` with ``radius``
      and ``border``; regions of missing or out-of-image landmarks are masked, with all-zero boxes.

    An option of one strategy given to another (for example ``scale`` with ``"fixed"``) raises
    :class:`ValueError` naming the strategy it belongs to, as ``nn.Upsample`` refuses ``align_corners`` for a
    mode it does not apply to; ``None`` (the default) takes the strategy's default.

    The whole face ``(0, 0, W, H)``, always present, goes ``"first"`` (the paper's :math:`I_0`) or
    ``"last"`` (the authors' code) with ``whole_position``; ``None`` leaves it out.

    Args:
        strategy: ``"fixed"``, ``"random"`` or ``"landmarks"``.
        batch_size: ``B``.
        image_size: ``(H, W)`` of the images, in pixels.
        boxes: for ``"fixed"``: ``"paper"`` (default), ``"authors-affectnet"``, or a ``(k, 4)`` tensor or
            sequence of normalised ``(x1, y1, x2, y2)``. A tensor on the target device avoids a copy per call.
        num_regions, scale, generator: for ``"random"``: default 5 regions of side ratio in ``(0.7, 0.95)``.
        landmarks: for ``"landmarks"`` (required there): ``(B, 5, 2)`` or ``(B, 68, 2)`` pixel ``(x, y)``.
            The other strategies ignore landmarks and warn when given some.
        radius, border: for ``"landmarks"``: default 0.4 and ``"shift"``.
        whole_position: ``"first"``, ``"last"`` or ``None``.
        device: of the outputs; default the landmarks' device, else the generator's (random), else the CPU.
        dtype: floating dtype of the boxes, at least float32 is advised (pixel coordinates).
        check_boxes: check that a ``boxes`` tensor holds finite fractions in :math:`[0, 1]` with
            ``x2 > x1`` and ``y2 > y1`` (boxes of Python numbers are always checked). Reads its values:
            a host sync on accelerators. Skipped under ``torch.compile``.

    Shapes:
        - landmarks: :math:`(B, 5, 2)` or :math:`(B, 68, 2)`
        - output: :class:`~region_attention.functional.RegionBoxes` with boxes :math:`(B, K, 4)`, mask
          :math:`(B, K)` and ``whole_index`` (0 for ``"first"``, -1 for ``"last"``, else ``None``), where
          :math:`K` is the number of regions plus one with the whole face

    Example:
        >>> import torch
        >>> from region_attention.functional import region_boxes
        >>> out = region_boxes("fixed", 2, (100, 80), boxes=[(0.0, 0.0, 0.5, 0.5)], whole_position="last")
        >>> out.boxes[0]
        tensor([[ 0.,  0., 40., 50.],
                [ 0.,  0., 80., 100.]])
        >>> out.mask
        tensor([[True, True],
                [True, True]])
    """
    owner = f"region_boxes(strategy={strategy!r})"
    check_choice(strategy, "strategy", STRATEGIES, "region_boxes")
    options = {"boxes": boxes, "num_regions": num_regions, "scale": scale, "generator": generator}
    check_strategy_options(strategy, {**options, "radius": radius, "border": border}, owner)
    check_batch_size(batch_size, owner)
    height, width = check_image_size(image_size, owner)
    if whole_position is not None:
        check_choice(whole_position, "whole_position", WHOLE_POSITIONS, owner)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner} expected dtype to be a floating point torch.dtype, got {dtype!r}")
    target = torch.device(device) if device is not None else None
    if strategy != "landmarks" and landmarks is not None:
        warn_ignored_landmarks(owner, stacklevel=2)
    whole_index = None if whole_position is None else 0 if whole_position == "first" else -1
    if strategy == "fixed":
        unit = _fixed_unit_boxes("paper" if boxes is None else boxes, target, dtype, check_boxes, owner)
        pixel = _to_pixels(unit, height, width).unsqueeze(0)
        if whole_position is not None:
            pixel = _add_whole(pixel, height, width, whole_position)
        shared = pixel.expand(batch_size, -1, -1)
        return RegionBoxes(shared, torch.ones(shared.shape[:2], dtype=torch.bool, device=shared.device), whole_index)
    if strategy == "random":
        unit = random_boxes(
            batch_size,
            5 if num_regions is None else num_regions,
            scale=(0.7, 0.95) if scale is None else scale,
            generator=generator,
            device=target,
            dtype=dtype,
        )
        pixel = _to_pixels(unit, height, width)
        mask = torch.ones(unit.shape[:2], dtype=torch.bool, device=unit.device)
    else:
        if target is None and isinstance(landmarks, Tensor):
            target = landmarks.device
        points = check_landmarks(landmarks, batch_size, target or torch.device("cpu"), owner)
        pixel, mask = landmark_boxes(
            points, (height, width), radius=0.4 if radius is None else radius, border=border or "shift"
        )
        pixel = pixel.to(dtype)
    if whole_position is None:
        return RegionBoxes(pixel, mask, None)
    present = torch.ones_like(mask[:, :1])
    mask = torch.cat([present, mask] if whole_position == "first" else [mask, present], dim=1)
    return RegionBoxes(_add_whole(pixel, height, width, whole_position), mask, whole_index)


def _add_whole(boxes: Tensor, height: int, width: int, position: str) -> Tensor:
    """``(B, k, 4)`` boxes with the whole image ``(0, 0, W, H)`` added first or last."""
    whole = torch.zeros_like(boxes[:, :1])
    whole[..., 2] = width
    whole[..., 3] = height
    return torch.cat([whole, boxes] if position == "first" else [boxes, whole], dim=1)
