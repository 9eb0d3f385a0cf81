r"""Gated attention pooling of a bag of instances (Ilse et al., ICML 2018) as a pure function of tensors.

Numerics: everything runs in at least float32 (float64 stays float64; half-precision features are copied to
float32 once, as the RAN pools do). The scores are normalised with a softmax over the present instances of
each bag, masked instances at :math:`-\infty`, and bags without any present instance set to zero.
Half-precision features of magnitude :math:`10^3` therefore give finite outputs and gradients. Under
autocast the two projections run in the autocast dtype (they are bounded by :math:`\tanh` and
:math:`\sigma`), the pooled sum does not.

Speed and memory: in eager mode the scoring network runs as one fused autograd function that keeps only
:math:`\tanh(\mathbf{V}x)` and :math:`\sigma(\mathbf{U}x)` for backward (autograd would also keep their
product), works through the instances in blocks of bounded size, and on the CPU scores only the present
instances (reading the mask there costs no device synchronisation), so padding ragged bags costs little.
On CUDA, and under ``torch.compile``, ``torch.export``, autocast or ``torch.func``, the plain expression runs
(the compilers fuse it themselves).
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._validation import (
    check_floating,
    check_mask,
    check_region_features,
    check_tensor,
    compute_dtype,
    shape_str,
)
from .pooling import _masked_softmax

__all__ = ["GatedAttentionOutput", "check_dropout", "gated_attention_pool"]


class GatedAttentionOutput(NamedTuple):
    """What :func:`~region_attention.functional.gated_attention_pool` and
    :class:`~region_attention.GatedAttentionPool` return.

    With ``heads = 1`` the head axis is dropped from every field.

    Attributes:
        pooled: :math:`\\sum_k a_k x_k`, shape ``(B, D)`` (``heads = 1``) or ``(B, heads, D)``, dtype of ``x``.
            In training with ``dropout > 0`` it is pooled with the dropped-out weights.
        weights: :math:`a`, the softmax of the scores over the present instances of each bag and head,
            ``(B, K)`` or ``(B, K, heads)``; zero where masked and for bags without any present instance;
            always the weights *before* dropout (on the simplex); dtype at least float32.
        scores: :math:`s`, the raw scores before the softmax, same shape and dtype as ``weights``;
            :math:`-\\infty` where masked (the logit of a zero weight), so no gradient reaches padding.
    """

    pooled: Tensor
    weights: Tensor
    scores: Tensor


def check_dropout(value: object, owner: str) -> float:
    """``dropout`` is a probability in ``[0, 1]``, as for ``nn.Dropout``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner} expected dropout to be a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner} expected dropout in [0, 1], got {value}")
    return float(value)


def _param(value: object, name: str, shape: tuple[int | None, ...], x: Tensor, owner: str) -> Tensor:
    """Check a weight or bias: a floating tensor on ``x``'s device whose shape matches ``shape`` (None = any)."""
    t = check_tensor(value, name, owner)
    check_floating(t, name, owner)
    if t.dim() != len(shape) or any(e is not None and g != e for g, e in zip(t.shape, shape, strict=True)):
        expected = shape_str(["?" if e is None else e for e in shape])  # type: ignore[misc]
        raise ValueError(f"{owner} expected {name} of shape {expected}, got {shape_str(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{owner} expected {name} on {x.device} like x, got {t.device}")
    return t


def gated_attention_pool(
    x: Tensor,
    v_weight: Tensor,
    w_weight: Tensor,
    mask: Tensor | None = None,
    *,
    v_bias: Tensor | None = None,
    u_weight: Tensor | None = None,
    u_bias: Tensor | None = None,
    w_bias: Tensor | None = None,
    dropout: float = 0.0,
    training: bool = False,
) -> GatedAttentionOutput:
    r"""Gated attention pooling of a bag of instances (Ilse et al., ICML 2018, Eq. 9).

    .. math::
        s_k = \mathbf{w}^\top\left(\tanh(\mathbf{V} x_k) \odot \sigma(\mathbf{U} x_k)\right), \qquad
        a_k = \frac{\exp s_k}{\sum_{j \in \text{present}} \exp s_j}, \qquad
        z = \sum_k a_k x_k

    Without ``u_weight`` the gate is dropped: :math:`s_k = \mathbf{w}^\top \tanh(\mathbf{V} x_k)` (Ilse et
    al.'s Eq. 8). Each of the ``heads`` rows of :math:`\mathbf{w}` scores the instances separately and pools
    its own :math:`z`. The projections by :math:`\mathbf{V}` and :math:`\mathbf{U}` run as one matrix
    product with the two weights stacked, and :math:`z` as a batched product of the weights with ``x``: no
    ``(B, K, D)`` temporary is formed.

    Args:
        x: instance features :math:`x_k`, bags padded to ``K`` instances.
        v_weight, v_bias: :math:`\mathbf{V}` and its bias, an ``nn.Linear(D, hidden)`` weight and bias.
        w_weight: :math:`\mathbf{w}`, an ``nn.Linear(hidden, heads)`` weight ``(heads, hidden)``.
        mask: optional bool mask, ``True`` = instance present (the opposite polarity of
            ``nn.MultiheadAttention``'s ``key_padding_mask``).
        u_weight, u_bias: :math:`\mathbf{U}` and its bias (same shapes as ``v_weight`` and ``v_bias``);
            ``u_weight=None`` computes the ungated scores.
        w_bias: optional bias of :math:`\mathbf{w}`, ``(heads,)`` (it shifts every score of a head alike, so
            the weights do not depend on it; it is accepted so that ``nn.Linear`` parameters pass as they are).
        dropout: probability of zeroing an attention weight, applied only when ``training`` is true, after
            the softmax and before pooling (the kept weights are scaled by :math:`1/(1-p)`, as
            ``nn.Dropout`` does); ``weights`` is returned before dropout.
        training: apply ``dropout``.

    Shapes:
        - x: :math:`(B, K, D)`, any floating dtype; mask: :math:`(B, K)`, bool
        - v_weight, u_weight: :math:`(H, D)`; v_bias, u_bias: :math:`(H,)`; w_weight: :math:`(heads, H)`;
          w_bias: :math:`(heads,)`
        - output: ``pooled`` :math:`(B, D)` (``heads = 1``) or :math:`(B, heads, D)` in ``x.dtype``;
          ``weights`` and ``scores`` :math:`(B, K)` or :math:`(B, K, heads)` in
          ``torch.promote_types(x.dtype, torch.float32)``

    Bags with no present instance give a zero ``pooled`` and zero ``weights`` (with finite gradients), and
    ``scores`` of :math:`-\infty`.

    Example:
        >>> import torch
        >>> from region_attention.functional import gated_attention_pool
        >>> x = torch.randn(2, 5, 8)
        >>> v, u, w = torch.randn(4, 8), torch.randn(4, 8), torch.zeros(1, 4)   # w = 0: uniform weights
        >>> mask = torch.tensor([[True, True, True, True, True], [True, True, False, False, False]])
        >>> out = gated_attention_pool(x, v, w, mask, u_weight=u)
        >>> out.weights
        tensor([[0.2000, 0.2000, 0.2000, 0.2000, 0.2000],
                [0.5000, 0.5000, 0.0000, 0.0000, 0.0000]])
        >>> torch.allclose(out.pooled[1], x[1, :2].mean(0))
        True
        >>> out.scores[1]
        tensor([0., 0., -inf, -inf, -inf])
    """
    owner = "gated_attention_pool"
    x = check_region_features(x, owner)
    mask = check_mask(mask, x, owner)
    dim = x.shape[-1]
    v_weight = _param(v_weight, "v_weight", (None, dim), x, owner)
    hidden = v_weight.shape[0]
    w_weight = _param(w_weight, "w_weight", (None, hidden), x, owner)
    heads = w_weight.shape[0]
    if v_bias is not None:
        v_bias = _param(v_bias, "v_bias", (hidden,), x, owner)
    if u_weight is not None:
        u_weight = _param(u_weight, "u_weight", (hidden, dim), x, owner)
    if u_bias is not None:
        if u_weight is None:
            raise ValueError(f"{owner} expected u_bias only with u_weight (a gated pool), got u_weight=None")
        u_bias = _param(u_bias, "u_bias", (hidden,), x, owner)
    if w_bias is not None:
        w_bias = _param(w_bias, "w_bias", (heads,), x, owner)
    dropout = check_dropout(dropout, owner)
    if not isinstance(training, bool):
        raise TypeError(f"{owner} expected training to be a bool, got {type(training).__name__}")

    # Everything runs in at least float32 (float64 stays float64): half-precision features of magnitude 1e3
    # would overflow the gradients of the projections and of the pooled sum in float16. For float32 features
    # x.to(ct) is x itself; half-precision ones are copied once. V and U are stacked so that one matmul reads
    # x once and writes one (., 2H) block.
    ct = torch.promote_types(compute_dtype(x.dtype), v_weight.dtype)
    xc = x.to(ct)
    weight = v_weight if u_weight is None else torch.cat([v_weight, u_weight])
    bias = v_bias
    if u_weight is not None and (v_bias is not None or u_bias is not None):
        bias = torch.cat(
            [
                v_bias if v_bias is not None else v_weight.new_zeros(hidden),
                u_bias if u_bias is not None else v_weight.new_zeros(hidden),
            ]
        )
    params = (weight.to(ct), None if bias is None else bias.to(ct), w_weight.to(ct))
    wb = None if w_bias is None else w_bias.to(ct)
    if _use_fused(x):
        scores = _fused_scores(xc, mask, *params, wb, hidden, u_weight is not None)
    else:
        g = _gate(F.linear(xc, params[0], params[1]), hidden, u_weight is not None)
        scores = F.linear(g, params[2], wb).to(ct)  # (B, K, heads); under autocast F.linear is lower precision

    mask3 = None if mask is None else mask.unsqueeze(-1)
    weights = _masked_softmax(scores, mask3)
    if mask3 is not None:
        scores = torch.where(mask3, scores, torch.full((), float("-inf"), dtype=ct, device=x.device))
    kept = F.dropout(weights, dropout, training=True) if training and dropout > 0 else weights
    # (B, heads, K) @ (B, K, D): a batched product, no (B, K, D) weighted copy of x. Autocast stays off here:
    # its gradient with respect to the weights sums D products of features and would overflow in float16.
    # Entered only when autocast is on: an autocast region in the graph breaks torch.export on torch 2.4.
    context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if torch.is_autocast_enabled(x.device.type):
        context = torch.autocast(x.device.type, enabled=False)
    with context:
        pooled = torch.bmm(kept.transpose(1, 2), xc).to(x.dtype)
    if heads == 1:
        return GatedAttentionOutput(pooled.squeeze(1), weights.squeeze(-1), scores.squeeze(-1))
    return GatedAttentionOutput(pooled, weights, scores)


# ------------------------------------------------------------------------------------------------------
# Scoring network. Two implementations of the same expression: the plain one (autograd saves tanh, sigmoid
# and their product, three (B, K, H) tensors, and torch.compile / torch.export trace it and fuse it
# themselves), and a fused one for eager mode that keeps only the (N, 2H) pre-activations, recomputes the
# rest in backward, works through the rows in chunks, and on the CPU scores only the present instances.
# ------------------------------------------------------------------------------------------------------

#: Rows per chunk of the fused scoring: bounds the temporaries (a gathered chunk of x, its activations).
_CHUNK_ELEMENTS = 1 << 22


def _gate(h: Tensor, hidden: int, gated: bool) -> Tensor:
    if not gated:
        return torch.tanh(h)
    return torch.tanh(h[..., :hidden]) * torch.sigmoid(h[..., hidden:])


def _use_fused(x: Tensor) -> bool:
    """The fused scoring runs in plain eager mode; compilers, autocast and functorch get the plain ops."""
    return not (
        torch.compiler.is_compiling()
        or torch.is_autocast_enabled(x.device.type)
        or torch._C._are_functorch_transforms_active()
        or x.device.type not in ("cpu", "cuda")
    )


def _fused_scores(
    x: Tensor,
    mask: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    w: Tensor,
    wb: Tensor | None,
    hidden: int,
    gated: bool,
) -> Tensor:
    bsz, k, dim = x.shape
    flat = x.reshape(bsz * k, dim)
    chunk = max(1, _CHUNK_ELEMENTS // max(dim, weight.shape[0]))
    rows: list[tuple[int, int]] | Tensor = [(0, bsz * k)]
    if mask is not None and x.device.type == "cpu":
        # Only on the CPU, where reading the mask costs no device synchronisation: score the present rows
        # alone, so padding costs (almost) nothing. They are gathered a block at a time into one buffer.
        present = mask.reshape(-1).nonzero().squeeze(1)
        if present.numel() < bsz * k:
            rows = present
    s: Tensor = _GatedScores.apply(flat, rows, weight, bias, w, wb, hidden, gated, chunk)
    return s.view(bsz, k, -1)


def _blocks(rows: list[tuple[int, int]] | Tensor, chunk: int) -> list[tuple[int, int, int, Tensor | None]]:
    """Split the scored rows into blocks of at most ``chunk``: ``(start, stop, offset, index)``; a block reads
    ``x[start:stop]`` in place when ``index`` is None, else ``x[index]``, and is row ``offset`` of the packed
    activations."""
    blocks: list[tuple[int, int, int, Tensor | None]] = []
    offset = 0
    if isinstance(rows, Tensor):
        for i in range(0, rows.numel(), chunk):
            idx = rows[i : i + chunk]
            blocks.append((0, 0, offset, idx))
            offset += idx.numel()
        return blocks
    for lo, hi in rows:
        for a in range(lo, hi, chunk):
            b = min(a + chunk, hi)
            blocks.append((a, b, offset, None))
            offset += b - a
    return blocks


def _gather_buffer(x: Tensor, blocks: list[tuple[int, int, int, Tensor | None]]) -> Tensor:
    """One buffer for the gathered blocks, reused: a fresh large tensor per block costs page faults."""
    sizes = [idx.numel() for _, _, _, idx in blocks if idx is not None]
    return x.new_empty(max(sizes, default=0), x.shape[1])


class _GatedScores(torch.autograd.Function):
    """Scores ``w(gate(x @ weight.T + bias)) + wb`` of the chosen rows of ``x``, zero on the other rows."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        rows: list[tuple[int, int]] | Tensor,
        weight: Tensor,
        bias: Tensor | None,
        w: Tensor,
        wb: Tensor | None,
        hidden: int,
        gated: bool,
        chunk: int,
    ) -> Tensor:
        blocks = _blocks(rows, chunk)
        n = sum(b - a if idx is None else idx.numel() for a, b, _, idx in blocks)
        # Kept for backward: tanh(V x) and sigmoid(U x) of the scored rows, as large as the pre-activations,
        # so that backward evaluates no transcendental function again; the pre-activations live one block
        # at a time.
        t = x.new_empty(n, hidden)
        sg = x.new_empty(n, hidden) if gated else None
        out = x.new_zeros(x.shape[0], w.shape[0]) if n < x.shape[0] else x.new_empty(x.shape[0], w.shape[0])
        buf = _gather_buffer(x, blocks)
        for a, b, o, idx in blocks:
            xb = x[a:b] if idx is None else torch.index_select(x, 0, idx, out=buf[: idx.numel()])
            p = slice(o, o + xb.shape[0])
            h = torch.mm(xb, weight.t()) if bias is None else torch.addmm(bias, xb, weight.t())
            tb = torch.tanh(h[:, :hidden], out=t[p])
            g = tb if sg is None else tb * torch.sigmoid(h[:, hidden:], out=sg[p])
            sb = torch.mm(g, w.t()) if wb is None else torch.addmm(wb, g, w.t())
            if idx is None:
                out[a:b] = sb
            else:
                out.index_copy_(0, idx, sb)
        ctx.save_for_backward(x, weight, w, t, sg)
        ctx.blocks = blocks
        ctx.meta = (hidden, n, bias is not None, wb is not None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, w, t, sg = ctx.saved_tensors
        hidden, n, has_bias, has_wb = ctx.meta
        need_x, _, need_weight, need_bias, need_w, need_wb = ctx.needs_input_grad[:6]
        grad_x = None if not need_x else torch.empty_like(x) if n == x.shape[0] else torch.zeros_like(x)
        grad_weight = torch.zeros_like(weight)
        grad_bias = weight.new_zeros(weight.shape[0])
        grad_w = torch.zeros_like(w)
        grad_wb = w.new_zeros(w.shape[0])
        ones = t.new_ones(max(((b - a if idx is None else idx.numel()) for a, b, _, idx in ctx.blocks), default=1))
        buf = _gather_buffer(x, ctx.blocks)
        for a, b, o, idx in ctx.blocks:
            xb = x[a:b] if idx is None else torch.index_select(x, 0, idx, out=buf[: idx.numel()])
            gs = grad_out[a:b] if idx is None else grad_out.index_select(0, idx)
            m = xb.shape[0]
            p = slice(o, o + m)
            tb = t[p]
            gg = gs @ w  # gradient of the gate output, (m, H)
            grad_wb.addmv_(gs.t(), ones[:m])
            if sg is None:
                grad_w.addmm_(gs.t(), tb)
                parts = [torch.ops.aten.tanh_backward(gg, tb)]
            else:
                sb = sg[p]
                grad_w.addmm_(gs.t(), tb * sb)
                parts = [torch.ops.aten.tanh_backward(gg * sb, tb), torch.ops.aten.sigmoid_backward(gg * tb, sb)]
            gx = None
            for i, gh in enumerate(parts):  # the V rows of the stacked weight, then the U rows
                block = slice(i * hidden, (i + 1) * hidden)
                grad_weight[block].addmm_(gh.t(), xb)
                # column sums as a matrix-vector product: much faster than gh.sum(0) on the CPU
                grad_bias[block].addmv_(gh.t(), ones[:m])
                if grad_x is not None:
                    gx = gh @ weight[block] if gx is None else gx.addmm_(gh, weight[block])
            if grad_x is not None and gx is not None:
                if idx is None:
                    grad_x[a:b] = gx
                else:
                    grad_x.index_copy_(0, idx, gx)
        return (
            grad_x,
            None,
            grad_weight if need_weight else None,
            grad_bias if has_bias and need_bias else None,
            grad_w if need_w else None,
            grad_wb if has_wb and need_wb else None,
            None,
            None,
            None,
        )
