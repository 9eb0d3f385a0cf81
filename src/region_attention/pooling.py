"""Attention pooling modules of RAN: they hold the queries; the math lives in :mod:`region_attention.functional`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from typing_extensions import override

from . import functional as RF
from ._validation import check_choice, check_positive_int
from .functional.pooling import VARIANTS, RelationAttentionOutput, SelfAttentionOutput

__all__ = ["RelationAttentionPool", "SelfAttentionPool"]


class _AttentionPool(nn.Module):
    """Shared parameter handling: one ``nn.Linear(in_features, 1)`` query."""

    def __init__(
        self,
        dim: int,
        in_features: int,
        *,
        bias: bool,
        variant: str,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.dim = check_positive_int(dim, "dim", owner)
        self.variant = check_choice(variant, "variant", VARIANTS, owner)
        self.query = nn.Linear(in_features, 1, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the query like ``nn.Linear`` does (uniform in :math:`\\pm 1/\\sqrt{fan_{in}}`)."""
        self.query.reset_parameters()

    @override
    def extra_repr(self) -> str:
        return f"dim={self.dim}, bias={self.query.bias is not None}, variant={self.variant!r}"


class SelfAttentionPool(_AttentionPool):
    r"""Self-attention pooling of region features (Wang et al., TIP 2020, Eq. 2-3).

    .. math::
        \mu_i = \sigma(F_i^\top \mathbf{q}^0), \qquad F_m = \frac{\sum_i \mu_i F_i}{\sum_i \mu_i}

    Each region gets a gate from its own feature through one linear query :math:`\mathbf{q}^0`
    (``self.query``); the regions are averaged with the normalised gates. ``variant="authors"`` replaces
    the gates by their softmax over the present regions, as the authors' released code does.

    Args:
        dim: feature size :math:`D` of each region.
        bias: add a learnable bias to the query (the paper has none; the authors' code has one).
        variant: ``"paper"`` (default) or ``"authors"``; see :func:`~region_attention.functional.self_attention_pool`.
        device, dtype: for the parameters, as in ``nn.Linear``.

    Shapes:
        - x: :math:`(B, K, D)` region features; mask: :math:`(B, K)` bool, ``True`` = present
        - output: :class:`~region_attention.SelfAttentionOutput` with ``pooled`` :math:`(B, D)`,
          ``weights`` and ``gates`` :math:`(B, K)`

    Example:
        >>> import torch
        >>> from region_attention import SelfAttentionPool
        >>> pool = SelfAttentionPool(512)
        >>> pool
        SelfAttentionPool(
          dim=512, bias=False, variant='paper'
          (query): Linear(in_features=512, out_features=1, bias=False)
        )
        >>> out = pool(torch.randn(4, 6, 512))
        >>> out.pooled.shape, out.weights.sum(dim=1).allclose(torch.ones(4))
        (torch.Size([4, 512]), True)
    """

    __call__: Callable[..., SelfAttentionOutput]  # so module(x) types as forward's output

    def __init__(
        self,
        dim: int,
        *,
        bias: bool = False,
        variant: str = "paper",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(dim, dim, bias=bias, variant=variant, device=device, dtype=dtype)

    @property
    def out_features(self) -> int:
        """Size of ``SelfAttentionOutput.pooled``: ``dim``."""
        return self.dim

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> SelfAttentionOutput:
        """Pool region features ``x`` ``(B, K, D)``; ``mask`` ``(B, K)`` bool, True = present."""
        return RF.self_attention_pool(x, self.query.weight, self.query.bias, mask, variant=self.variant)


class RelationAttentionPool(_AttentionPool):
    r"""Relation-attention pooling of region features (Wang et al., TIP 2020, Eq. 4-5).

    .. math::
        \nu_i = \sigma([F_i : F_m]^\top \mathbf{q}^1), \qquad
        P_{RAN} = \frac{\sum_i \mu_i \nu_i [F_i : F_m]}{\sum_i \mu_i \nu_i}

    Refines the self-attention gates :math:`\mu_i` with a second query :math:`\mathbf{q}^1` (``self.query``)
    that sees each region next to the aggregate :math:`F_m`. The output has ``2 * dim`` features
    (``out_features``).

    Args:
        dim: feature size :math:`D` of each region (the query has ``2 * dim`` inputs).
        bias: add a learnable bias to the query.
        variant: ``"paper"`` (default) or ``"authors"`` (softmax over the sigmoid gates).
        device, dtype: for the parameters, as in ``nn.Linear``.

    Shapes:
        - x: :math:`(B, K, D)`; pooled: :math:`(B, D)`; gates and mask: :math:`(B, K)`
        - output: :class:`~region_attention.RelationAttentionOutput` with ``pooled``
          :math:`(B, 2D)`, ``weights`` and ``gates`` :math:`(B, K)`

    Example:
        >>> import torch
        >>> from region_attention import RelationAttentionPool, SelfAttentionPool
        >>> x = torch.randn(4, 6, 512)
        >>> s = SelfAttentionPool(512)(x)
        >>> r = RelationAttentionPool(512)(x, s.pooled, s.gates)
        >>> r.pooled.shape
        torch.Size([4, 1024])
    """

    __call__: Callable[..., RelationAttentionOutput]  # so module(x) types as forward's output

    def __init__(
        self,
        dim: int,
        *,
        bias: bool = False,
        variant: str = "paper",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(dim, 2 * dim, bias=bias, variant=variant, device=device, dtype=dtype)

    @property
    def out_features(self) -> int:
        """Size of ``RelationAttentionOutput.pooled``: ``2 * dim``."""
        return 2 * self.dim

    @override
    def forward(self, x: Tensor, pooled: Tensor, gates: Tensor, mask: Tensor | None = None) -> RelationAttentionOutput:
        """Refine with ``pooled`` (``F_m``, ``(B, D)``) and ``gates`` (``mu``, ``(B, K)``) of the self-attention
        pool; ``mask`` ``(B, K)`` bool, True = present."""
        return RF.relation_attention_pool(
            x, pooled, gates, self.query.weight, self.query.bias, mask, variant=self.variant
        )
