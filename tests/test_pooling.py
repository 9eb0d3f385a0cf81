"""SelfAttentionPool / RelationAttentionPool against a float64 loop over the paper's Eq. 2-5."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import region_attention.functional as RF
from region_attention import RelationAttentionPool, SelfAttentionPool
from tests.reference import ran_reference


def _random_mask(bsz: int, k: int, gen: torch.Generator, device: str = "cpu") -> torch.Tensor:
    mask = torch.rand(bsz, k, generator=gen) > 0.4
    mask[0] = False  # one all-masked row
    if bsz > 1:
        mask[1] = True
    return mask.to(device)


def _run_pools(x, mask, variant, bias, device="cpu"):
    dim = x.shape[-1]
    torch.manual_seed(1)
    sa = SelfAttentionPool(dim, bias=bias, variant=variant, device=device, dtype=x.dtype)
    ra = RelationAttentionPool(dim, bias=bias, variant=variant, device=device, dtype=x.dtype)
    with torch.no_grad():  # queries large enough that the weights are far from uniform
        sa.query.weight.mul_(4)
        ra.query.weight.mul_(4)
    s = sa(x, mask)
    r = ra(x, s.pooled, s.gates, mask)
    return sa, ra, s, r


@pytest.mark.parametrize("variant", ["paper", "authors"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("bsz", "k", "d"), [(1, 1, 1), (3, 6, 5), (4, 8, 16), (2, 30, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_float64_reference(device, dtype, tol, variant, bias, bsz, k, d, masked):
    gen = torch.Generator().manual_seed(bsz * 100 + k * 10 + d)
    x = (torch.randn(bsz, k, d, generator=gen, dtype=torch.float64)).to(device=device, dtype=dtype)
    mask = _random_mask(bsz, k, gen, device) if masked else None
    sa, ra, s, r = _run_pools(x, mask, variant, bias, device)
    b0 = float(sa.query.bias.detach()) if bias else 0.0
    b1 = float(ra.query.bias.detach()) if bias else 0.0
    ref = ran_reference(
        x.cpu(), sa.query.weight.cpu(), ra.query.weight.cpu(), b0, b1, None if mask is None else mask.cpu(), variant
    )
    got = (s.pooled, s.weights, s.gates, r.pooled, r.weights, r.gates)
    names = ("F_m", "self weights", "self gates", "P_RAN", "relation weights", "relation gates")
    for name, g, e in zip(names, got, ref, strict=True):
        torch.testing.assert_close(g.double().cpu(), e, **tol, msg=lambda m, name=name: f"{name}: {m}")
    assert s.pooled.dtype == dtype and r.pooled.dtype == dtype
    assert s.weights.dtype == torch.promote_types(dtype, torch.float32)


def test_functional_equals_module(device):
    x = torch.randn(3, 5, 7, device=device)
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool, device=device)
    for variant in ("paper", "authors"):
        sa = SelfAttentionPool(7, bias=True, variant=variant, device=device)
        ra = RelationAttentionPool(7, bias=True, variant=variant, device=device)
        s = sa(x, mask)
        r = ra(x, s.pooled, s.gates, mask)
        fs = RF.self_attention_pool(x, sa.query.weight, sa.query.bias, mask, variant=variant)
        fr = RF.relation_attention_pool(x, fs.pooled, fs.gates, ra.query.weight, ra.query.bias, mask, variant=variant)
        for a, b in zip((*s, *r), (*fs, *fr), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        # a plain (D,) query vector is accepted too
        fv = RF.self_attention_pool(x, sa.query.weight[0], sa.query.bias, mask, variant=variant)
        torch.testing.assert_close(fv.pooled, fs.pooled, rtol=0, atol=0)


def test_authors_weights_stay_near_uniform():
    """The authors' softmax over sigmoid gates keeps every weight in [e^0/(e^0+5e), e/(e+5)] for K = 6."""
    x = torch.randn(64, 6, 32) * 50
    s = SelfAttentionPool(32, variant="authors")(x)
    lo, hi = 1 / (1 + 5 * torch.e), torch.e / (torch.e + 5)
    assert s.weights.min() >= lo - 1e-6 and s.weights.max() <= hi + 1e-6
    torch.testing.assert_close(s.weights, s.gates)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "authors"])
def test_gradcheck(variant):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    q0 = torch.randn(1, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    q1 = torch.randn(1, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    b0 = torch.randn(1, dtype=torch.float64, generator=gen, requires_grad=True)
    b1 = torch.randn(1, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)

    def fn(x, q0, q1, b0, b1):
        s = RF.self_attention_pool(x, q0, b0, mask, variant=variant)
        r = RF.relation_attention_pool(x, s.pooled, s.gates, q1, b1, mask, variant=variant)
        return (*s, *r)

    assert torch.autograd.gradcheck(fn, (x, q0, q1, b0, b1))


def test_all_masked_rows_are_zero_with_finite_gradients(device):
    x = torch.randn(2, 4, 6, device=device, requires_grad=True)
    mask = torch.tensor([[0, 0, 0, 0], [1, 0, 1, 1]], dtype=torch.bool, device=device)
    sa, ra = SelfAttentionPool(6, device=device), RelationAttentionPool(6, device=device)
    s = sa(x, mask)
    r = ra(x, s.pooled, s.gates, mask)
    for t in (*s, *r):
        assert torch.isfinite(t).all()
        assert (t[0] == 0).all()
    (s.pooled.sum() + r.pooled.sum() + s.gates.sum() + r.weights.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0] == 0).all()  # an empty row gets no gradient
    assert (x.grad[1, 1] == 0).all()  # nor does a masked region
    for p in (*sa.parameters(), *ra.parameters()):
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e3])
@pytest.mark.parametrize("variant", ["paper", "authors"])
def test_low_precision_stays_finite(device, half, scale, variant):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(8, 6, 512, generator=gen) * scale).to(device=device, dtype=half).requires_grad_()
    mask = torch.rand(8, 6, generator=gen).to(device) > 0.3
    mask[0] = False
    sa = SelfAttentionPool(512, variant=variant, device=device, dtype=half)
    ra = RelationAttentionPool(512, variant=variant, device=device, dtype=half)
    s = sa(x, mask)
    r = ra(x, s.pooled, s.gates, mask)
    for t in (*s, *r):
        assert torch.isfinite(t).all(), t
    present = mask.any(1)
    torch.testing.assert_close(r.weights.sum(1)[present], torch.ones_like(r.weights.sum(1)[present]))
    (r.pooled.float().square().mean() + s.gates.sum()).backward()
    assert torch.isfinite(x.grad).all()
    # agrees with float32 math on the same (rounded) inputs
    s32 = RF.self_attention_pool(x.detach().float(), sa.query.weight.float(), None, mask, variant=variant)
    torch.testing.assert_close(s.weights, s32.weights, atol=2e-2, rtol=2e-2)


def test_naive_division_would_fail_in_half():
    """Documents why the log-space form exists: the naive one produces NaN where ours does not."""
    x = torch.full((1, 3, 4), -300.0, dtype=torch.float16)
    q = torch.ones(1, 4, dtype=torch.float16)
    mu = torch.sigmoid((x * q).sum(-1))
    naive = mu / mu.sum(-1, keepdim=True)
    assert torch.isnan(naive).any()
    s = RF.self_attention_pool(x, q)
    assert torch.isfinite(s.weights).all()
    torch.testing.assert_close(s.weights, torch.full((1, 3), 1 / 3))


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_autocast(device, amp_dtype):
    if device == "cpu" and amp_dtype == torch.float16:
        pytest.skip("CPU autocast targets bfloat16")
    backbone = torch.nn.Linear(32, 64, device=device)
    sa = SelfAttentionPool(64, device=device)
    ra = RelationAttentionPool(64, device=device)
    x = torch.randn(4, 6, 32, device=device) * 1e3
    with torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype):
        feats = backbone(x)
        s = sa(feats)
        r = ra(feats, s.pooled, s.gates)
    assert feats.dtype == amp_dtype
    for t in (*s, *r):
        assert torch.isfinite(t).all()
    assert s.weights.dtype == torch.float32


# ----------------------------------------------------------------------------------------------------------
# Set-pooling properties
# ----------------------------------------------------------------------------------------------------------

_shapes = st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 6))


@settings(max_examples=40, deadline=None)
@given(shape=_shapes, seed=st.integers(0, 2**16), variant=st.sampled_from(["paper", "authors"]))
def test_permuting_regions_permutes_weights(shape, seed, variant):
    bsz, k, d = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen)
    mask = torch.rand(bsz, k, generator=gen) > 0.3
    perm = torch.randperm(k, generator=gen)
    sa = SelfAttentionPool(d, bias=True, variant=variant, dtype=torch.float64)
    ra = RelationAttentionPool(d, bias=True, variant=variant, dtype=torch.float64)
    s, s_p = sa(x, mask), sa(x[:, perm], mask[:, perm])
    r, r_p = ra(x, s.pooled, s.gates, mask), ra(x[:, perm], s_p.pooled, s_p.gates, mask[:, perm])
    torch.testing.assert_close(s_p.weights, s.weights[:, perm])
    torch.testing.assert_close(r_p.weights, r.weights[:, perm])
    torch.testing.assert_close(r_p.gates, r.gates[:, perm])
    torch.testing.assert_close(s_p.pooled, s.pooled)
    torch.testing.assert_close(r_p.pooled, r.pooled)


@settings(max_examples=40, deadline=None)
@given(
    shape=_shapes, extra=st.integers(1, 4), seed=st.integers(0, 2**16), variant=st.sampled_from(["paper", "authors"])
)
def test_masked_junk_regions_change_nothing(shape, extra, seed, variant):
    bsz, k, d = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen)
    junk = torch.randn(bsz, extra, d, dtype=torch.float64, generator=gen) * 1e6
    mask = torch.rand(bsz, k, generator=gen) > 0.3
    x2 = torch.cat([x, junk], 1)
    mask2 = torch.cat([mask, torch.zeros(bsz, extra, dtype=torch.bool)], 1)
    sa = SelfAttentionPool(d, bias=True, variant=variant, dtype=torch.float64)
    ra = RelationAttentionPool(d, bias=True, variant=variant, dtype=torch.float64)
    s, s2 = sa(x, mask), sa(x2, mask2)
    r, r2 = ra(x, s.pooled, s.gates, mask), ra(x2, s2.pooled, s2.gates, mask2)
    for a, b in zip((*s, *r), (*s2, *r2), strict=True):
        if a.dim() == 2 and a.shape[1] == k:
            assert (b[:, k:] == 0).all()
            b = b[:, :k]
        torch.testing.assert_close(a, b)


@settings(max_examples=40, deadline=None)
@given(shape=_shapes, seed=st.integers(0, 2**16), variant=st.sampled_from(["paper", "authors"]))
def test_weights_on_the_simplex_and_masked_regions_get_no_gradient(shape, seed, variant):
    bsz, k, d = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(bsz, k, generator=gen) > 0.4
    sa = SelfAttentionPool(d, variant=variant, dtype=torch.float64)
    ra = RelationAttentionPool(d, variant=variant, dtype=torch.float64)
    s = sa(x, mask)
    r = ra(x, s.pooled, s.gates, mask)
    for w in (s.weights, r.weights):
        assert (w >= 0).all()
        assert (w[~mask] == 0).all()
        sums = w.sum(1)
        present = mask.any(1)
        torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))
        assert (sums[~present] == 0).all()
    (r.pooled.sum() + s.pooled.square().sum() + r.gates.sum()).backward()
    assert (x.grad[~mask] == 0).all()


def test_mask_none_equals_all_true():
    x = torch.randn(3, 5, 4)
    sa, ra = SelfAttentionPool(4), RelationAttentionPool(4)
    full = torch.ones(3, 5, dtype=torch.bool)
    s, s2 = sa(x), sa(x, full)
    r, r2 = ra(x, s.pooled, s.gates), ra(x, s2.pooled, s2.gates, full)
    for a, b in zip((*s, *r), (*s2, *r2), strict=True):
        torch.testing.assert_close(a, b)
