"""Public API surface: names, reprs, compile/export, and the bad-input table."""

from __future__ import annotations

import re

import pytest
import torch

import region_attention
import region_attention.functional as RF
from region_attention import RegionBiasedLoss, RelationAttentionPool, SelfAttentionPool


def test_public_names():
    for name in (
        "SelfAttentionPool",
        "RelationAttentionPool",
        "RegionBiasedLoss",
        "functional",
        "GatedAttentionPool",
        "GatedAttentionOutput",
        "pad_bags",
    ):
        assert hasattr(region_attention, name)
    for name in ("self_attention_pool", "relation_attention_pool", "region_biased_loss", "gated_attention_pool"):
        assert callable(getattr(RF, name))
    assert region_attention.__version__ == "0.1.0"


def test_one_pass_public_names():
    from region_attention.backbones import resnet18_split

    for name in ("RegionAlign", "FeatureRegionAttentionNetwork"):
        assert name in region_attention.__all__ and hasattr(region_attention, name)
    assert "region_align" in RF.__all__ and callable(RF.region_align)
    assert callable(resnet18_split)


def test_reprs_are_pinned():
    assert repr(SelfAttentionPool(8)) == (
        "SelfAttentionPool(\n  dim=8, bias=False, variant='paper'\n"
        "  (query): Linear(in_features=8, out_features=1, bias=False)\n)"
    )
    assert repr(RelationAttentionPool(8, bias=True, variant="authors")) == (
        "RelationAttentionPool(\n  dim=8, bias=True, variant='authors'\n"
        "  (query): Linear(in_features=16, out_features=1, bias=True)\n)"
    )
    assert repr(RegionBiasedLoss(0.1, whole_index=-1)) == (
        "RegionBiasedLoss(margin=0.1, whole_index=-1, reduction='mean')"
    )


def test_constructor_device_dtype_and_reset():
    ra = RelationAttentionPool(4, bias=True, dtype=torch.float64)
    assert ra.query.weight.dtype == torch.float64 and ra.out_features == 8
    assert SelfAttentionPool(4).out_features == 4
    before = ra.query.weight.detach().clone()
    torch.manual_seed(123)
    ra.reset_parameters()
    assert not torch.equal(before, ra.query.weight)
    bound = 1 / 8**0.5
    assert ra.query.weight.abs().max() <= bound


def _model():
    class RAN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sa = SelfAttentionPool(8, bias=True)
            self.ra = RelationAttentionPool(8)
            self.rb = RegionBiasedLoss()

        def forward(self, x, mask):
            s = self.sa(x, mask)
            r = self.ra(x, s.pooled, s.gates, mask)
            return r.pooled, r.weights, self.rb(s.gates, mask)

    return RAN()


@pytest.mark.slow
def test_compile_fullgraph_dynamic():
    model = _model()
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=True)
    for bsz, k in ((2, 3), (5, 6), (1, 9)):
        x = torch.randn(bsz, k, 8)
        mask = torch.rand(bsz, k) > 0.3
        for a, b in zip(compiled(x, mask), model(x, mask), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_export_dynamic_batch_and_regions():
    model = _model()
    batch, regions = torch.export.Dim("batch", min=1), torch.export.Dim("regions", min=2)
    x = torch.randn(3, 6, 8)
    mask = torch.rand(3, 6) > 0.3
    program = torch.export.export(
        model, (x, mask), dynamic_shapes={"x": {0: batch, 1: regions}, "mask": {0: batch, 1: regions}}
    )
    for bsz, k in ((2, 4), (7, 9)):
        x2, m2 = torch.randn(bsz, k, 8), torch.rand(bsz, k) > 0.3
        for a, b in zip(program.module()(x2, m2), model(x2, m2), strict=True):
            torch.testing.assert_close(a, b)


def test_no_host_sync_in_forward(device):
    if device != "cuda":
        pytest.skip("host synchronisation is only observable on CUDA")
    model = _model().to(device)
    x = torch.randn(4, 6, 8, device=device)
    mask = torch.rand(4, 6, device=device) > 0.3
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(x, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------------------------------------
# Bad input: (callable, exception, message pattern)
# ----------------------------------------------------------------------------------------------------------

sa8, ra8 = SelfAttentionPool(8), RelationAttentionPool(8)
x8 = torch.randn(2, 3, 8)
s8 = sa8(x8)

BAD_INPUT = [
    ("x 2-D", lambda: sa8(torch.randn(3, 8)), ValueError, r"expected x of shape \(B, K, D\), got 2-D shape \(3, 8\)"),
    (
        "x wrong D",
        lambda: sa8(torch.randn(8, 6, 256)),
        ValueError,
        r"self_attention_pool expected x of shape \(B, K, 8\) to match weight \(1, 8\), got \(8, 6, 256\)",
    ),
    ("x not tensor", lambda: sa8([[1.0]]), TypeError, r"expected x to be a torch.Tensor, got list"),
    (
        "x integer",
        lambda: sa8(torch.ones(2, 3, 8, dtype=torch.long)),
        TypeError,
        r"floating point dtype, got torch.int64",
    ),
    ("K = 0", lambda: sa8(torch.randn(2, 0, 8)), ValueError, r"at least one region \(K >= 1\), got \(2, 0, 8\)"),
    (
        "mask shape",
        lambda: sa8(x8, torch.ones(2, 4, dtype=torch.bool)),
        ValueError,
        r"expected mask of shape \(2, 3\) \(B, K\), got \(2, 4\)",
    ),
    ("mask dtype", lambda: sa8(x8, torch.ones(2, 3)), TypeError, r"mask to be a bool tensor.*got dtype torch.float32"),
    (
        "pooled shape",
        lambda: ra8(x8, torch.randn(2, 7), s8.gates),
        ValueError,
        r"expected pooled of shape \(B, D\) = \(2, 8\) to match x \(2, 3, 8\), got \(2, 7\)",
    ),
    (
        "gates shape",
        lambda: ra8(x8, s8.pooled, torch.rand(2, 4)),
        ValueError,
        r"expected gates of shape \(B, K\) = \(2, 3\) to match x \(2, 3, 8\), got \(2, 4\)",
    ),
    (
        "relation x wrong D",
        lambda: ra8(torch.randn(2, 3, 4), s8.pooled, s8.gates),
        ValueError,
        r"relation_attention_pool expected pooled of shape \(B, D\) = \(2, 4\) to match x \(2, 3, 4\), got \(2, 8\)",
    ),
    (
        "unknown variant",
        lambda: SelfAttentionPool(8, variant="softmax"),
        ValueError,
        r"expected variant to be one of 'paper', 'authors', got 'softmax'",
    ),
    ("dim 0", lambda: SelfAttentionPool(0), ValueError, r"expected dim > 0, got 0"),
    ("dim float", lambda: RelationAttentionPool(2.5), TypeError, r"expected dim to be an int, got float"),
    ("negative margin", lambda: RegionBiasedLoss(-0.1), ValueError, r"expected margin >= 0, got -0.1"),
    (
        "unknown reduction",
        lambda: RegionBiasedLoss(reduction="avg"),
        ValueError,
        r"expected reduction to be one of 'mean', 'sum', 'none', got 'avg'",
    ),
    (
        "whole_index range",
        lambda: RegionBiasedLoss(whole_index=6)(torch.rand(2, 6)),
        ValueError,
        r"expected whole_index in \[-6, 5\] for K = 6, got 6",
    ),
    ("whole_index type", lambda: RegionBiasedLoss(whole_index=0.0), TypeError, r"whole_index to be an int, got float"),
    ("loss K = 1", lambda: RegionBiasedLoss()(torch.rand(2, 1)), ValueError, r"at least one crop \(K >= 2\)"),
    (
        "loss gates 3-D",
        lambda: RegionBiasedLoss()(torch.rand(2, 3, 1)),
        ValueError,
        r"expected gates of shape \(B, K\), got 3-D",
    ),
    (
        "loss mask shape",
        lambda: RegionBiasedLoss()(torch.rand(2, 3), torch.ones(3, dtype=torch.bool)),
        ValueError,
        r"expected mask of shape \(2, 3\)",
    ),
    (
        "functional weight shape",
        lambda: RF.self_attention_pool(x8, torch.randn(1, 7)),
        ValueError,
        r"expected x of shape \(B, K, 7\) to match weight \(1, 7\), got \(2, 3, 8\)",
    ),
    (
        "functional bias shape",
        lambda: RF.self_attention_pool(x8, torch.randn(1, 8), torch.randn(2)),
        ValueError,
        r"expected bias of shape \(1,\) or \(\), got \(2,\)",
    ),
    (
        "functional relation weight",
        lambda: RF.relation_attention_pool(x8, s8.pooled, s8.gates, torch.randn(1, 8)),
        ValueError,
        r"expected x of shape \(B, K, 4\) to match weight \(1, 8\), got \(2, 3, 8\)",
    ),
    (
        "functional variant",
        lambda: RF.region_biased_loss(torch.rand(2, 3), reduction=None),
        ValueError,
        r"expected reduction to be one of",
    ),
]


@pytest.mark.parametrize(("case", "fn", "exc", "pattern"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case, fn, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn()


def test_x_on_another_device_than_parameters():
    pool = SelfAttentionPool(8, device="meta")
    with pytest.raises(ValueError, match=re.escape("expected weight on cpu like x, got meta")):
        pool(x8)
