"""The region biased loss module (paper Eq. 6)."""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as RF
from .functional.loss import check_loss_settings

__all__ = ["RegionBiasedLoss"]


class RegionBiasedLoss(nn.Module):
    r"""Region biased loss (Wang et al., TIP 2020, Eq. 6).

    .. math::
        \mathcal{L}_{RB} = \max\{0,\ \alpha - (\mu_{max} - \mu_0)\}

    Asks that the best crop's self-attention gate beat the whole face's gate :math:`\mu_0` by the margin
    :math:`\alpha`. Holds settings only; the math is :func:`~region_attention.functional.region_biased_loss`.

    Args:
        margin: :math:`\alpha \ge 0` (paper: 0.02; authors' FERPlus code: 0.1).
        whole_index: index of the whole face among the regions (0 in the paper, -1 in the authors' code).
        reduction: ``"mean"`` over the batch (default), ``"sum"`` or ``"none"``.

    Shapes:
        - gates, mask: :math:`(B, K)`, ``K >= 2``; mask is bool with ``True`` = present
        - output: scalar, or :math:`(B,)` with ``reduction="none"``

    Example:
        >>> import torch
        >>> from region_attention import RegionBiasedLoss
        >>> RegionBiasedLoss()
        RegionBiasedLoss(margin=0.02, whole_index=0, reduction='mean')
        >>> RegionBiasedLoss(margin=0.1)(torch.tensor([[0.5, 0.45, 0.52]]))
        tensor(0.0800)
    """

    def __init__(self, margin: float = 0.02, *, whole_index: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        check_loss_settings(margin, whole_index, reduction, type(self).__name__)
        self.margin = float(margin)
        self.whole_index = whole_index
        self.reduction = reduction

    def forward(self, gates: Tensor, mask: Tensor | None = None) -> Tensor:
        return RF.region_biased_loss(
            gates, mask, margin=self.margin, whole_index=self.whole_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, whole_index={self.whole_index}, reduction={self.reduction!r}"
