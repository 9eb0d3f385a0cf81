"""Gated attention pooling for bags of instances (Ilse et al., ICML 2018), and padding ragged bags.

The module holds the projections; the math lives in :func:`region_attention.functional.gated_attention_pool`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from typing_extensions import override

from . import functional as RF
from ._validation import check_bool, check_dropout, check_positive_int, shape_str
from .functional.gated import GatedAttentionOutput

__all__ = ["GatedAttentionOutput", "GatedAttentionPool", "pad_bags"]


class GatedAttentionPool(nn.Module):
    r"""Gated attention pooling of a bag of instances (Ilse et al., "Attention-based Deep Multiple Instance
    Learning", ICML 2018).

    .. math::
        s_k = \mathbf{w}^\top\left(\tanh(\mathbf{V} x_k) \odot \sigma(\mathbf{U} x_k)\right), \qquad
        a_k = \operatorname{softmax}_{k \in \text{present}}(s_k), \qquad
        z = \sum_k a_k x_k

    Every instance gets a score from its own feature through a small gated network (``V``, ``U``, ``w``);
    the weights are the softmax of the scores over the present instances of the bag. With ``gated=False``
    the gate :math:`\sigma(\mathbf{U} x_k)` is left out (Ilse et al.'s plain attention, and no ``U``).
    With ``heads > 1``, ``w`` has one row per head; each head weighs the instances on its own and pools its
    own output. This is torchmil's ``AttentionPool(gated=True)``, and torch_geometric's
    ``AttentionalAggregation`` with the same gate network as ``gate_nn``.

    Args:
        dim: feature size :math:`D` of each instance.
        hidden: size :math:`H` of the hidden layer of the scoring network (128 in Ilse et al.).
        heads: number of attention heads.
        gated: include the sigmoid gate ``U``.
        dropout: probability of zeroing an attention weight in training, applied after the softmax and
            before pooling (as ``nn.MultiheadAttention`` does); ``weights`` is returned before dropout.
        device, dtype: for the parameters, as in ``nn.Linear``.

    Attributes:
        V: ``nn.Linear(dim, hidden)``, the :math:`\tanh` branch.
        U: ``nn.Linear(dim, hidden)``, the sigmoid gate; ``None`` when ``gated=False``.
        w: ``nn.Linear(hidden, heads)``, one scoring vector per head.

    Shapes:
        - x: :math:`(B, K, D)` instance features, bags padded to ``K`` (see :func:`pad_bags`);
          mask: :math:`(B, K)` bool, ``True`` = present
        - output: :class:`~region_attention.GatedAttentionOutput` with ``pooled`` :math:`(B, D)`,
          ``weights`` and ``scores`` :math:`(B, K)` for ``heads = 1``; :math:`(B, heads, D)` and
          :math:`(B, K, heads)` otherwise. ``weights`` are zero and ``scores`` are :math:`-\infty` where
          masked.

    Example:
        >>> import torch
        >>> from region_attention import GatedAttentionPool, pad_bags
        >>> pool = GatedAttentionPool(16, hidden=8)
        >>> pool
        GatedAttentionPool(
          dim=16, hidden=8, heads=1, gated=True, dropout=0.0
          (V): Linear(in_features=16, out_features=8, bias=True)
          (U): Linear(in_features=16, out_features=8, bias=True)
          (w): Linear(in_features=8, out_features=1, bias=True)
        )
        >>> x, mask = pad_bags([torch.randn(3, 16), torch.randn(5, 16)])
        >>> out = pool(x, mask)
        >>> out.pooled.shape, out.weights.shape
        (torch.Size([2, 16]), torch.Size([2, 5]))
        >>> out.weights.sum(dim=1).allclose(torch.ones(2)), out.weights[0, 3:].tolist()
        (True, [0.0, 0.0])
    """

    U: nn.Linear | None

    __call__: Callable[..., GatedAttentionOutput]  # so module(x) types as forward's output

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        *,
        heads: int = 1,
        gated: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.dim = check_positive_int(dim, "dim", owner)
        self.hidden = check_positive_int(hidden, "hidden", owner)
        self.heads = check_positive_int(heads, "heads", owner)
        self.gated = check_bool(gated, "gated", owner)
        self.dropout = check_dropout(dropout, owner)
        self.V = nn.Linear(dim, hidden, device=device, dtype=dtype)
        self.U = nn.Linear(dim, hidden, device=device, dtype=dtype) if gated else None
        self.w = nn.Linear(hidden, heads, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ``V``, ``U`` and ``w`` like ``nn.Linear`` does (uniform in :math:`\\pm 1/\\sqrt{fan_{in}}`)."""
        self.V.reset_parameters()
        if self.U is not None:
            self.U.reset_parameters()
        self.w.reset_parameters()

    @property
    def out_features(self) -> int:
        """Size of the last axis of ``GatedAttentionOutput.pooled``: ``dim``."""
        return self.dim

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> GatedAttentionOutput:
        """Pool instance features ``x`` ``(B, K, D)``; ``mask`` ``(B, K)`` bool, True = present."""
        return RF.gated_attention_pool(
            x,
            self.V.weight,
            self.w.weight,
            mask,
            v_bias=self.V.bias,
            u_weight=None if self.U is None else self.U.weight,
            u_bias=None if self.U is None else self.U.bias,
            w_bias=self.w.bias,
            dropout=self.dropout,
            training=self.training,
        )

    @override
    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, heads={self.heads}, gated={self.gated}, dropout={self.dropout}"


def pad_bags(bags: Sequence[Tensor], *, padding_value: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pad bags of different sizes into one batch, with the mask that marks the real instances.

    Args:
        bags: ``B`` tensors of shape ``(K_i, D)``, the same ``D``, dtype and device; ``K_i = 0`` is allowed
            (an empty bag, which the pools turn into zeros).
        padding_value: the value of the padding (keep it finite: masked instances get weight 0, and
            ``0 * inf`` is NaN).

    Returns:
        ``(x, mask)``: ``x`` of shape ``(B, K_max, D)`` with ``K_max = max(1, max_i K_i)``, bag ``i`` in
        ``x[i, :K_i]`` and ``padding_value`` after it; ``mask`` ``(B, K_max)`` bool, ``True`` = present
        (on the same device). The sizes are read from the shapes, so padding costs no device
        synchronisation.

    Example:
        >>> import torch
        >>> from region_attention import pad_bags
        >>> x, mask = pad_bags([torch.ones(2, 3), torch.ones(4, 3)])
        >>> x.shape
        torch.Size([2, 4, 3])
        >>> mask
        tensor([[ True,  True, False, False],
                [ True,  True,  True,  True]])
    """
    owner = "pad_bags"
    if not isinstance(bags, (list, tuple)):
        raise TypeError(f"{owner} expected bags to be a list of (K_i, D) tensors, got {type(bags).__name__}")
    if len(bags) == 0:
        raise ValueError(f"{owner} expected at least one bag, got an empty list")
    if isinstance(padding_value, bool) or not isinstance(padding_value, (int, float)):
        raise TypeError(f"{owner} expected padding_value to be a float, got {type(padding_value).__name__}")
    first = bags[0]
    for i, bag in enumerate(bags):
        if not isinstance(bag, Tensor):
            raise TypeError(f"{owner} expected bags[{i}] to be a torch.Tensor, got {type(bag).__name__}")
        if bag.dim() != 2:
            raise ValueError(
                f"{owner} expected bags[{i}] of shape (K_{i}, D), got {bag.dim()}-D shape {shape_str(bag.shape)}"
            )
        if bag.shape[1] != first.shape[1]:
            raise ValueError(
                f"{owner} expected bags[{i}] of shape (K_{i}, {first.shape[1]}) like bags[0], "
                f"got {shape_str(bag.shape)}"
            )
        if bag.dtype != first.dtype:
            raise TypeError(f"{owner} expected bags[{i}] of dtype {first.dtype} like bags[0], got {bag.dtype}")
        if bag.device != first.device:
            raise ValueError(f"{owner} expected bags[{i}] on {first.device} like bags[0], got {bag.device}")
    sizes = [bag.shape[0] for bag in bags]
    k_max = max(1, *sizes)
    x = first.new_full((len(bags), k_max, first.shape[1]), padding_value)
    mask = torch.zeros(len(bags), k_max, dtype=torch.bool, device=first.device)
    for i, bag in enumerate(bags):  # plain copies and fills: no host-to-device transfer of the sizes
        x[i, : sizes[i]] = bag
        mask[i, : sizes[i]] = True
    return x, mask
