"""RegionBiasedLoss (Eq. 6) against a float64 loop and against F.margin_ranking_loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import region_attention.functional as RF
from region_attention import RegionBiasedLoss, SelfAttentionPool
from tests.reference import rb_loss_reference


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("whole_index", [0, -1, 2])
@pytest.mark.parametrize("margin", [0.0, 0.02, 0.1, 1.0])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_loop_reference(device, dtype, reduction, whole_index, margin, masked):
    gen = torch.Generator().manual_seed(7)
    gates = torch.rand(9, 6, generator=gen, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.rand(9, 6, generator=gen) > 0.4
        mask[0] = False
        mask[1] = False
        mask[1, whole_index] = True  # only the whole face
        mask[2] = True
        mask[2, whole_index] = False  # whole face missing
    loss = RegionBiasedLoss(margin, whole_index=whole_index, reduction=reduction)(
        gates.to(device=device, dtype=dtype), None if mask is None else mask.to(device)
    )
    expected = rb_loss_reference(gates.to(dtype).double(), mask, margin, whole_index, reduction)
    torch.testing.assert_close(loss.double().cpu(), expected, atol=1e-6, rtol=1e-6)
    assert loss.dtype == dtype


@pytest.mark.parametrize("whole_index", [0, -1])
def test_equals_margin_ranking_loss(whole_index):
    gen = torch.Generator().manual_seed(0)
    gates = torch.rand(16, 6, generator=gen)
    whole = gates[:, whole_index]
    crops = gates[:, 1:] if whole_index == 0 else gates[:, :-1]
    expected = F.margin_ranking_loss(crops.max(1).values, whole, torch.ones_like(whole), margin=0.1)
    got = RF.region_biased_loss(gates, margin=0.1, whole_index=whole_index)
    torch.testing.assert_close(got, expected)


def test_gradcheck():
    gen = torch.Generator().manual_seed(1)
    gates = torch.rand(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 0, 0], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda g, r=reduction: RF.region_biased_loss(g, mask, margin=0.5, reduction=r), (gates,)
        )


def test_gradient_reaches_only_the_whole_face_and_best_crop():
    gates = torch.tensor([[0.5, 0.2, 0.51, 0.3]], requires_grad=True)
    RF.region_biased_loss(gates, margin=0.1).backward()
    torch.testing.assert_close(gates.grad, torch.tensor([[1.0, 0.0, -1.0, 0.0]]))


def test_rows_without_crops_contribute_zero_with_finite_gradient():
    gates = torch.rand(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    per_row = RF.region_biased_loss(gates, mask, margin=2.0, reduction="none")
    assert per_row[0] == 0 and per_row[1] == 0 and per_row[2] > 0
    per_row.sum().backward()
    assert torch.isfinite(gates.grad).all()
    assert (gates.grad[:2] == 0).all()


@settings(max_examples=30, deadline=None)
@given(bsz=st.integers(1, 6), k=st.integers(2, 8), seed=st.integers(0, 2**16), margin=st.floats(0, 1))
def test_loss_is_nonnegative_and_masked_crops_are_ignored(bsz, k, seed, margin):
    gen = torch.Generator().manual_seed(seed)
    gates = torch.rand(bsz, k, generator=gen)
    mask = torch.rand(bsz, k, generator=gen) > 0.3
    loss = RF.region_biased_loss(gates, mask, margin=margin, reduction="none")
    assert (loss >= 0).all() and (loss <= margin + 1).all()
    # raising a masked crop's gate can never change the loss
    bumped = torch.where(mask, gates, torch.ones_like(gates) * 10)
    torch.testing.assert_close(RF.region_biased_loss(bumped, mask, margin=margin, reduction="none"), loss)


def test_on_pool_gates_in_half_precision():
    x = (torch.randn(4, 6, 64) * 1e3).to(torch.bfloat16)
    s = SelfAttentionPool(64, dtype=torch.bfloat16)(x)
    loss = RegionBiasedLoss()(s.gates)
    assert torch.isfinite(loss)
