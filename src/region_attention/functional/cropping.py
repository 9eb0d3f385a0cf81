r"""Region generation of RAN (paper Sec. III-C) as pure functions of tensors.

:func:`~region_attention.functional.crop_regions` resamples boxes of a batch of images to one output
size, on the images' device, for the whole batch in one call and differentiably. The other functions
make the boxes: :func:`~region_attention.functional.preset_boxes` (fixed position cropping),
:func:`~region_attention.functional.random_boxes` (random cropping) and
:func:`~region_attention.functional.landmark_boxes` (landmark-based cropping, with
:func:`~region_attention.functional.reduce_landmarks` for 68-point landmarks).

Convention:
    A box is ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the input image: pixel ``i``
    covers :math:`[i, i + 1)`, so the whole ``H x W`` image is ``(0, 0, W, H)``. Normalised boxes (the
    presets, random boxes) are fractions of the width and height and become pixel boxes by multiplying
    by ``(W, H, W, H)``. Output pixel :math:`j` of a crop ``w`` pixels wide samples the input
    at :math:`u_j = x_1 + (j + \tfrac12)(x_2 - x_1) / w` (``align_corners=False`` semantics, like
    ``roi_align(..., aligned=True)``), so an integer box cropped at its own size is exactly
    ``images[..., y1:y2, x1:x2]``.

Sampling is separable linear interpolation (bilinear): each axis is resampled with a matrix whose row
:math:`j` holds the tent filter :math:`\max(0, 1 - |i + \tfrac12 - u_j|)` over the input pixels, renormalised
over the pixels inside the image. Inside the image this is ``F.interpolate(mode="bilinear",
align_corners=False)`` (the edge pixels extend to the border); an output pixel whose centre
:math:`u_j` falls outside the image is zero (zero padding). With ``antialias=True`` the tent is widened
by the shrink factor :math:`\max(1, (x_2 - x_1) / w)`, as ``F.interpolate(antialias=True)`` and PIL do.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_choice, check_positive_int, check_tensor, shape_str

__all__ = [
    "BOX_PRESETS",
    "LANDMARK_BORDERS",
    "crop_regions",
    "landmark_boxes",
    "preset_boxes",
    "random_boxes",
    "reduce_landmarks",
]

Box = tuple[float, float, float, float]

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

#: Indices of the iBUG 68-point landmarks (0-based) reduced to the 5 MTCNN points: the mean of each eye
#: contour, the nose tip, the two mouth corners.
_IBUG_EYES = ((36, 42), (42, 48))
_IBUG_NOSE, _IBUG_MOUTH = 30, (48, 54)

# Output rows (or columns) resampled per matrix product on the CPU fast path: small enough that the
# band of input pixels each block needs stays narrow, large enough to amortise the call.
_TILE = 16


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------


def check_images(images: object, owner: str) -> Tensor:
    """Check ``images`` is a non-empty ``(B, C, H, W)`` floating point or uint8 tensor."""
    images = check_tensor(images, "images", owner)
    if images.dim() != 4:
        raise ValueError(
            f"{owner} expected images of shape (B, C, H, W), got {images.dim()}-D shape {shape_str(images.shape)}"
        )
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(f"{owner} expected images with a floating point or uint8 dtype, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{owner} expected a non-empty batch of images (B >= 1), got {shape_str(images.shape)}")
    if min(images.shape[1:]) == 0:
        raise ValueError(f"{owner} expected images with C, H, W >= 1, got {shape_str(images.shape)}")
    return images


def check_output_size(output_size: object, owner: str) -> tuple[int, int]:
    """``int`` or ``(height, width)`` of positive ints, returned as ``(height, width)``."""
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in size)
    ):
        raise TypeError(
            f"{owner} expected output_size to be an int or a (height, width) pair of ints, got {output_size!r}"
        )
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{owner} expected output_size > 0, got {output_size!r}")
    return int(size[0]), int(size[1])


def check_output_dtype(dtype: object, images: Tensor | None, owner: str) -> torch.dtype:
    """The crops' dtype: ``dtype`` if given (floating), else the images' dtype, float32 for uint8 images."""
    if dtype is None:
        return images.dtype if images is not None and images.is_floating_point() else torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner} expected dtype to be a floating point torch.dtype or None, got {dtype!r}")
    return dtype


def _host_box_list(boxes: object, owner: str, name: str = "boxes") -> tuple[Box, ...]:
    """Check boxes given as a sequence of 4-sequences of Python numbers."""
    if not isinstance(boxes, Sequence) or isinstance(boxes, str):
        raise TypeError(
            f"{owner} expected {name} to be a tensor or a sequence of (x1, y1, x2, y2) boxes, "
            f"got {type(boxes).__name__}"
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


def _check_box_tensor(boxes: Tensor, images: Tensor, owner: str) -> Tensor:
    bsz = images.shape[0]
    if boxes.dim() not in (2, 3) or boxes.shape[-1] != 4 or (boxes.dim() == 3 and boxes.shape[0] != bsz):
        raise ValueError(
            f"{owner} expected boxes of shape (K, 4) or (B, K, 4) = (K, 4) or ({bsz}, K, 4), "
            f"got {shape_str(boxes.shape)}"
        )
    if boxes.shape[-2] == 0:
        raise ValueError(f"{owner} expected at least one box (K >= 1), got {shape_str(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{owner} expected boxes with a real dtype, got {boxes.dtype}")
    if boxes.device != images.device:
        raise ValueError(f"{owner} expected boxes on {images.device} like the images, got {boxes.device}")
    return boxes


def _check_box_values(boxes: Tensor, owner: str) -> None:
    """Reject ``x2 <= x1``, ``y2 <= y1`` and non-finite boxes. Reads values: a host sync on accelerators."""
    good = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]) & torch.isfinite(boxes).all(-1)
    if not bool(good.all()):
        bad = (~good).nonzero()
        first = tuple(int(i) for i in bad[0].tolist())
        value = tuple(round(float(v), 4) for v in boxes[first].tolist())
        raise ValueError(
            f"{owner} expected boxes with finite coordinates, x2 > x1 and y2 > y1, got {bad.shape[0]} invalid "
            f"box(es), e.g. boxes[{', '.join(map(str, first))}] = {value}"
        )


# ----------------------------------------------------------------------------------------------------
# Interpolation matrices
# ----------------------------------------------------------------------------------------------------


def interpolation_matrix(
    lo: Tensor, hi: Tensor, n_in: int, n_out: int, antialias: bool = False, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Resampling matrix of one axis: ``(..., n_out, n_in)`` for intervals ``[lo, hi)`` of shape ``(...)``.

    Row :math:`j` holds the weights of the input pixels for the output pixel centred at
    :math:`u_j = lo + (j + \frac12)(hi - lo) / n_{out}`: the tent :math:`\max(0, 1 - |i + \frac12 - u_j| / s)`
    with :math:`s = 1` (or the shrink factor with ``antialias``), normalised over the pixels of the image,
    and zero when :math:`u_j` lies outside :math:`[0, n_{in})`.
    """
    dtype = lo.dtype if dtype is None else dtype
    # Positions are formed in float64 where the device has it and split into an integer part and a
    # fraction, so the distances |i + 0.5 - u_j| that matter (< 1) carry no float32 rounding of u_j ~ 200.
    pos = torch.float64 if lo.device.type in ("cpu", "cuda") else dtype
    lo, hi = lo.to(pos), hi.to(pos)
    step = (hi - lo) / n_out
    centre = lo.unsqueeze(-1) + (torch.arange(n_out, dtype=pos, device=lo.device) + 0.5) * step.unsqueeze(-1)
    base = centre.floor()
    frac = (centre - base).to(dtype) - 0.5
    pixels = torch.arange(n_in, dtype=dtype, device=lo.device)
    dist = (base.to(dtype).unsqueeze(-1) - pixels + frac.unsqueeze(-1)).abs()
    if antialias:
        dist = dist / step.to(dtype).clamp_min(1.0)[..., None, None]
    weights = (1.0 - dist).clamp_min(0.0)
    inside = (centre >= 0) & (centre < n_in)
    total = weights.sum(-1, keepdim=True)
    # Inside the image the nearest pixel centre is at most 0.5 away, so total >= 0.5 there.
    return torch.where(inside.unsqueeze(-1), weights / total.clamp_min(0.5), torch.zeros_like(weights))


class _AxisPlan(NamedTuple):
    """One axis of a host-known box: a plain slice, or banded blocks of its interpolation matrix."""

    slice_start: int | None  # set when the axis is an exact integer slice of the input
    blocks: tuple[tuple[int, int, int, int, Tensor], ...]  # (out0, out1, in0, in1, weights (out, in))
    zero: tuple[tuple[int, int], ...]  # output ranges whose samples are all outside the image


@functools.lru_cache(maxsize=512)
def _axis_plan(lo: float, hi: float, n_in: int, n_out: int, antialias: bool, dtype: torch.dtype) -> _AxisPlan:
    if lo.is_integer() and hi - lo == n_out and lo >= 0 and hi <= n_in:
        return _AxisPlan(int(lo), (), ())
    m = interpolation_matrix(
        torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64), n_in, n_out, antialias
    )
    blocks, zero = [], []
    for o0 in range(0, n_out, _TILE):
        o1 = min(o0 + _TILE, n_out)
        cols = (m[o0:o1] != 0).any(0).nonzero().flatten()
        if cols.numel() == 0:
            zero.append((o0, o1))
            continue
        i0, i1 = int(cols[0]), int(cols[-1]) + 1
        blocks.append((o0, o1, i0, i1, m[o0:o1, i0:i1].to(dtype).contiguous()))
    return _AxisPlan(None, tuple(blocks), tuple(zero))


# ----------------------------------------------------------------------------------------------------
# Cropping
# ----------------------------------------------------------------------------------------------------


def _as_float(images: Tensor, dtype: torch.dtype, scale_uint8: bool) -> Tensor:
    if images.is_floating_point():
        return images.to(dtype)
    out = images.to(dtype)
    return out.div_(255) if scale_uint8 else out


_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


@functools.lru_cache(maxsize=1)
def _madvise() -> Callable[[int, int, int], int] | None:
    """libc's ``madvise`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int], int], fn)


def _empty_cpu(*shape: int, dtype: torch.dtype) -> Tensor:
    """``torch.empty`` on the CPU whose large buffers use transparent huge pages where Linux allows it.

    A fresh buffer of the crops' size (hundreds of MB) costs more to fault in page by page than to fill:
    asking the kernel for 2 MiB pages (``MADV_HUGEPAGE``, what PyTorch's ``THP_MEM_ALLOC_ENABLE=1`` does
    for every allocation) makes that first write several times cheaper. Only the advice changes; where the
    kernel has transparent huge pages off, nothing does.
    """
    out = torch.empty(*shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    madvise = _madvise() if nbytes >= 8 * _HUGE_PAGE else None
    if madvise is not None:
        start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        end = (out.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        madvise(start, end - start, _MADV_HUGEPAGE)
    return out


def _crop_host_boxes(
    images: Tensor,
    boxes: tuple[Box, ...],
    size: tuple[int, int],
    antialias: bool,
    dtype: torch.dtype,
    scale_uint8: bool,
) -> Tensor:
    """CPU fast path for boxes shared by the batch and known on the host (no autograd, no compile).

    A Python loop over the few boxes, each step batched over all images. An axis that is an integer
    slice at the output size is sliced; the others are resampled with the banded blocks of their
    interpolation matrix: the columns with one matrix product per block of ``_TILE`` output columns
    over all ``B * C * H`` image rows at once, then the rows with one batched product per block of
    output rows, copied into the preallocated output while still in cache. Every product writes a
    contiguous or plainly strided matrix, so each is a single BLAS call; no copy of the input per region.
    """
    bsz, chans, height, width = images.shape
    h, w = size
    ct = torch.promote_types(dtype, torch.float32)
    out = _empty_cpu(bsz, len(boxes), chans, h, w, dtype=ct)
    plans = [
        (_axis_plan(y1, y2, height, h, antialias, ct), _axis_plan(x1, x2, width, w, antialias, ct))
        for x1, y1, x2, y2 in boxes
    ]
    src: Tensor | None = None
    work: Tensor | None = None
    for k, (py, px) in enumerate(plans):
        dst = out[:, k]
        if py.slice_start is not None and px.slice_start is not None:
            region = images[:, :, py.slice_start : py.slice_start + h, px.slice_start : px.slice_start + w]
            if images.is_floating_point() or not scale_uint8:
                dst.copy_(region)
            else:
                torch.div(region, 255, out=dst)
            continue
        if src is None:
            if images.dtype == ct and images.is_contiguous():
                src = images
            else:
                src = _empty_cpu(bsz, chans, height, width, dtype=ct)
                if images.is_floating_point() or not scale_uint8:
                    src.copy_(images)
                else:
                    torch.div(images, 255, out=src)
        if px.slice_start is not None:
            cols = src[..., px.slice_start : px.slice_start + w]
        else:
            if work is None:
                work = _empty_cpu(bsz * chans * height, w, dtype=ct)
            flat = src.view(bsz * chans * height, width)
            for o0, o1, i0, i1, wx in px.blocks:
                torch.mm(flat[:, i0:i1], wx.t(), out=work[:, o0:o1])
            for o0, o1 in px.zero:
                work[:, o0:o1].zero_()
            cols = work.view(bsz, chans, height, w)
        if py.slice_start is not None:
            dst.copy_(cols[:, :, py.slice_start : py.slice_start + h])
            continue
        cols3 = cols.flatten(0, 1)  # a view: cols is the contiguous workspace or a column slice of src
        for o0, o1, i0, i1, wy in py.blocks:
            block = torch.bmm(wy.expand(cols3.shape[0], -1, -1), cols3[:, i0:i1])
            dst[:, :, o0:o1].copy_(block.view(bsz, chans, o1 - o0, w))
        for o0, o1 in py.zero:
            dst[:, :, o0:o1].zero_()
    return out if ct == dtype else out.to(dtype)


def _crop_dense(
    images: Tensor,
    boxes: Tensor,
    size: tuple[int, int],
    antialias: bool,
    dtype: torch.dtype,
    scale_uint8: bool,
    present: Tensor | None = None,
) -> Tensor:
    """General path: dense interpolation matrices and two batched matrix products (any device, autograd,
    ``torch.compile``). ``boxes`` is ``(K, 4)`` or ``(B, K, 4)`` in pixels; ``present`` zeroes regions."""
    _, _, height, width = images.shape
    h, w = size
    ct = torch.promote_types(dtype, torch.float32)
    x = _as_float(images, ct, scale_uint8)
    b = boxes if boxes.is_floating_point() else boxes.to(ct)
    wy = interpolation_matrix(b[..., 1], b[..., 3], height, h, antialias, ct)  # (..., K, h, H)
    wx = interpolation_matrix(b[..., 0], b[..., 2], width, w, antialias, ct)  # (..., K, w, W)
    if present is not None:
        wy = wy * present.to(ct)[..., None, None]
    if boxes.dim() == 2:
        rows = torch.einsum("kyY,bcYX->bkcyX", wy, x)
        crops = torch.einsum("bkcyX,kxX->bkcyx", rows, wx)
    else:
        rows = torch.einsum("bkyY,bcYX->bkcyX", wy, x)
        crops = torch.einsum("bkcyX,bkxX->bkcyx", rows, wx)
    return crops.to(dtype).contiguous()


def _taps(lo: Tensor, hi: Tensor, n_in: int, n_out: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Two-tap linear interpolation along one axis: indices ``i0``, ``i1``, weight of ``i1``, and inside."""
    pos = torch.float64 if lo.device.type in ("cpu", "cuda") else dtype
    lo, hi = lo.to(pos), hi.to(pos)
    step = (hi - lo) / n_out
    centre = lo.unsqueeze(-1) + (torch.arange(n_out, dtype=pos, device=lo.device) + 0.5) * step.unsqueeze(-1)
    inside = (centre >= 0) & (centre < n_in)
    s = (centre - 0.5).clamp(0, n_in - 1)
    i0 = s.floor().clamp(max=max(n_in - 2, 0))
    frac = (s - i0).to(dtype)
    first = i0.long()
    return first, (first + 1).clamp(max=n_in - 1), frac, inside


def _crop_taps(
    images: Tensor,
    boxes: Tensor,
    size: tuple[int, int],
    dtype: torch.dtype,
    scale_uint8: bool,
    present: Tensor | None = None,
) -> Tensor:
    """Gradient-free bilinear path for tensor boxes: two gathers and a lerp per axis, memory-bound.

    The same numbers as the interpolation matrices without ``antialias`` (which have two non-zero taps
    per row), at a fraction of the arithmetic. The input gets one zero row and column appended, the
    target of every sample outside the image, so zero padding and masked regions cost nothing extra.
    """
    bsz, chans, height, width = images.shape
    h, w = size
    k = boxes.shape[-2]
    ct = torch.promote_types(dtype, torch.float32)
    in_place = images.device.type == "cpu" and not torch.compiler.is_compiling()
    b = boxes if boxes.is_floating_point() else boxes.to(ct)
    iy0, iy1, fy, in_y = _taps(b[..., 1], b[..., 3], height, h, ct)
    ix0, ix1, fx, in_x = _taps(b[..., 0], b[..., 2], width, w, ct)
    if present is not None:
        in_y = in_y & present.unsqueeze(-1)
    iy0, iy1 = torch.where(in_y, iy0, height), torch.where(in_y, iy1, height)
    ix0, ix1 = torch.where(in_x, ix0, width), torch.where(in_x, ix1, width)
    src = F.pad(_as_float(images, ct, scale_uint8), (0, 1, 0, 1)).unsqueeze(1).expand(-1, k, -1, -1, -1)
    row_shape, out_shape = (bsz, k, chans, h, width + 1), (bsz, k, chans, h, w)

    def rows_at(index: Tensor, out: Tensor | None) -> Tensor:
        index = index.view(-1, k, 1, h, 1).expand(row_shape)
        return torch.gather(src, 3, index) if out is None else torch.gather(src, 3, index, out=out)

    def cols_at(rows: Tensor, index: Tensor, out: Tensor | None) -> Tensor:
        index = index.view(-1, k, 1, 1, w).expand(out_shape)
        return torch.gather(rows, 4, index) if out is None else torch.gather(rows, 4, index, out=out)

    if in_place:  # reuse two buffers, advised to huge pages: four passes of the output's size otherwise fault
        rows, spare = _empty_cpu(*row_shape, dtype=ct), _empty_cpu(*row_shape, dtype=ct)
        rows_at(iy0, rows).lerp_(rows_at(iy1, spare), fy.view(-1, k, 1, h, 1))
        out = _empty_cpu(*out_shape, dtype=ct)
        numel = out.numel()
        second = spare.view(-1)[:numel].view(out_shape) if spare.numel() >= numel else None
        cols_at(rows, ix0, out).lerp_(cols_at(rows, ix1, second), fx.view(-1, k, 1, 1, w))
    else:
        rows = rows_at(iy0, None).lerp_(rows_at(iy1, None), fy.view(-1, k, 1, h, 1))
        out = cols_at(rows, ix0, None).lerp_(cols_at(rows, ix1, None), fx.view(-1, k, 1, 1, w))
    return out if ct == dtype else out.to(dtype)


def _crop(
    images: Tensor,
    boxes: Tensor,
    size: tuple[int, int],
    antialias: bool,
    dtype: torch.dtype,
    scale_uint8: bool,
    present: Tensor | None = None,
) -> Tensor:
    """Tensor boxes: interpolation matrices when antialiasing or differentiating, else the two-tap path."""
    if antialias or (torch.is_grad_enabled() and (images.requires_grad or boxes.requires_grad)):
        return _crop_dense(images, boxes, size, antialias, dtype, scale_uint8, present)
    return _crop_taps(images, boxes, size, dtype, scale_uint8, present)


def crop_regions(
    images: Tensor,
    boxes: Tensor | Sequence[Sequence[float]],
    output_size: int | tuple[int, int],
    *,
    antialias: bool = False,
    dtype: torch.dtype | None = None,
    scale_uint8: bool = True,
    check_boxes: bool = True,
) -> Tensor:
    r"""Crop boxes out of a batch of images and resize them to one size, in one batched call.

    Each output pixel is the bilinear interpolation of the input at its centre (see the module's
    ``Convention``); regions of the box outside the image come out as zeros. Differentiable with respect
    to the images (and, through the interpolation weights, to tensor boxes). Without gradients or
    ``antialias`` the two non-zero taps per row are gathered directly instead of multiplying matrices
    (same numbers, memory-bound); no path copies the input per region or loops over the images.

    .. math::
        \mathrm{crop}_{b,k,c} = W_y^{(b,k)}\, I_{b,c}\, {W_x^{(b,k)}}^\top

    with :math:`W_y \in \mathbb{R}^{h \times H}` and :math:`W_x \in \mathbb{R}^{w \times W}` the
    interpolation matrices of the box along each axis.

    Args:
        images: the batch, floating point or uint8.
        boxes: ``(x1, y1, x2, y2)`` in pixels of the input: a ``(B, K, 4)`` tensor (per image), a ``(K, 4)``
            tensor (shared by all images), or a sequence of ``K`` boxes of Python numbers (shared and known
            on the host: on the CPU this takes a faster banded path, the one
            :class:`~region_attention.RegionCropper` uses for fixed boxes; on other devices they are copied
            to the device on every call, so keep a tensor there instead).
        output_size: ``int`` or ``(height, width)`` of every crop.
        antialias: widen the interpolation filter when a box is shrunk (box larger than the output), as
            ``F.interpolate(antialias=True)`` does. Without it, a box more than twice the output size skips
            input pixels and aliases.
        dtype: floating dtype of the crops; default the images' dtype, float32 for uint8 images. The
            arithmetic runs in at least float32.
        scale_uint8: divide uint8 images by 255, so the crops lie in :math:`[0, 1]` as after
            ``torchvision.transforms.ToTensor``; ``False`` keeps the 0-255 range. Ignored for floats.
        check_boxes: raise on boxes with ``x2 <= x1``, ``y2 <= y1`` or non-finite values. Reading the
            values of a tensor on an accelerator synchronises with the host; pass ``False`` on a hot path.
            Skipped under ``torch.compile``. Boxes of Python numbers are always checked.

    Shapes:
        - images: :math:`(B, C, H, W)`
        - boxes: :math:`(B, K, 4)` or :math:`(K, 4)`
        - output: :math:`(B, K, C, h, w)`, contiguous

    Convention:
        Boxes are xyxy in continuous pixel coordinates, pixel :math:`i` spanning :math:`[i, i + 1)`; output
        pixel :math:`j` samples the input at :math:`x_1 + (j + \frac12)(x_2 - x_1)/w` (``align_corners=False``),
        so an integer box at its own size reproduces slicing exactly.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from region_attention.functional import crop_regions
        >>> images = torch.arange(32.0).reshape(2, 1, 4, 4)
        >>> crops = crop_regions(images, torch.tensor([[1.0, 0.0, 3.0, 2.0]]), 2)  # a 2x2 box at its size
        >>> crops.shape
        torch.Size([2, 1, 1, 2, 2])
        >>> torch.equal(crops[:, 0], images[:, :, 0:2, 1:3])
        True
        >>> whole = crop_regions(images, [(0, 0, 4, 4)], (2, 2), antialias=True)   # the whole image, shrunk
        >>> torch.allclose(whole[:, 0], F.interpolate(images, size=(2, 2), mode="bilinear", antialias=True))
        True
    """
    owner = "crop_regions"
    images = check_images(images, owner)
    size = check_output_size(output_size, owner)
    out_dtype = check_output_dtype(dtype, images, owner)
    if isinstance(boxes, Tensor):
        boxes = _check_box_tensor(boxes, images, owner)
        if check_boxes and not torch.compiler.is_compiling():
            _check_box_values(boxes, owner)
        return _crop(images, boxes, size, bool(antialias), out_dtype, bool(scale_uint8))
    host = _host_box_list(boxes, owner)
    if _fast_path_ok(images):
        return _crop_host_boxes(images, host, size, bool(antialias), out_dtype, bool(scale_uint8))
    box_tensor = torch.tensor(host, dtype=torch.promote_types(out_dtype, torch.float32), device=images.device)
    return _crop(images, box_tensor, size, bool(antialias), out_dtype, bool(scale_uint8))


def _fast_path_ok(images: Tensor) -> bool:
    """The banded CPU path writes into its output in place, so it serves eager, gradient-free calls."""
    return (
        images.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not (torch.is_grad_enabled() and images.requires_grad)
    )


# ----------------------------------------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------------------------------------


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


def check_scale(scale: object, owner: str) -> tuple[float, float]:
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
    check_positive_int(batch_size, "batch_size", owner)
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
    height, width = _check_image_size(image_size, owner)
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


def _check_image_size(image_size: object, owner: str) -> tuple[int, int]:
    if (
        not isinstance(image_size, (tuple, list, torch.Size))
        or len(image_size) != 2
        or any(isinstance(s, bool) or not isinstance(s, int) for s in image_size)
    ):
        raise TypeError(f"{owner} expected image_size to be a (height, width) pair of ints, got {image_size!r}")
    if image_size[0] <= 0 or image_size[1] <= 0:
        raise ValueError(f"{owner} expected image_size > 0, got {tuple(image_size)}")
    return int(image_size[0]), int(image_size[1])


def check_radius(radius: object, owner: str) -> float:
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        raise TypeError(f"{owner} expected radius to be a float, got {type(radius).__name__}")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"{owner} expected radius > 0, got {radius}")
    return float(radius)
