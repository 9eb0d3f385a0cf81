r"""RoIAlign of image-space boxes on a feature map, in pure PyTorch: the regions of the one-pass model.

:func:`~region_attention.functional.region_align` pools every box of a ``(B, K, 4)`` box tensor from its
image's feature map into a fixed ``oh x ow`` grid of features, with the rules of
``torchvision.ops.roi_align(..., aligned=True)`` for a fixed ``sampling_ratio`` (the same values and
gradients), separate scales for the two axes, and no torchvision dependency.

Convention:
    Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the *input image*, pixel ``i``
    covering :math:`[i, i + 1)` (the :class:`~region_attention.RegionCrops` convention). A feature map of
    ``h x w`` cells for an ``H x W`` image puts feature cell ``i`` over image pixels
    :math:`[i H / h, (i + 1) H / h)`, so a box coordinate :math:`y` becomes :math:`y\, h / H - \tfrac12` in
    cell-centre coordinates (``aligned=True``), and likewise :math:`x\, w / W - \tfrac12`.

How it is computed:
    For a fixed sampling grid the RoIAlign rules of the two axes are independent, so the op is separable:
    per box, a row matrix :math:`W_y` ``(oh, h)`` and a column matrix :math:`W_x` ``(ow, w)`` hold the
    bilinear weights of the ``sampling_ratio`` samples of each output bin, averaged, and the pooled region
    is :math:`W_y F W_x^\top`: two batched matrix products, the first over all boxes of an image at once.
    The contraction order is chosen so the intermediate, ``(B, C, h, K ow)`` or ``(B, C, w, K oh)``, is
    never larger than the pooled output times the sampling grid, ``(B, K, C, oh, ow, s, s)``; when both
    are larger (a big map, a small grid) the samples are gathered directly at that size instead. The
    weights are built from the box values on the device, without synchronising with it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .._validation import (
    check_box_mask,
    check_box_tensor,
    check_boxes_flag,
    check_computable,
    check_floating,
    check_image_size,
    check_output_size,
    check_sampling_ratio,
    check_tensor,
    compute_dtype,
    shape_str,
)

__all__ = ["region_align"]

_OWNER = "region_align"


def _sample_positions(lo: Tensor, hi: Tensor, scale: float, size: int, out: int, grid: int) -> tuple[Tensor, Tensor]:
    """The ``(B, K, out * grid)`` sample positions of one axis in map cells, and whether each is within one cell
    of the map (torchvision's rule: a sample further out contributes zero)."""
    start = lo * scale - 0.5
    bin_size = (hi * scale - 0.5 - start) / out
    bins = torch.arange(out, device=lo.device, dtype=lo.dtype)
    offsets = torch.arange(grid, device=lo.device, dtype=lo.dtype) + 0.5
    # the same arithmetic, in the same order, as torchvision's kernel: start + i * bin + (s + 0.5) * bin / grid
    step = bin_size[..., None, None]
    pos = (start[..., None, None] + bins[:, None] * step + offsets[None, :] * step / grid).flatten(-2)
    return pos, (pos >= -1.0) & (pos <= size)


def _axis_weights(
    lo: Tensor, hi: Tensor, scale: float, size: int, out: int, grid: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sample positions of one axis, with torchvision's border rules.

    ``lo``/``hi`` ``(B, K)`` in image pixels. Returns the lower and upper source index ``(B, K, out * grid)``
    (long), their weights with the out-of-range samples already zeroed (same shape).
    """
    pos, valid = _sample_positions(lo, hi, scale, size, out, grid)
    pos = pos.clamp(min=0.0)
    low = pos.floor()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    pos = torch.where(at_end, low, pos)
    frac = pos - low
    low_index = low.long()
    high_index = torch.where(at_end, low_index, low_index + 1)
    zero = torch.zeros_like(frac)
    w_low = torch.where(valid, 1.0 - frac, zero)
    w_high = torch.where(valid, frac, zero)
    return low_index, high_index, w_low, w_high


def _axis_matrix(lo: Tensor, hi: Tensor, scale: float, size: int, out: int, grid: int) -> Tensor:
    """The ``(B, K, out, size)`` matrix: bilinear weights of each bin's samples, averaged over the grid.

    With torchvision's border rules a sample at ``pos`` (clamped to ``[0, size - 1]``, zero when more than one
    cell outside the map) weighs cell ``c`` by the hat function ``max(0, 1 - |pos - c|)``: ``1 - frac`` on its
    lower cell and ``frac`` on the upper one. Built directly in a few whole-tensor ops (a batch-1 forward of the
    one-pass model is otherwise dominated by the dispatch of many tiny ones).
    """
    pos, valid = _sample_positions(lo, hi, scale, size, out, grid)
    cells = torch.arange(size, device=lo.device, dtype=lo.dtype)
    # clamp to [0, size - 1]; full_like, not clamp(max=size - 1): size may be symbolic in an ONNX export
    clamped = torch.minimum(pos.clamp(min=0.0), torch.full_like(pos, size - 1))
    hat = (1.0 - (clamped[..., None] - cells).abs()).clamp_min(0.0)
    hat = hat * valid[..., None]
    return hat.reshape(*hat.shape[:-2], out, grid, size).sum(-2) / grid


def region_align(
    feature_map: Tensor,
    boxes: Tensor,
    image_size: int | tuple[int, int],
    output_size: int | tuple[int, int] = 7,
    sampling_ratio: int = 2,
    *,
    mask: Tensor | None = None,
    check_boxes: bool = True,
) -> Tensor:
    r"""Pool each image-space box from its image's feature map into ``oh x ow`` cells (RoIAlign, ``aligned=True``).

    Every output cell is the average of a ``sampling_ratio x sampling_ratio`` grid of bilinear samples of the
    feature map inside its bin of the box, with torchvision's rules: a sample more than one cell outside the
    map contributes 0 (and still counts in the average); a sample up to one cell outside reads the border.

    .. math::
        \text{out}_{b,k,c,i,j} = \frac{1}{s^2} \sum_{p, q < s}
            \operatorname{bilinear}\big(F_{b,c},\ y_{b,k,i,p},\ x_{b,k,j,q}\big), \quad
        y_{b,k,i,p} = y'_1 + \big(i + \tfrac{p + 1/2}{s}\big) \frac{y'_2 - y'_1}{oh},\quad
        y' = y \tfrac{h}{H} - \tfrac12

    and likewise for :math:`x` with :math:`w / W`. For a square map of a square image this is
    ``torchvision.ops.roi_align(feature_map, list(boxes), output_size, spatial_scale=h / H,
    sampling_ratio=sampling_ratio, aligned=True)``, values and gradients; non-square maps get their own
    scale per axis, which torchvision's single ``spatial_scale`` cannot express.

    Args:
        feature_map: the backbone's feature map of the images.
        boxes: ``(x1, y1, x2, y2)`` per image and region in input-image pixels (e.g.
            :attr:`RegionCrops.boxes <region_attention.RegionCrops.boxes>`). They are constants of the op
            (no gradient flows to them, as in torchvision).
        image_size: ``(H, W)`` of the images the boxes refer to (an ``int`` for square images).
        output_size: ``(oh, ow)`` cells per region, or an ``int`` for square regions.
        sampling_ratio: samples per bin along each axis, ``>= 1``. torchvision's adaptive grid
            (``<= 0``: ``ceil(box size / output size)`` samples, different per box) is refused with a
            :class:`ValueError`: it needs data-dependent shapes and a device synchronisation.
        mask: ``(B, K)`` bool, ``True`` = region present: the boxes of absent regions are not checked (any
            values, e.g. the zero boxes of :func:`~region_attention.functional.landmark_boxes`).
        check_boxes: raise on boxes with ``x2 <= x1``, ``y2 <= y1`` or non-finite values, exactly as
            :func:`~region_attention.functional.crop_regions` does. Reading the values of a tensor on an
            accelerator synchronises with the host; pass ``False`` on a hot path. Skipped under
            ``torch.compile``.

    Returns:
        The pooled regions ``(B, K, C, oh, ow)`` in the feature map's dtype, computed in
        ``torch.promote_types(dtype, torch.float32)`` (also under autocast).

    Shapes:
        - feature_map: :math:`(B, C, h, w)`, floating
        - boxes: :math:`(B, K, 4)`, on the feature map's device
        - output: :math:`(B, K, C, oh, ow)`

    Memory:
        No intermediate is larger than :math:`B K C \cdot oh \cdot ow \cdot s^2`, the pooled output times
        the sampling grid (besides a copy of the input in the compute dtype).

    Example:
        >>> import torch
        >>> from region_attention.functional import region_align
        >>> fmap = torch.arange(16.0).reshape(1, 1, 4, 4)   # 4 x 4 map of a 64 px image
        >>> boxes = torch.tensor([[[0.0, 0.0, 32.0, 32.0]]])   # top-left quarter
        >>> region_align(fmap, boxes, image_size=64, output_size=2, sampling_ratio=1)
        tensor([[[[[0., 1.],
                   [4., 5.]]]]])
    """
    feature_map = check_tensor(feature_map, "feature_map", _OWNER)
    if feature_map.dim() != 4:
        raise ValueError(
            f"{_OWNER} expected feature_map of shape (B, C, h, w), got {feature_map.dim()}-D shape "
            f"{shape_str(feature_map.shape)}"
        )
    check_floating(feature_map, "feature_map", _OWNER)
    check_computable(feature_map, "feature_map", _OWNER)
    bsz = feature_map.shape[0]
    boxes = check_box_tensor(boxes, bsz, feature_map.device, _OWNER, shared=False, like="the feature map")
    if mask is not None:
        mask = check_box_mask(mask, bsz, boxes.shape[1], feature_map.device, _OWNER)
    height, width = check_image_size(image_size, _OWNER, square=True)
    oh, ow = check_output_size(output_size, _OWNER)
    grid = check_sampling_ratio(sampling_ratio, _OWNER)
    check_boxes_flag(check_boxes, boxes, _OWNER, mask)

    context: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if torch.is_autocast_enabled(feature_map.device.type):
        # autocast would run the contractions in half precision; RoIAlign is exact in float32 (as torchvision)
        context = torch.autocast(feature_map.device.type, enabled=False)
    with context:
        return _region_align(feature_map, boxes, (height, width), (oh, ow), grid, mask)


def _region_align(
    feature_map: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    grid: int,
    mask: Tensor | None,
) -> Tensor:
    bsz, channels, h, w = feature_map.shape
    k = boxes.shape[1]
    oh, ow = output_size
    work = compute_dtype(feature_map.dtype)
    fmap = feature_map.to(work)
    b = boxes.detach().to(work)
    if mask is not None:  # absent regions pool a valid dummy box (the first map cell): no NaN from their values
        b = torch.where(mask.unsqueeze(-1), b, b.new_tensor([0.0, 0.0, 1.0, 1.0]))
    bound = oh * ow * grid * grid  # per (b, k, c): the pooled output times the sampling grid
    if min(oh * w, h * ow) <= bound:
        # Two batched matrix products. The first contracts one axis of the map for all K boxes at once (one GEMM
        # per image, no copy of the map per box); the second contracts the other axis box by box. The axis that
        # leaves the smaller intermediate goes first: (B, C, h, K * ow) or (B, C, w, K * oh).
        wy = _axis_matrix(b[..., 1], b[..., 3], h / image_size[0], h, oh, grid)  # (B, K, oh, h)
        wx = _axis_matrix(b[..., 0], b[..., 2], w / image_size[1], w, ow, grid)  # (B, K, ow, w)
        if h * ow <= oh * w:
            cols = fmap.reshape(bsz, channels * h, w) @ wx.reshape(bsz, k * ow, w).transpose(1, 2)
            cols = cols.reshape(bsz, channels, h, k, ow).permute(0, 3, 2, 1, 4).reshape(bsz * k, h, channels * ow)
            out = wy.reshape(bsz * k, oh, h) @ cols  # (B * K, oh, C * ow)
            out = out.reshape(bsz, k, oh, channels, ow).permute(0, 1, 3, 2, 4)
        else:
            rows = fmap.transpose(2, 3).reshape(bsz, channels * w, h) @ wy.reshape(bsz, k * oh, h).transpose(1, 2)
            rows = rows.reshape(bsz, channels, w, k, oh).permute(0, 3, 2, 1, 4).reshape(bsz * k, w, channels * oh)
            out = wx.reshape(bsz * k, ow, w) @ rows  # (B * K, ow, C * oh)
            out = out.reshape(bsz, k, ow, channels, oh).permute(0, 1, 3, 4, 2)
        return out.contiguous().to(feature_map.dtype)

    # Gather the samples themselves: four taps of (B, C, K * oh*s * ow*s) each, the bound exactly.
    y_low, y_high, wy_low, wy_high = _axis_weights(b[..., 1], b[..., 3], h / image_size[0], h, oh, grid)
    x_low, x_high, wx_low, wx_high = _axis_weights(b[..., 0], b[..., 2], w / image_size[1], w, ow, grid)
    flat = fmap.flatten(2)  # (B, C, h * w)
    total = flat.new_zeros(())
    for yi, wy_ in ((y_low, wy_low), (y_high, wy_high)):
        for xi, wx_ in ((x_low, wx_low), (x_high, wx_high)):
            index = (yi[..., :, None] * w + xi[..., None, :]).reshape(bsz, 1, -1)  # (B, 1, K * S)
            weight = (wy_[..., :, None] * wx_[..., None, :]).reshape(bsz, 1, -1)
            tap = flat.gather(2, index.expand(bsz, channels, index.shape[-1])) * weight
            total = total + tap
    samples = total.reshape(bsz, channels, k, oh, grid, ow, grid)
    out = samples.sum(dim=(4, 6)) / (grid * grid)  # (B, C, K, oh, ow)
    return out.transpose(1, 2).to(feature_map.dtype)
