"""The region biased loss module (paper Eq. 6)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional as RF
from .functional.loss import check_loss_settings

__all__ = ["RANLossOutput", "RegionAttentionLoss", "RegionBiasedLoss"]


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
        """The loss of self-attention ``gates`` ``(B, K)``; ``mask`` ``(B, K)`` bool, True = present."""
        return RF.region_biased_loss(
            gates, mask, margin=self.margin, whole_index=self.whole_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, whole_index={self.whole_index}, reduction={self.reduction!r}"


class RANLossOutput(NamedTuple):
    """What :class:`RegionAttentionLoss` returns: the total and its two parts (all scalars)."""

    total: Tensor
    classification: Tensor
    region_biased: Tensor


class RegionAttentionLoss(nn.Module):
    r"""The paper's training objective: cross-entropy plus the region biased loss on the self-attention gates.

    .. math::
        \mathcal{L} = \mathcal{L}_{CE}(\text{logits}, y) + \lambda\, \mathcal{L}_{RB}(\mu)

    with :math:`\lambda = 1` by default (the paper's 1:1 weighting). The region biased loss reads
    ``output.self_attention.gates`` and ``output.regions.mask`` of a
    :class:`~region_attention.RegionAttentionNetwork` output, and the whole-face index of the network's
    cropper, so masked (missing) regions never count as the best crop.

    Args:
        margin: margin :math:`\alpha` of the region biased loss (paper: 0.02; authors' FERPlus code: 0.1).
        rb_weight: :math:`\lambda`; 0 trains without the region biased loss.
        whole_index: index of the whole face among the regions (0: paper; -1: authors' order). Pass the
            network's ``whole_index``.
        class_weight: optional per-class weights for the cross-entropy (e.g. inverse class frequency).
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.

    Shapes:
        - target: :math:`(B,)` class indices, or :math:`(B, C)` class probabilities (label distributions,
          as in FERPlus' "crossentropy" mode)

    Example:
        >>> import torch
        >>> from region_attention import RegionAttentionLoss
        >>> criterion = RegionAttentionLoss(margin=0.02)
        >>> logits = torch.randn(4, 8)
        >>> gates = torch.rand(4, 6)
        >>> out = criterion.from_parts(logits, torch.tensor([0, 1, 2, 3]), gates)
        >>> torch.allclose(out.total, out.classification + out.region_biased)
        True
    """

    def __init__(
        self,
        margin: float = 0.02,
        *,
        rb_weight: float = 1.0,
        whole_index: int = 0,
        class_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_loss_settings(margin, whole_index, "mean", owner)
        if isinstance(rb_weight, bool) or not isinstance(rb_weight, (int, float)) or not rb_weight >= 0:
            raise ValueError(f"{owner} expected rb_weight >= 0, got {rb_weight!r}")
        self.region_biased = RegionBiasedLoss(margin, whole_index=whole_index)
        self.rb_weight = float(rb_weight)
        self.label_smoothing = float(label_smoothing)
        self.class_weight: Tensor | None
        self.register_buffer("class_weight", None if class_weight is None else class_weight.detach().clone())

    def from_parts(self, logits: Tensor, target: Tensor, gates: Tensor, mask: Tensor | None = None) -> RANLossOutput:
        """The loss from logits, targets, self-attention gates and the optional region mask."""
        ce = F.cross_entropy(
            logits.float(), target if not target.is_floating_point() else target.float(),
            weight=self.class_weight, label_smoothing=self.label_smoothing,
        )
        if self.rb_weight == 0:
            rb = torch.zeros((), dtype=ce.dtype, device=ce.device)
        else:
            rb = self.region_biased(gates, mask).to(ce.dtype)
        return RANLossOutput(ce + self.rb_weight * rb, ce, rb)

    def forward(self, output: Any, target: Tensor) -> RANLossOutput:
        """The loss of a :class:`~region_attention.RegionAttentionNetwork` output against ``target``."""
        return self.from_parts(output.logits, target, output.self_attention.gates, output.regions.mask)

    def extra_repr(self) -> str:
        return f"rb_weight={self.rb_weight}, label_smoothing={self.label_smoothing}"
