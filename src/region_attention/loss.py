"""The region biased loss module (paper Eq. 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from . import functional as RF
from ._validation import (
    check_floating,
    check_loss_settings,
    check_number,
    check_same_batch,
    check_tensor,
    check_whole_index,
    shape_str,
)

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

    __call__: Callable[..., Tensor]  # so module(x) types as forward's output

    def __init__(self, margin: float = 0.02, *, whole_index: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        check_loss_settings(margin, whole_index, reduction, type(self).__name__)
        self.margin = float(margin)
        self.whole_index = whole_index
        self.reduction = reduction

    @override
    def forward(self, gates: Tensor, mask: Tensor | None = None) -> Tensor:
        """The loss of self-attention ``gates`` ``(B, K)``; ``mask`` ``(B, K)`` bool, True = present."""
        return RF.region_biased_loss(
            gates, mask, margin=self.margin, whole_index=self.whole_index, reduction=self.reduction
        )

    @override
    def extra_repr(self) -> str:
        return f"margin={self.margin}, whole_index={self.whole_index}, reduction={self.reduction!r}"


class RANLossOutput(NamedTuple):
    """What :class:`RegionAttentionLoss` returns: the total and its two parts (all scalars)."""

    total: Tensor
    classification: Tensor
    region_biased: Tensor


#: ``F.cross_entropy``'s default ``ignore_index``: a target of this value is skipped, not an error.
_IGNORE_INDEX = -100


class RegionAttentionLoss(nn.Module):
    r"""The paper's training objective: cross-entropy plus the region biased loss on the self-attention gates.

    .. math::
        \mathcal{L} = \mathcal{L}_{CE}(\text{logits}, y) + \lambda\, \mathcal{L}_{RB}(\mu)

    with :math:`\lambda = 1` by default (the paper's 1:1 weighting). :meth:`forward` reads ``output.logits``,
    ``output.self_attention.gates`` and ``output.regions.mask`` of a
    :class:`~region_attention.RegionAttentionNetwork` output, so masked (missing) regions never count as the
    best crop, and the whole face is the region ``output.regions.whole_index`` says (the cropper's: 0 for the
    paper's order, -1 for the authors'). A ``whole_index`` given to this loss must agree with the output's
    (a :class:`ValueError` names both otherwise); it is needed only for outputs that do not say, such as
    regions you built yourself.

    :meth:`from_parts` takes the pieces instead, and the whole face's index explicitly (or this loss's
    ``whole_index``); with ``gates=None`` (a network without self-attention, such as the paper's whole-face
    baseline) the region biased part is 0 and only the classification loss trains.

    Args:
        margin: margin :math:`\alpha` of the region biased loss (paper: 0.02; authors' FERPlus code: 0.1).
        rb_weight: :math:`\lambda`; 0 trains without the region biased loss.
        whole_index: index of the whole face among the regions (0: paper; -1: authors' order), or ``None``
            (default) to read it from the network's output. Regions without a whole face have none, and the
            region biased loss is then undefined: use ``rb_weight=0``.
        class_weight: optional per-class weights ``(C,)`` for the cross-entropy (e.g. inverse class frequency).
        label_smoothing: in :math:`[0, 1]`, as in :func:`torch.nn.functional.cross_entropy`.
        classification: optional ``(logits, target) -> scalar`` used instead of the cross-entropy (soft-label
            or multi-target losses, for example); it receives the logits in float32 (or wider) and the target
            as given, and only the batch sizes are checked. Cannot be combined with ``class_weight`` or
            ``label_smoothing`` (put them into the callable).

    Shapes:
        - logits: :math:`(B, C)`, real floating point
        - target: :math:`(B,)` integer class indices in :math:`[0, C)`, or :math:`(B, C)` class probabilities
          (label distributions, as in FERPlus' "crossentropy" mode); anything with a ``classification``
          callable, as long as it has :math:`B` rows
        - gates, mask: :math:`(B, K)`
        - output: :class:`RANLossOutput` of three scalars

    Targets are checked before the cross-entropy: floating-point class indices, a :math:`(B, 1)` target, a
    batch-size mismatch (also of the gates and the mask) and (for targets on the CPU, where it costs no device
    synchronisation) class indices outside :math:`[0, C)` raise ValueError/TypeError saying what to pass
    instead; ``-100`` is skipped, as ``F.cross_entropy``'s ``ignore_index``.

    Example:
        >>> import torch
        >>> from region_attention import RegionAttentionLoss
        >>> criterion = RegionAttentionLoss(margin=0.02)
        >>> logits = torch.randn(4, 8)
        >>> gates = torch.rand(4, 6)
        >>> out = criterion.from_parts(logits, torch.tensor([0, 1, 2, 3]), gates, whole_index=0)
        >>> torch.allclose(out.total, out.classification + out.region_biased)
        True
        >>> baseline = criterion.from_parts(logits, torch.tensor([0, 1, 2, 3]))  # no gates: rb = 0
        >>> baseline.region_biased
        tensor(0.)
    """

    __call__: Callable[..., RANLossOutput]  # so module(x) types as forward's output

    def __init__(
        self,
        margin: float = 0.02,
        *,
        rb_weight: float = 1.0,
        whole_index: int | None = None,
        class_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
        classification: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_loss_settings(margin, 0 if whole_index is None else whole_index, "mean", owner)
        self.margin = float(margin)
        self.whole_index = whole_index
        self.rb_weight = check_number(rb_weight, "rb_weight", owner)
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", owner, high=1.0)
        if classification is not None and not callable(classification):
            raise TypeError(
                f"{owner} expected classification to be a callable (logits, target) -> scalar, "
                f"got {type(classification).__name__}"
            )
        if classification is not None and (class_weight is not None or label_smoothing != 0.0):
            raise ValueError(
                f"{owner} got classification= together with class_weight or label_smoothing, expected one of "
                "them: the callable replaces the cross-entropy, so apply weights or smoothing inside it"
            )
        if class_weight is not None:
            class_weight = check_tensor(class_weight, "class_weight", owner)
            check_floating(class_weight, "class_weight", owner)
            if class_weight.dim() != 1:
                raise ValueError(f"{owner} expected class_weight of shape (C,), got {shape_str(class_weight.shape)}")
        self.classification = classification
        self.class_weight: Tensor | None
        self.register_buffer("class_weight", None if class_weight is None else class_weight.detach().clone())

    def classification_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The classification part alone: the ``classification`` callable, or the (weighted) cross-entropy."""
        owner = type(self).__name__
        logits = check_tensor(logits, "logits", owner)
        target = check_tensor(target, "target", owner)
        if logits.dim() != 2:
            raise ValueError(f"{owner} expected logits of shape (B, C), got {shape_str(logits.shape)}")
        if logits.is_complex() or not logits.is_floating_point():
            raise TypeError(f"{owner} expected logits with a real floating point dtype, got {logits.dtype}")
        check_same_batch(target, "target", logits.shape[0], f"logits {shape_str(logits.shape)}", owner)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.classification is not None:
            return self.classification(logits, target)
        self._check_ce_target(logits, target)
        weight = self.class_weight
        if weight is not None and weight.shape[0] != logits.shape[1]:
            raise ValueError(
                f"{owner} expected class_weight with one weight per class, C = {logits.shape[1]} like logits "
                f"{shape_str(logits.shape)}, got class_weight of shape {shape_str(weight.shape)}"
            )
        return F.cross_entropy(
            logits,
            target if not target.is_floating_point() else target.to(logits.dtype),
            weight=None if weight is None else weight.to(logits.dtype),
            label_smoothing=self.label_smoothing,
        )

    def _check_ce_target(self, logits: Tensor, target: Tensor) -> None:
        owner = type(self).__name__
        num_classes = logits.shape[1]
        if target.dim() == 2 and target.shape[1] == 1 and num_classes != 1:
            raise ValueError(
                f"{owner} expected class indices of shape (B,) or probabilities of shape (B, {num_classes}), "
                f"got {shape_str(target.shape)}; pass target.squeeze(1)"
            )
        if target.is_floating_point():
            if target.dim() != 2 or target.shape[1] != num_classes:
                raise TypeError(
                    f"{owner} expected integer class indices of shape (B,) (or float probabilities of shape "
                    f"(B, {num_classes})), got floating-point target of shape {shape_str(target.shape)}; "
                    "pass target.long()"
                )
            return
        if target.dtype == torch.bool or target.dim() != 1:
            raise ValueError(
                f"{owner} expected integer class indices of shape (B,), got {target.dtype} of shape "
                f"{shape_str(target.shape)}"
            )
        if target.device.type == "cpu" and target.numel() and not torch.compiler.is_compiling():
            bad = ((target < 0) | (target >= num_classes)) & (target != _IGNORE_INDEX)
            if bool(bad.any()):
                raise ValueError(
                    f"{owner} expected class indices in [0, {num_classes - 1}] for {num_classes} classes, got "
                    f"{int(target[bad][0])}; check the label mapping (or the classifier's num_classes)"
                )

    def from_parts(
        self,
        logits: Tensor,
        target: Tensor,
        gates: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        whole_index: int | None = None,
    ) -> RANLossOutput:
        """The loss from logits, targets, self-attention gates (None: no region biased part) and the mask.

        ``whole_index`` is the whole face's index among the gates' regions; default this loss's
        ``whole_index``. One of the two is needed when the region biased part is computed.
        """
        owner = f"{type(self).__name__}.from_parts"
        ce = self.classification_loss(logits, target)
        if self.rb_weight == 0 or gates is None:
            return RANLossOutput(ce, ce, torch.zeros((), dtype=ce.dtype, device=ce.device))
        index = check_whole_index(whole_index, owner, optional=True)
        index = self.whole_index if index is None else index
        if index is None:
            raise ValueError(
                f"{owner} expected whole_index (the whole face's index among the regions) for the region biased "
                "loss, got None here and in the loss; pass whole_index=..., call the loss on the network's "
                "output, which carries it, or use rb_weight=0"
            )
        gates = check_tensor(gates, "gates", owner)
        check_same_batch(gates, "gates", logits.shape[0], f"logits {shape_str(logits.shape)}", owner)
        rb = RF.region_biased_loss(gates, mask, margin=self.margin, whole_index=index).to(ce.dtype)
        return RANLossOutput(ce + self.rb_weight * rb, ce, rb)

    @override
    def forward(self, output: Any, target: Tensor) -> RANLossOutput:
        """The loss of a network's :class:`~region_attention.RANOutput` against ``target``; the whole face is
        the one ``output.regions.whole_index`` names."""
        owner = type(self).__name__
        if isinstance(output, Tensor):
            raise TypeError(
                f"{owner} expected the network's output (with .logits, .self_attention and .regions), got a "
                f"Tensor of shape {shape_str(output.shape)}; pass the whole output of RegionAttentionNetwork, or "
                "call from_parts(logits, target, gates, mask) for separate pieces"
            )
        missing = [name for name in ("logits", "self_attention", "regions") if not hasattr(output, name)]
        if missing:
            raise TypeError(
                f"{owner} expected a RegionAttentionNetwork output, got {type(output).__name__} without "
                f"{', '.join(missing)}; for a network without self-attention use from_parts(logits, target)"
            )
        gates, regions = output.self_attention.gates, output.regions
        index = getattr(regions, "whole_index", None)
        if index is not None and self.whole_index is not None and isinstance(gates, Tensor) and gates.dim() == 2:
            k = gates.shape[1]
            if -k <= self.whole_index < k and self.whole_index % k != index % k:
                raise ValueError(
                    f"{owner} was given whole_index={self.whole_index}, but the output's regions have the whole "
                    f"face at whole_index={index} (of K = {k}); leave whole_index out to use the output's"
                )
        index = self.whole_index if index is None else index
        return self.from_parts(output.logits, target, gates, regions.mask, whole_index=index)

    @override
    def extra_repr(self) -> str:
        text = f"margin={self.margin}, rb_weight={self.rb_weight}, whole_index={self.whole_index}"
        text += f", label_smoothing={self.label_smoothing}"
        if self.classification is not None:
            name = getattr(self.classification, "__name__", type(self.classification).__name__)
            text += f", classification={name}"
        return text
