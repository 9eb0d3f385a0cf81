r"""The attention math of RAN (paper Eq. 2-5) as pure functions of tensors.

Numerics: the paper's normalised weights :math:`\mu_i / \sum_j \mu_j` with
:math:`\mu_i = \sigma(s_i)` equal :math:`\operatorname{softmax}_i(\log\sigma(s_i))` exactly, and the relation
weights :math:`\mu_i\nu_i / \sum_j \mu_j\nu_j` equal :math:`\operatorname{softmax}_i(\log\mu_i + \log\nu_i)`.
Both are computed that way, in at least float32 (float64 stays float64), with masked regions at
:math:`-\infty` and rows without any present region set to zero. Half-precision inputs therefore never
produce NaN or inf, where the naive "sigmoid, then divide by the sum" form underflows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    check_choice,
    check_floating,
    check_mask,
    check_region_features,
    check_same_device,
    check_tensor,
    compute_dtype,
    shape_str,
)

__all__ = [
    "VARIANTS",
    "RelationAttentionOutput",
    "SelfAttentionOutput",
    "relation_attention_pool",
    "self_attention_pool",
]

#: The two formulations of the attention weights: the paper's equations and the authors' released code.
VARIANTS = ("paper", "authors")


class SelfAttentionOutput(NamedTuple):
    """What :func:`~region_attention.functional.self_attention_pool` and
    :class:`~region_attention.SelfAttentionPool` return.

    Attributes:
        pooled: :math:`F_m`, shape ``(B, D)``, dtype of ``x`` (Eq. 3).
        weights: normalised weights :math:`\\mu_i / \\sum_j \\mu_j` over present regions, ``(B, K)``,
            zero where masked; dtype at least float32.
        gates: :math:`\\mu_i`, ``(B, K)``, zero where masked; the sigmoid outputs (Eq. 2) for
            ``variant="paper"``, their softmax over present regions for ``variant="authors"``.
    """

    pooled: Tensor
    weights: Tensor
    gates: Tensor


class RelationAttentionOutput(NamedTuple):
    """What :func:`~region_attention.functional.relation_attention_pool` and
    :class:`~region_attention.RelationAttentionPool` return.

    Attributes:
        pooled: :math:`P_{RAN}`, shape ``(B, 2D)``, dtype of ``x`` (Eq. 5).
        weights: :math:`\\mu_i\\nu_i / \\sum_j \\mu_j\\nu_j` over present regions, ``(B, K)``, zero where masked.
        gates: :math:`\\nu_i`, ``(B, K)``, zero where masked; sigmoid outputs (Eq. 4) for ``"paper"``,
            their softmax over present regions for ``"authors"``.
    """

    pooled: Tensor
    weights: Tensor
    gates: Tensor


def _query_vector(
    weight: object, bias: object, x: Tensor, in_features: int, name: str, owner: str
) -> tuple[Tensor, Tensor | None]:
    """Accept a ``nn.Linear(in_features, 1)`` weight ``(1, in)`` or a plain ``(in,)`` vector, on ``x``'s device.

    ``in_features`` is what ``x`` implies (``D``, or ``2 D`` for the relation query); a mismatch is reported
    as an ``x`` of the wrong size, the usual mistake.
    """
    weight = check_tensor(weight, name, owner)
    check_floating(weight, name, owner)
    given = weight.shape
    if weight.dim() == 2 and weight.shape[0] == 1:
        weight = weight[0]
    if weight.dim() != 1:
        raise ValueError(f"{owner} expected {name} of shape (1, F) or (F,), got {shape_str(given)}")
    if weight.shape[0] != in_features:
        dim = weight.shape[0] * x.shape[-1] // in_features
        raise ValueError(
            f"{owner} expected x of shape (B, K, {dim}) to match {name} {shape_str(given)}, got {shape_str(x.shape)}"
        )
    check_same_device(weight, name, x.device, owner, "x")
    if bias is not None:
        bias = check_tensor(bias, "bias", owner)
        check_floating(bias, "bias", owner)
        if bias.numel() != 1 or bias.dim() > 1:
            raise ValueError(f"{owner} expected bias of shape (1,) or (), got {shape_str(bias.shape)}")
        check_same_device(bias, "bias", x.device, owner, "x")
        bias = bias.reshape(())
    return weight, bias


def _logits(x: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    # An elementwise product and a sum rather than a matmul: autocast leaves these in `dtype`,
    # so fp16 features of magnitude 1e3 cannot overflow the dot product.
    s = (x.to(dtype) * weight.to(dtype)).sum(-1)
    if bias is not None:
        s = s + bias.to(dtype)
    return s


def _masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over dim 1 restricted to ``mask``; masked entries and all-masked rows give exactly 0."""
    if mask is None:
        return torch.softmax(scores, dim=1)
    neg_inf = torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device)
    present = mask.any(dim=1, keepdim=True)
    # An all-masked row would be softmax(-inf, ..., -inf) = NaN; give it finite scores, then zero it.
    scores = torch.where(mask, scores, torch.where(present, neg_inf, torch.zeros_like(scores)))
    return torch.where(mask, torch.softmax(scores, dim=1), torch.zeros_like(scores))


def _zero_masked(values: Tensor, mask: Tensor | None) -> Tensor:
    """``values`` with the masked entries (``mask`` ``(B, K)``) set to 0: a masked region counts for nothing,
    whatever it holds, and gets a zero gradient (``torch.where`` does not multiply, so NaN stays out)."""
    if mask is None:
        return values
    keep = mask if values.dim() == 2 else mask.unsqueeze(-1)
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _pool(x: Tensor, weights: Tensor) -> Tensor:
    return (weights.unsqueeze(-1) * x.to(weights.dtype)).sum(dim=1)


def self_attention_pool(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    variant: str = "paper",
) -> SelfAttentionOutput:
    r"""Self-attention pooling of region features (Wang et al., TIP 2020, Eq. 2-3).

    .. math::
        \mu_i = \sigma(F_i^\top \mathbf{q}^0 + b), \qquad
        F_m = \frac{\sum_i \mu_i F_i}{\sum_i \mu_i}

    With ``variant="authors"`` the gates are :math:`\mu = \operatorname{softmax}_i(\sigma(F_i^\top
    \mathbf{q}^0 + b))` over present regions, as in the authors' released code; :math:`F_m` is then the
    same formula with those gates.

    Args:
        x: region features :math:`F_i`.
        weight: the query :math:`\mathbf{q}^0`, an ``nn.Linear(D, 1)`` weight ``(1, D)`` or a ``(D,)`` vector.
        bias: optional scalar bias ``(1,)`` (the paper has none; the authors' code has one).
        mask: optional bool mask, ``True`` = region present (the opposite polarity of
            ``nn.MultiheadAttention``'s ``key_padding_mask``).
        variant: ``"paper"`` (default) or ``"authors"``.

    Shapes:
        - x: :math:`(B, K, D)`, any floating dtype
        - mask: :math:`(B, K)`, bool
        - output: ``pooled`` :math:`(B, D)` in ``x.dtype``; ``weights`` and ``gates`` :math:`(B, K)` in
          ``torch.promote_types(x.dtype, torch.float32)``

    Rows with no present region give zeros everywhere (with finite gradients). Masked regions count for
    nothing, whatever they hold: a NaN or inf there reaches no output and no gradient.

    Example:
        >>> import torch
        >>> from region_attention.functional import self_attention_pool
        >>> x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
        >>> out = self_attention_pool(x, torch.zeros(1, 8))   # zero query: every gate is 0.5
        >>> out.gates[0]
        tensor([0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000])
        >>> torch.allclose(out.pooled, x.mean(dim=1), atol=1e-6)
        True
    """
    owner = "self_attention_pool"
    x = check_region_features(x, owner)
    mask = check_mask(mask, x, owner)
    check_choice(variant, "variant", VARIANTS, owner)
    q, b = _query_vector(weight, bias, x, x.shape[-1], "weight", owner)
    x = _zero_masked(x, mask)

    ct = compute_dtype(x.dtype)
    s = _logits(x, q, b, ct)
    if variant == "paper":
        gates = _zero_masked(torch.sigmoid(s), mask)
        weights = _masked_softmax(F.logsigmoid(s), mask)
    else:
        # softmax over regions of the sigmoid outputs; sum_i mu_i = 1, so the weights are the gates.
        gates = _masked_softmax(torch.sigmoid(s), mask)
        weights = gates
    pooled = _pool(x, weights).to(x.dtype)
    return SelfAttentionOutput(pooled, weights, gates)


def relation_attention_pool(
    x: Tensor,
    pooled: Tensor,
    gates: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    variant: str = "paper",
) -> RelationAttentionOutput:
    r"""Relation-attention pooling of region features (Wang et al., TIP 2020, Eq. 4-5).

    .. math::
        \nu_i = \sigma([F_i : F_m]^\top \mathbf{q}^1 + b), \qquad
        P_{RAN} = \frac{\sum_i \mu_i \nu_i [F_i : F_m]}{\sum_i \mu_i \nu_i}

    :math:`[\cdot : \cdot]` is concatenation along the feature axis, so :math:`P_{RAN}` has ``2 D``
    features: the relation-weighted region features, then :math:`F_m`. With ``variant="authors"``,
    :math:`\nu` is the softmax over present regions of the sigmoid outputs.

    Args:
        x: region features :math:`F_i`.
        pooled: :math:`F_m` from the self-attention pool.
        gates: :math:`\mu_i` from the self-attention pool (its ``gates``).
        weight: the query :math:`\mathbf{q}^1`, an ``nn.Linear(2 * D, 1)`` weight ``(1, 2D)`` or ``(2D,)``.
        bias: optional scalar bias ``(1,)``.
        mask: optional bool mask, ``True`` = region present.
        variant: ``"paper"`` (default) or ``"authors"``.

    Shapes:
        - x: :math:`(B, K, D)`; pooled: :math:`(B, D)`; gates, mask: :math:`(B, K)`
        - output: ``pooled`` :math:`(B, 2D)` in ``x.dtype``; ``weights`` and ``gates`` :math:`(B, K)` in
          ``torch.promote_types(x.dtype, torch.float32)``

    Gates equal to zero on a present region (a sigmoid that underflowed) are treated as the smallest
    positive float, so the output stays finite.

    Example:
        >>> import torch
        >>> from region_attention.functional import relation_attention_pool, self_attention_pool
        >>> x = torch.randn(2, 6, 8)
        >>> s = self_attention_pool(x, torch.randn(1, 8))
        >>> r = relation_attention_pool(x, s.pooled, s.gates, torch.randn(1, 16))
        >>> r.pooled.shape, r.weights.shape
        (torch.Size([2, 16]), torch.Size([2, 6]))
        >>> torch.allclose(r.pooled[:, 8:], s.pooled)   # the second half is F_m
        True
    """
    owner = "relation_attention_pool"
    x = check_region_features(x, owner)
    mask = check_mask(mask, x, owner)
    check_choice(variant, "variant", VARIANTS, owner)
    bsz, _, dim = x.shape
    pooled = check_tensor(pooled, "pooled", owner)
    if pooled.dim() != 2 or pooled.shape[0] != bsz or pooled.shape[1] != dim:
        raise ValueError(
            f"{owner} expected pooled of shape (B, D) = {shape_str((bsz, dim))} to match x {shape_str(x.shape)}, "
            f"got {shape_str(pooled.shape)}"
        )
    gates = check_tensor(gates, "gates", owner)
    if gates.dim() != 2 or tuple(gates.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"{owner} expected gates of shape (B, K) = {shape_str(x.shape[:2])} to match x {shape_str(x.shape)}, "
            f"got {shape_str(gates.shape)}"
        )
    for name, t in (("pooled", pooled), ("gates", gates)):
        check_floating(t, name, owner)
        if t.device != x.device:
            raise ValueError(f"{owner} expected {name} on {x.device} like x, got {t.device}")
    q, b = _query_vector(weight, bias, x, 2 * dim, "weight", owner)
    x, gates = _zero_masked(x, mask), _zero_masked(gates, mask)

    ct = compute_dtype(torch.promote_types(x.dtype, pooled.dtype))
    # [F_i : F_m] . q1 = F_i . q1[:D] + F_m . q1[D:], without materialising the (B, K, 2D) concatenation.
    r = _logits(x, q[:dim], b, ct) + _logits(pooled.unsqueeze(1), q[dim:], None, ct)
    log_mu = torch.log(gates.to(ct).clamp_min(torch.finfo(ct).tiny))
    if variant == "paper":
        nu = _zero_masked(torch.sigmoid(r), mask)
        log_nu = F.logsigmoid(r)
    else:
        nu = _masked_softmax(torch.sigmoid(r), mask)
        # log softmax(sigmoid(r)) = sigmoid(r) - const; the constant cancels in the normalisation.
        log_nu = torch.sigmoid(r)
    weights = _masked_softmax(log_mu + log_nu, mask)
    # sum_i w_i [F_i : F_m] = [sum_i w_i F_i : F_m * sum_i w_i]; the second factor is 1, or 0 on empty rows.
    pooled_x = _pool(x, weights)
    pooled_m = pooled.to(ct) * weights.sum(dim=1, keepdim=True)
    out = torch.cat([pooled_x, pooled_m], dim=-1).to(x.dtype)
    return RelationAttentionOutput(out, weights, nu)
