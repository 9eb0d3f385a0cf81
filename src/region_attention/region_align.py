"""RegionAlign: the module twin of :func:`~region_attention.functional.region_align` (settings only)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from typing_extensions import override

from ._validation import check_output_size, check_sampling_ratio
from .functional.region_align import region_align

__all__ = ["RegionAlign"]


class RegionAlign(nn.Module):
    r"""Pool image-space boxes from a feature map into ``oh x ow`` cells (RoIAlign with ``aligned=True``).

    Holds ``output_size`` and ``sampling_ratio``; ``forward`` is one call to
    :func:`~region_attention.functional.region_align`, which states the formula, the box convention and how it
    matches ``torchvision.ops.roi_align``. No torchvision needed.

    Args:
        output_size: ``(oh, ow)`` cells per region, or an ``int`` for square regions.
        sampling_ratio: bilinear samples per bin along each axis, ``>= 1`` (the adaptive grid of
            torchvision's ``sampling_ratio <= 0`` is refused: it depends on the box values).

    Shapes:
        - feature_map: :math:`(B, C, h, w)`
        - boxes: :math:`(B, K, 4)` ``(x1, y1, x2, y2)`` in pixels of the ``(H, W)`` input images
        - output: :math:`(B, K, C, oh, ow)`, the feature map's dtype

    Example:
        >>> import torch
        >>> from region_attention import RegionAlign, RegionCropper
        >>> align = RegionAlign(output_size=7, sampling_ratio=2)
        >>> align
        RegionAlign(output_size=(7, 7), sampling_ratio=2)
        >>> images = torch.rand(2, 3, 224, 224)
        >>> boxes = RegionCropper(224).boxes(images).boxes   # (2, 6, 4) pixel boxes
        >>> fmap = torch.rand(2, 256, 14, 14)   # e.g. ResNet-18's layer3 map
        >>> align(fmap, boxes, image_size=(224, 224)).shape
        torch.Size([2, 6, 256, 7, 7])
    """

    __call__: Callable[..., Tensor]  # so module(x) types as forward's output

    def __init__(self, output_size: int | tuple[int, int] = 7, sampling_ratio: int = 2) -> None:
        super().__init__()
        owner = type(self).__name__
        self.output_size = check_output_size(output_size, owner)
        self.sampling_ratio = check_sampling_ratio(sampling_ratio, owner)

    @override
    def forward(
        self,
        feature_map: Tensor,
        boxes: Tensor,
        image_size: int | tuple[int, int],
        *,
        mask: Tensor | None = None,
        check_boxes: bool = True,
    ) -> Tensor:
        """Pool ``boxes`` ``(B, K, 4)`` (pixels of ``image_size`` images) from ``feature_map`` ``(B, C, h, w)``;
        ``mask`` and ``check_boxes`` as for :func:`~region_attention.functional.region_align`."""
        return region_align(
            feature_map, boxes, image_size, self.output_size, self.sampling_ratio, mask=mask, check_boxes=check_boxes
        )

    @override
    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio}"
