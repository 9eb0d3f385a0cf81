r"""The crop op of RAN's region generation: :func:`~region_attention.functional.crop_regions`.

It resamples boxes of a batch of images to one output size, on the images' device, for the whole batch in
one call and differentiably. The boxes come from :mod:`region_attention.functional.boxes` or from you.

Convention:
    A box is ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the input image: pixel ``i``
    covers :math:`[i, i + 1)`, so the whole ``H x W`` image is ``(0, 0, W, H)``. Output pixel :math:`j`
    of a crop ``w`` pixels wide samples the input at :math:`u_j = x_1 + (j + \tfrac12)(x_2 - x_1) / w`
    (``align_corners=False`` semantics, like ``roi_align(..., aligned=True)``), so an integer box cropped
    at its own size is exactly ``images[..., y1:y2, x1:x2]``.

Sampling is separable linear interpolation (bilinear): each axis is resampled with a matrix whose row
:math:`j` holds the tent filter :math:`\max(0, 1 - |i + \tfrac12 - u_j|)` over the input pixels, renormalised
over the pixels inside the image. Inside the image this is ``F.interpolate(mode="bilinear",
align_corners=False)`` (the edge pixels extend to the border); an output pixel whose centre
:math:`u_j` falls outside the image is zero (zero padding). With ``antialias=True`` the tent is widened
by the shrink factor :math:`\max(1, (x_2 - x_1) / w)`, as ``F.interpolate(antialias=True)`` and PIL do.

Three backends compute the same numbers; :func:`_crop` is the one place that picks between them:

- ``_crop_dense``, the plain path and the reference of the tests: dense interpolation matrices and two
  batched matrix products (any device, autograd, ``torch.compile``, ``antialias``);
- ``_crop_host_boxes``: boxes shared by the batch and known on the host, on the CPU, without autograd
  or compile: banded blocks of the interpolation matrices, written into a preallocated output;
- ``_crop_taps``: per-image boxes on the CPU without gradients or ``antialias``: the two non-zero taps per
  row gathered and blended (memory-bound).

The two fast paths run only where ``benchmarks/fast_paths.py`` measured them at least 1.25 times as fast
as the plain path (CPU, one thread, 32 faces of 224 x 224, K = 6: banded 4 to 6 times, two taps 1.5 to 2.2
times); on other devices the plain path runs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    Box,
    check_box_list,
    check_box_mask,
    check_box_tensor,
    check_boxes_flag,
    check_choice,
    check_images,
    check_output_dtype,
    check_output_size,
)

__all__ = ["OUTSIDE_POLICIES", "crop_regions", "interpolation_matrix"]

#: What :func:`~region_attention.functional.crop_regions` does with a box entirely outside the image:
#: ``"zero"`` crops it as zeros, ``"error"`` raises.
OUTSIDE_POLICIES = ("zero", "error")

# Output rows (or columns) resampled per matrix product on the CPU fast path: small enough that the
# band of input pixels each block needs stays narrow, large enough to amortise the call.
_TILE = 16


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
# Backends
# ----------------------------------------------------------------------------------------------------


def _as_float(images: Tensor, dtype: torch.dtype, scale_uint8: bool) -> Tensor:
    if images.is_floating_point():
        return images.to(dtype)
    out = images.to(dtype)
    return out.div_(255) if scale_uint8 else out


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
    out = torch.empty(bsz, len(boxes), chans, h, w, dtype=ct)
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
                src = torch.empty(bsz, chans, height, width, dtype=ct)
                if images.is_floating_point() or not scale_uint8:
                    src.copy_(images)
                else:
                    torch.div(images, 255, out=src)
        if px.slice_start is not None:
            cols = src[..., px.slice_start : px.slice_start + w]
        else:
            if work is None:
                work = torch.empty(bsz * chans * height, w, dtype=ct)
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
    b = boxes if boxes.is_floating_point() else boxes.to(ct)
    iy0, iy1, fy, in_y = _taps(b[..., 1], b[..., 3], height, h, ct)
    ix0, ix1, fx, in_x = _taps(b[..., 0], b[..., 2], width, w, ct)
    if present is not None:
        in_y = in_y & present.unsqueeze(-1)
    iy0, iy1 = torch.where(in_y, iy0, height), torch.where(in_y, iy1, height)
    ix0, ix1 = torch.where(in_x, ix0, width), torch.where(in_x, ix1, width)
    src = F.pad(_as_float(images, ct, scale_uint8), (0, 1, 0, 1)).unsqueeze(1).expand(-1, k, -1, -1, -1)
    row_shape, out_shape = (bsz, k, chans, h, width + 1), (bsz, k, chans, h, w)

    def rows_at(index: Tensor) -> Tensor:
        return torch.gather(src, 3, index.view(-1, k, 1, h, 1).expand(row_shape))

    def cols_at(rows: Tensor, index: Tensor) -> Tensor:
        return torch.gather(rows, 4, index.view(-1, k, 1, 1, w).expand(out_shape))

    rows = rows_at(iy0).lerp_(rows_at(iy1), fy.view(-1, k, 1, h, 1))
    out = cols_at(rows, ix0).lerp_(cols_at(rows, ix1), fx.view(-1, k, 1, 1, w))
    return out if ct == dtype else out.to(dtype)


def _needs_grad(images: Tensor, boxes: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (images.requires_grad or (boxes is not None and boxes.requires_grad))


def _crop(
    images: Tensor,
    boxes: Tensor | tuple[Box, ...],
    size: tuple[int, int],
    antialias: bool,
    dtype: torch.dtype,
    scale_uint8: bool,
    present: Tensor | None,
) -> Tensor:
    """The one dispatch between the backends (arguments already checked).

    Boxes shared by the batch (host boxes, a ``(K, 4)`` tensor, or ``(B, K, 4)`` expanded from one, i.e.
    batch stride 0) take the banded CPU path when it serves: CPU images, no autograd, not compiling, no
    mask (reading a CPU tensor's values costs no device sync). Other boxes on the CPU without autograd or
    antialiasing take the two-tap path; everything else the plain interpolation matrices.
    """
    if isinstance(boxes, Tensor) and boxes.dim() == 3 and (boxes.shape[0] == 1 or boxes.stride(0) == 0):
        boxes = boxes[0]
    tensor = boxes if isinstance(boxes, Tensor) else None
    if (
        present is None
        and images.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not _needs_grad(images, tensor)
        and (tensor is None or tensor.dim() == 2)
    ):
        if isinstance(boxes, Tensor):
            boxes = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in boxes.tolist())
        return _crop_host_boxes(images, boxes, size, antialias, dtype, scale_uint8)
    if tensor is None:
        tensor = torch.tensor(boxes, dtype=torch.promote_types(dtype, torch.float32), device=images.device)
    if present is not None and tensor.dim() == 2:
        tensor = tensor.expand(present.shape[0], -1, -1)
    if antialias or _needs_grad(images, tensor) or images.device.type != "cpu":
        return _crop_dense(images, tensor, size, antialias, dtype, scale_uint8, present)
    return _crop_taps(images, tensor, size, dtype, scale_uint8, present)


def crop_regions(
    images: Tensor,
    boxes: Tensor | Sequence[Sequence[float]],
    output_size: int | tuple[int, int],
    *,
    antialias: bool = False,
    dtype: torch.dtype | None = None,
    scale_uint8: bool = True,
    mask: Tensor | None = None,
    outside: str = "zero",
    check_boxes: bool = True,
) -> Tensor:
    r"""Crop boxes out of a batch of images and resize them to one size, in one batched call.

    Each output pixel is the bilinear interpolation of the input at its centre (see the module's
    ``Convention``); regions of the box outside the image come out as zeros. Differentiable with respect
    to the images (and, through the interpolation weights, to tensor boxes). On the CPU without gradients
    or ``antialias`` a faster path computes the same numbers (banded matrices for shared boxes, two gathered
    taps per row otherwise); no path copies the input per region or loops over the images.

    .. math::
        \mathrm{crop}_{b,k,c} = W_y^{(b,k)}\, I_{b,c}\, {W_x^{(b,k)}}^\top

    with :math:`W_y \in \mathbb{R}^{h \times H}` and :math:`W_x \in \mathbb{R}^{w \times W}` the
    interpolation matrices of the box along each axis.

    Args:
        images: the batch, floating point or uint8, channels first.
        boxes: ``(x1, y1, x2, y2)`` in pixels of the input: a ``(B, K, 4)`` tensor (per image), a ``(K, 4)``
            tensor or a ``(B, K, 4)`` tensor expanded from one (shared by all images), or a sequence of ``K``
            boxes of Python numbers (shared). Shared boxes on the CPU take a faster banded path without
            gradients (the one :class:`~region_attention.RegionCropper` uses for fixed boxes); Python numbers
            on other devices are copied to the device on every call, so keep a tensor there instead.
        output_size: ``int`` or ``(height, width)`` of every crop.
        antialias: widen the interpolation filter when a box is shrunk (box larger than the output), as
            ``F.interpolate(antialias=True)`` does. Without it, a box more than twice the output size skips
            input pixels and aliases.
        dtype: floating dtype of the crops; default the images' dtype, float32 for uint8 images. The
            arithmetic runs in at least float32.
        scale_uint8: divide uint8 images by 255, so the crops lie in :math:`[0, 1]` as after
            ``torchvision.transforms.ToTensor``; ``False`` keeps the 0-255 range. Ignored for floats.
        mask: ``(B, K)`` bool, ``True`` = region present: the crops of absent regions are all zeros and
            their boxes are not checked (any values, e.g. the zero boxes of
            :func:`~region_attention.functional.landmark_boxes`).
        outside: a box entirely outside the image gives an all-zero crop with ``"zero"`` (default); with
            ``"error"`` it raises, unless masked. Reads the boxes' values, like ``check_boxes``.
        check_boxes: raise on boxes with ``x2 <= x1``, ``y2 <= y1`` or non-finite values (and, with
            ``outside="error"``, boxes entirely outside the image). Reading the values of a tensor on an
            accelerator synchronises with the host; pass ``False`` on a hot path. Skipped under
            ``torch.compile``. Boxes of Python numbers are always checked.

    Shapes:
        - images: :math:`(B, C, H, W)`
        - boxes: :math:`(B, K, 4)` or :math:`(K, 4)`
        - mask: :math:`(B, K)`
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
    check_choice(outside, "outside", OUTSIDE_POLICIES, owner)
    bsz, _, height, width = images.shape
    bounds = (height, width) if outside == "error" else None
    if isinstance(boxes, Tensor):
        shaped: Tensor | tuple[Box, ...] = check_box_tensor(boxes, bsz, images.device, owner)
        num_boxes = boxes.shape[-2]
    else:
        shaped = check_box_list(boxes, owner)  # Python numbers: checked here, no sync
        num_boxes = len(shaped)
    if mask is not None:
        mask = check_box_mask(mask, bsz, num_boxes, images.device, owner)
    if isinstance(shaped, Tensor) or bounds is not None:
        values = shaped if isinstance(shaped, Tensor) else torch.tensor(shaped, dtype=torch.float64)
        check_boxes_flag(check_boxes, values, owner, mask, bounds)
    if bsz == 0:  # an empty batch gives an empty batch of crops, as nn.Linear does
        return images.new_empty((0, num_boxes, images.shape[1], *size), dtype=out_dtype)
    return _crop(images, shaped, size, bool(antialias), out_dtype, bool(scale_uint8), mask)
