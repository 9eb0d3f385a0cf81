"""The region biased loss (paper Eq. 6) as a pure function."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import REDUCTIONS, check_floating, check_loss_settings, check_mask, check_tensor, shape_str

__all__ = ["REDUCTIONS", "region_biased_loss"]


def region_biased_loss(
    gates: Tensor,
    mask: Tensor | None = None,
    *,
    margin: float = 0.02,
    whole_index: int = 0,
    reduction: str = "mean",
) -> Tensor:
    r"""Region biased loss (Wang et al., TIP 2020, Eq. 6).

    .. math::
        \mathcal{L}_{RB} = \max\{0,\ \alpha - (\mu_{max} - \mu_0)\}

    where :math:`\mu_0` is the gate of the whole face (region ``whole_index``) and :math:`\mu_{max}` the
    largest gate among the present crops. It equals
    ``F.margin_ranking_loss(mu_max, mu_0, torch.ones_like(mu_0), margin=margin)``.

    Args:
        gates: self-attention gates :math:`\mu` (``SelfAttentionOutput.gates``).
        mask: optional bool mask, ``True`` = region present. A row whose whole face is masked, or that
            has no present crop, contributes 0 (and still counts in the batch mean). Masked gates count for
            nothing, whatever they hold (NaN included).
        margin: :math:`\alpha \ge 0`; the paper uses 0.02, the authors' FERPlus code 0.1.
        whole_index: index of the whole face among the regions: 0 in the paper (and in
            ``RegionCropper``), -1 (last) in the authors' code.
        reduction: ``"mean"`` over the batch (default), ``"sum"`` or ``"none"``.

    Shapes:
        - gates, mask: :math:`(B, K)` with :math:`K \ge 2`
        - output: scalar, or :math:`(B,)` for ``reduction="none"``; dtype of ``gates``

    Example:
        >>> import torch
        >>> from region_attention.functional import region_biased_loss
        >>> gates = torch.tensor([[0.50, 0.60, 0.40], [0.50, 0.51, 0.30]])
        >>> region_biased_loss(gates, margin=0.02, reduction="none")
        tensor([0.0000, 0.0100])
    """
    owner = "region_biased_loss"
    gates = check_tensor(gates, "gates", owner)
    if gates.dim() != 2:
        raise ValueError(f"{owner} expected gates of shape (B, K), got {gates.dim()}-D shape {shape_str(gates.shape)}")
    check_floating(gates, "gates", owner)
    check_loss_settings(margin, whole_index, reduction, owner)
    k = gates.shape[1]
    if k < 2:
        raise ValueError(
            f"{owner} expected gates with the whole face and at least one crop (K >= 2), got {shape_str(gates.shape)}"
        )
    if not -k <= whole_index < k:
        raise ValueError(f"{owner} expected whole_index in [{-k}, {k - 1}] for K = {k}, got {whole_index}")
    mask = check_mask(mask, gates, owner)
    whole = whole_index % k
    if mask is not None:  # masked gates count for nothing, whatever they hold: not even a NaN gradient
        gates = torch.where(mask, gates, torch.zeros_like(gates))

    is_crop = torch.arange(k, device=gates.device) != whole
    crops = is_crop.unsqueeze(0) if mask is None else mask & is_crop
    valid = crops.any(dim=1)
    if mask is not None:
        valid = valid & mask[:, whole]
    neg_inf = torch.full((), float("-inf"), dtype=gates.dtype, device=gates.device)
    best_crop = torch.where(crops, gates, neg_inf).amax(dim=1)
    best_crop = torch.where(valid, best_crop, torch.zeros_like(best_crop))
    per_row = torch.clamp_min(margin - (best_crop - gates[:, whole]), 0.0)
    per_row = torch.where(valid, per_row, torch.zeros_like(per_row))
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row
