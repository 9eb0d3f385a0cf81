"""RegionBiasedLoss (Eq. 6) and RegionAttentionLoss (the paper's objective) against float64 loops and against
F.cross_entropy / F.margin_ranking_loss; RegionAttentionLoss's target checks."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import region_attention.functional as RF
from region_attention import RegionAttentionLoss, RegionBiasedLoss, SelfAttentionPool
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


# ---------------------------------------------------------------------------------------------------------------
# RegionAttentionLoss: the paper's objective (classification + rb_weight * region biased)


def _ce_loop(logits, target, weight=None):
    """Weighted-mean cross-entropy in float64, one row at a time (class indices)."""
    num, den = 0.0, 0.0
    for row, t in zip(logits.double().tolist(), target.tolist(), strict=True):
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        w = 1.0 if weight is None else float(weight[t])
        num += w * (log_z - row[t])
        den += w
    return torch.tensor(num / den, dtype=torch.float64)


class _Out(NamedTuple):
    logits: torch.Tensor
    self_attention: Any
    regions: Any


def _network_output(logits, gates, mask, whole_index=None):
    return _Out(logits, SimpleNamespace(gates=gates), SimpleNamespace(mask=mask, whole_index=whole_index))


@pytest.mark.parametrize("whole_index", [0, -1])
@pytest.mark.parametrize("weighted", [False, True])
def test_region_attention_loss_matches_references(whole_index, weighted):
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(7, 5, generator=gen)
    target = torch.randint(0, 5, (7,), generator=gen)
    gates = torch.rand(7, 6, generator=gen)
    mask = torch.rand(7, 6, generator=gen) > 0.3
    weight = torch.rand(5, generator=gen) + 0.5 if weighted else None
    criterion = RegionAttentionLoss(0.1, rb_weight=0.5, whole_index=whole_index, class_weight=weight)
    out = criterion(_network_output(logits, gates, mask), target)
    torch.testing.assert_close(out.classification, F.cross_entropy(logits, target, weight=weight))
    torch.testing.assert_close(out.classification.double(), _ce_loop(logits, target, weight), atol=1e-6, rtol=1e-6)
    expected_rb = rb_loss_reference(gates.double(), mask, 0.1, whole_index)
    torch.testing.assert_close(out.region_biased.double(), expected_rb, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.total, out.classification + 0.5 * out.region_biased)
    # without a mask the region biased part is F.margin_ranking_loss of the best crop against the whole face
    whole = gates[:, whole_index]
    crops = gates[:, 1:] if whole_index == 0 else gates[:, :-1]
    ranking = F.margin_ranking_loss(crops.max(1).values, whole, torch.ones_like(whole), margin=0.1)
    torch.testing.assert_close(criterion.from_parts(logits, target, gates).region_biased, ranking)
    # the output's whole_index, read when the loss has none, gives the same loss
    carried = RegionAttentionLoss(0.1, rb_weight=0.5, class_weight=weight)(
        _network_output(logits, gates, mask, whole_index), target
    )
    torch.testing.assert_close(carried.total, out.total)


def test_region_attention_loss_soft_targets_match_cross_entropy():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    probs = torch.softmax(torch.randn(4, 3, generator=gen, dtype=torch.float64), -1)
    got = RegionAttentionLoss().from_parts(logits, probs).classification
    loop = (
        sum(
            -sum(p * math.log(q) for p, q in zip(pr, qr, strict=True))
            for pr, qr in zip(probs.tolist(), torch.softmax(logits, -1).tolist(), strict=True)
        )
        / 4
    )
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(loop, dtype=torch.float64))


def test_custom_classification_callable_replaces_cross_entropy():
    calls = []

    def multi_target(logits, target):  # FERPlus' multi-target loss: -log max_j t_j softmax_j
        calls.append((logits.dtype, target.shape))
        return -(F.log_softmax(logits, -1) + torch.log(target)).amax(-1).mean()

    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 8, generator=gen).to(torch.bfloat16)
    target = (torch.rand(6, 8, generator=gen) > 0.5).float() * 0.999 + 0.001
    gates = torch.rand(6, 4, generator=gen)
    criterion = RegionAttentionLoss(0.05, classification=multi_target)
    out = criterion.from_parts(logits, target, gates, whole_index=0)
    assert calls == [(torch.float32, (6, 8))]  # called once, on float32 logits, with the target as given
    loop = (
        sum(
            -max(math.log(t) + lp for t, lp in zip(tr, lr, strict=True))
            for tr, lr in zip(target.tolist(), F.log_softmax(logits.float(), -1).tolist(), strict=True)
        )
        / 6
    )
    torch.testing.assert_close(out.classification, torch.tensor(loop), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.total, out.classification + RF.region_biased_loss(gates, margin=0.05))
    assert "classification=multi_target" in repr(criterion)
    with pytest.raises(ValueError, match="class_weight or label_smoothing"):
        RegionAttentionLoss(classification=multi_target, class_weight=torch.ones(8))
    with pytest.raises(TypeError, match="expected classification to be a callable"):
        RegionAttentionLoss(classification="ce")  # type: ignore[arg-type]


def test_without_gates_only_the_classification_part_trains():
    logits = torch.randn(3, 4, requires_grad=True)
    out = RegionAttentionLoss(margin=1.0).from_parts(logits, torch.tensor([0, 3, 1]))
    assert out.region_biased == 0 and out.total == out.classification
    out.total.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, r"floating-point target of shape \(3,\); pass target\.long\(\)"),
        (torch.tensor([[0], [1], [2]]), ValueError, r"got \(3, 1\); pass target\.squeeze\(1\)"),
        (torch.tensor([0, 4, 1]), ValueError, r"class indices in \[0, 3\] for 4 classes, got 4"),
        (torch.tensor([0, -1, 1]), ValueError, r"class indices in \[0, 3\].*got -1"),
        (torch.tensor([0, 1]), ValueError, r"target with batch size 3 like logits \(3, 4\), got target of shape"),
        (torch.tensor([True, False, True]), ValueError, r"integer class indices.*torch\.bool"),
    ],
)
def test_bad_targets_say_what_to_do(target, error, message):
    logits, gates = torch.randn(3, 4), torch.rand(3, 5)
    with pytest.raises(error, match=message):
        RegionAttentionLoss().from_parts(logits, target, gates)


def test_ignore_index_targets_are_skipped_as_in_cross_entropy():
    logits, target = torch.randn(3, 4), torch.tensor([0, -100, 2])
    got = RegionAttentionLoss().from_parts(logits, target).classification
    torch.testing.assert_close(got, F.cross_entropy(logits, target))


def test_logits_instead_of_the_network_output_are_refused():
    criterion = RegionAttentionLoss()
    with pytest.raises(TypeError, match=r"got a Tensor of shape \(3, 4\).*from_parts"):
        criterion(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"without self_attention, regions.*from_parts\(logits, target\)"):
        criterion(SimpleNamespace(logits=torch.randn(3, 4)), torch.tensor([0, 1, 2]))
