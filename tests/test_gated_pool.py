"""GatedAttentionPool / gated_attention_pool / pad_bags against a float64 loop over Ilse et al.'s Eq. 9 and
against torch_geometric's AttentionalAggregation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import region_attention.functional as RF
import region_attention.functional.gated as G
from region_attention import GatedAttentionOutput, GatedAttentionPool, pad_bags

# ----------------------------------------------------------------------------------------------------------
# Independent reference: scalars and explicit sums, one bag and one head at a time, in float64
# ----------------------------------------------------------------------------------------------------------


def gated_reference(x, pool, mask=None):
    """(pooled, weights, scores) as float64 tensors with the shapes of the library's output."""
    x = x.double().cpu()
    bsz, k, d = x.shape
    V, bv = pool.V.weight.double().tolist(), pool.V.bias.double().tolist()
    U = bu = None
    if pool.U is not None:
        U, bu = pool.U.weight.double().tolist(), pool.U.bias.double().tolist()
    W, bw = pool.w.weight.double().tolist(), pool.w.bias.double().tolist()
    heads, hidden = len(W), len(V)
    pooled = torch.zeros(bsz, heads, d, dtype=torch.float64)
    weights = torch.zeros(bsz, k, heads, dtype=torch.float64)
    scores = torch.full((bsz, k, heads), -math.inf, dtype=torch.float64)
    for b in range(bsz):
        present = [i for i in range(k) if mask is None or bool(mask[b, i])]
        for h in range(heads):
            s = {}
            for i in present:
                xi = x[b, i].tolist()
                total = bw[h]
                for j in range(hidden):
                    gate = math.tanh(sum(V[j][c] * xi[c] for c in range(d)) + bv[j])
                    if U is not None:
                        gate *= 1 / (1 + math.exp(-(sum(U[j][c] * xi[c] for c in range(d)) + bu[j])))
                    total += W[h][j] * gate
                s[i] = total
            if not s:
                continue
            top = max(s.values())
            z = sum(math.exp(v - top) for v in s.values())
            for i in present:
                scores[b, i, h] = s[i]
                weights[b, i, h] = math.exp(s[i] - top) / z
                for c in range(d):
                    pooled[b, h, c] += weights[b, i, h] * float(x[b, i, c])
    if heads == 1:
        return pooled[:, 0], weights[..., 0], scores[..., 0]
    return pooled, weights, scores


def _pool(dim, hidden, heads, gated, device="cpu", dtype=torch.float32, seed=1):
    torch.manual_seed(seed)
    pool = GatedAttentionPool(dim, hidden, heads=heads, gated=gated, device=device, dtype=dtype)
    with torch.no_grad():  # a scoring vector large enough that the weights are far from uniform
        pool.w.weight.mul_(6)
    return pool


def _random_mask(bsz, k, gen, device="cpu"):
    mask = torch.rand(bsz, k, generator=gen) > 0.4
    mask[0] = False  # one empty bag
    if bsz > 1:
        mask[1] = True
    return mask.to(device)


def _all_rows(x, mask):
    """The plain path: every row scored and pooled (the reference of the present-rows gathering)."""
    return None


@pytest.fixture(params=["present-rows", "all-rows"])
def path(request, monkeypatch):
    """Run a test through the CPU scoring of the present rows only and through the plain all-rows path."""
    if request.param == "all-rows":
        monkeypatch.setattr(G, "_present", _all_rows)
    return request.param


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize(("bsz", "k", "d", "hidden"), [(1, 1, 1, 1), (3, 6, 5, 4), (2, 13, 3, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_float64_reference(device, dtype, tol, path, gated, heads, bsz, k, d, hidden, masked):
    gen = torch.Generator().manual_seed(bsz * 100 + k * 10 + d)
    x = torch.randn(bsz, k, d, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    mask = _random_mask(bsz, k, gen, device) if masked else None
    pool = _pool(d, hidden, heads, gated, device, dtype)
    out = pool(x, mask)
    assert isinstance(out, GatedAttentionOutput)
    ref = gated_reference(x, pool, None if mask is None else mask.cpu())
    for name, got, exp in zip(("pooled", "weights", "scores"), out, ref, strict=True):
        assert got.shape == exp.shape, name
        torch.testing.assert_close(got.double().cpu(), exp, **tol, msg=lambda m, name=name: f"{name}: {m}")
    assert out.pooled.dtype == dtype
    assert out.weights.dtype == out.scores.dtype == torch.promote_types(dtype, torch.float32)


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("layout", ["none", "prefix", "scattered", "all"])
def test_present_rows_and_plain_paths_agree_with_gradients(monkeypatch, gated, heads, layout):
    """Scoring the gathered present rows equals scoring every row (the plain path), values and every
    gradient, in float64."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, 9, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = {
        "none": None,
        "prefix": torch.arange(9) < torch.tensor([[9], [3], [0], [6]]),
        "scattered": torch.rand(4, 9, generator=gen) > 0.5,
        "all": torch.ones(4, 9, dtype=torch.bool),
    }[layout]
    pool = _pool(6, 5, heads, gated, dtype=torch.float64)
    results = []
    original = G._present
    for present in (original, _all_rows):
        monkeypatch.setattr(G, "_present", present)
        x.grad = None
        pool.zero_grad()
        out = pool(x, mask)
        (out.pooled.square().sum() + out.weights.sin().sum()).backward()
        results.append([*out, x.grad.clone(), *(p.grad.clone() for p in pool.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_functional_equals_module(device):
    x = torch.randn(3, 5, 7, device=device)
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool, device=device)
    for gated, heads in ((True, 1), (False, 1), (True, 4)):
        pool = GatedAttentionPool(7, 6, heads=heads, gated=gated, device=device)
        out = pool(x, mask)
        ref = RF.gated_attention_pool(
            x,
            pool.V.weight,
            pool.w.weight,
            mask,
            v_bias=pool.V.bias,
            u_weight=None if pool.U is None else pool.U.weight,
            u_bias=None if pool.U is None else pool.U.bias,
            w_bias=pool.w.bias,
        )
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_biases_are_optional():
    """Without biases the functional computes w^T (tanh(V x) * sigmoid(U x)) exactly."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen)
    v, u, w = (torch.randn(5, 3, dtype=torch.float64, generator=gen) for _ in range(2)), None, None
    v, u = tuple(v)
    w = torch.randn(1, 5, dtype=torch.float64, generator=gen)
    out = RF.gated_attention_pool(x, v, w, u_weight=u)
    s = ((torch.tanh(x @ v.T) * torch.sigmoid(x @ u.T)) @ w.T)[..., 0]
    torch.testing.assert_close(out.scores, s)
    torch.testing.assert_close(out.weights, s.softmax(1))


# ----------------------------------------------------------------------------------------------------------
# torch_geometric's AttentionalAggregation with a gate_nn built from the same weights
# ----------------------------------------------------------------------------------------------------------


class _Gate(torch.nn.Module):
    """gate_nn for PyG: the same V, U and one row (head) of w as our pool, shared, not copied."""

    def __init__(self, pool: GatedAttentionPool, head: int) -> None:
        super().__init__()
        self.pool, self.head = pool, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pool
        g = torch.tanh(p.V(x))
        if p.U is not None:
            g = g * torch.sigmoid(p.U(x))
        return g @ p.w.weight[self.head : self.head + 1].T + p.w.bias[self.head]


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("heads", [1, 3])
def test_matches_torch_geometric_on_ragged_bags(gated, heads):
    """Ragged bags as an index vector for PyG, padded with a mask for us; values and parameter gradients.

    PyG's aggregation takes a gate with one output per node (or per feature), so each head is its own
    AttentionalAggregation whose gate_nn is our V, U and that head's row of w."""
    pyg = pytest.importorskip("torch_geometric")
    from torch_geometric.nn.aggr import AttentionalAggregation
    from torch_geometric.utils import softmax as pyg_softmax

    gen = torch.Generator().manual_seed(3)
    sizes = [5, 1, 12, 7, 3]
    bags = [torch.randn(n, 8, dtype=torch.float64, generator=gen) for n in sizes]
    pool = _pool(8, 6, heads, gated, dtype=torch.float64)
    flat = torch.cat(bags)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x, mask = pad_bags(bags)
    out = pool(x, mask)
    pooled = out.pooled.reshape(len(sizes), heads, 8)
    weights = out.weights.reshape(len(sizes), -1, heads)
    loss_ours = pooled.square().sum()
    loss_pyg = 0
    for h in range(heads):
        gate = _Gate(pool, h)
        expected = AttentionalAggregation(gate)(flat, index, dim_size=len(sizes))
        torch.testing.assert_close(pooled[:, h], expected)
        exp_w = pyg_softmax(gate(flat), index, num_nodes=len(sizes))[:, 0]
        torch.testing.assert_close(weights[mask][:, h], exp_w)
        loss_pyg = loss_pyg + expected.square().sum()
    ours = torch.autograd.grad(loss_ours, list(pool.parameters()))
    theirs = torch.autograd.grad(loss_pyg, list(pool.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert pyg.__version__


# ----------------------------------------------------------------------------------------------------------
# Numerics: empty bags, half precision, gradcheck, autocast, dropout
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 2])
def test_empty_bags_pool_to_zero_with_finite_gradients(device, path, heads):
    x = torch.randn(2, 4, 6, device=device, requires_grad=True)
    mask = torch.tensor([[0, 0, 0, 0], [1, 0, 1, 1]], dtype=torch.bool, device=device)
    pool = GatedAttentionPool(6, 5, heads=heads, device=device)
    out = pool(x, mask)
    assert (out.pooled[0] == 0).all() and (out.weights[0] == 0).all()
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.weights).all()
    assert (out.scores[0] == -math.inf).all() and torch.isfinite(out.scores[1][mask[1]]).all()
    (out.pooled.sum() + out.weights.square().sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0] == 0).all()  # an empty bag gets no gradient
    assert (x.grad[1, 1] == 0).all()  # nor does a masked instance
    for p in pool.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e3])
@pytest.mark.parametrize("heads", [1, 4])
def test_low_precision_stays_finite(device, half, scale, heads):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(8, 6, 512, generator=gen) * scale).to(device=device, dtype=half).requires_grad_()
    mask = torch.rand(8, 6, generator=gen).to(device) > 0.3
    mask[0] = False
    pool = GatedAttentionPool(512, 128, heads=heads, device=device, dtype=half)
    out = pool(x, mask)
    assert out.pooled.dtype == half and out.weights.dtype == torch.float32
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.weights).all()
    sums = out.weights.reshape(8, 6, heads).sum(1)[mask.any(1)]
    torch.testing.assert_close(sums, torch.ones_like(sums))
    (out.pooled.float().square().mean() + out.weights.sum()).backward()
    assert torch.isfinite(x.grad).all()
    # (The gradient of V at features of 1e3 is itself beyond float16's range: train half-precision features
    # with float32 parameters, or under autocast, as usual.)
    # agrees with float32 math on the same (rounded) inputs and parameters
    ref = GatedAttentionPool(512, 128, heads=heads, device=device)
    ref.load_state_dict({k: v.float() for k, v in pool.state_dict().items()})
    out32 = ref(x.detach().float(), mask)
    torch.testing.assert_close(out.weights, out32.weights, atol=3e-2, rtol=3e-2)


def test_half_features_with_float32_parameters_train_finite(device):
    x = (torch.randn(4, 6, 512) * 1e3).to(device=device, dtype=torch.float16)
    pool = GatedAttentionPool(512, 128, heads=2, device=device)
    out = pool(x)
    assert out.pooled.dtype == torch.float16 and torch.isfinite(out.pooled).all()
    out.pooled.float().square().mean().backward()
    for p in pool.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.slow
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("heads", [1, 2])
def test_gradcheck(path, gated, heads):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    shapes = {"v": (5, 3), "vb": (5,), "u": (5, 3), "ub": (5,), "w": (heads, 5), "wb": (heads,)}
    params = {n: torch.randn(*s, dtype=torch.float64, generator=gen, requires_grad=True) for n, s in shapes.items()}
    if not gated:
        del params["u"], params["ub"]

    def fn(x, *values):
        p = dict(zip(params, values, strict=True))
        out = RF.gated_attention_pool(
            x, p["v"], p["w"], mask, v_bias=p["vb"], u_weight=p.get("u"), u_bias=p.get("ub"), w_bias=p["wb"]
        )
        return out.pooled, out.weights

    assert torch.autograd.gradcheck(fn, (x, *params.values()))


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_autocast(device, amp_dtype):
    if device == "cpu" and amp_dtype == torch.float16:
        pytest.skip("CPU autocast targets bfloat16")
    backbone = torch.nn.Linear(32, 64, device=device)
    pool = GatedAttentionPool(64, 16, device=device)
    x = torch.randn(4, 6, 32, device=device) * 1e3
    mask = torch.rand(4, 6, device=device) > 0.3
    with torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype):
        out = pool(backbone(x), mask)
    assert all(torch.isfinite(t[mask if t.dim() == 2 and t.shape[1] == 6 else ...]).all() for t in out)
    assert out.weights.dtype == torch.float32


def test_dropout_only_in_training_and_only_on_the_pooling_weights():
    x = torch.randn(3, 50, 4)
    pool = GatedAttentionPool(4, 8, dropout=0.5)
    pool.eval()
    ref = pool(x)
    torch.testing.assert_close(pool(x).pooled, ref.pooled, rtol=0, atol=0)
    pool.train()
    torch.manual_seed(0)
    out = pool(x)
    torch.testing.assert_close(out.weights, ref.weights, rtol=0, atol=0)  # returned before dropout
    torch.testing.assert_close(out.scores, ref.scores, rtol=0, atol=0)
    torch.manual_seed(0)
    kept = torch.nn.functional.dropout(ref.weights, 0.5, training=True)
    assert (kept == 0).any()
    torch.testing.assert_close(out.pooled, torch.einsum("bk,bkd->bd", kept, x))
    assert not torch.allclose(out.pooled, ref.pooled)


def test_multi_head_is_independent_heads():
    """Each head equals a one-head pool with that row of w."""
    x = torch.randn(2, 7, 5)
    mask = torch.rand(2, 7) > 0.3
    pool = GatedAttentionPool(5, 6, heads=3)
    out = pool(x, mask)
    assert out.pooled.shape == (2, 3, 5) and out.weights.shape == out.scores.shape == (2, 7, 3)
    for h in range(3):
        single = GatedAttentionPool(5, 6)
        state = {k: v for k, v in pool.state_dict().items() if not k.startswith("w.")}
        state |= {"w.weight": pool.w.weight[h : h + 1], "w.bias": pool.w.bias[h : h + 1]}
        single.load_state_dict(state)
        one = single(x, mask)
        torch.testing.assert_close(out.pooled[:, h], one.pooled)
        torch.testing.assert_close(out.weights[..., h], one.weights)
        torch.testing.assert_close(out.scores[..., h], one.scores)


def test_mask_none_equals_all_true():
    x = torch.randn(3, 5, 4)
    pool = GatedAttentionPool(4, 3, heads=2)
    for a, b in zip(pool(x), pool(x, torch.ones(3, 5, dtype=torch.bool)), strict=True):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------------------------------------
# Set-pooling properties
# ----------------------------------------------------------------------------------------------------------

_shapes = st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 6))
_configs = st.tuples(st.sampled_from([1, 3]), st.booleans())


@settings(max_examples=40, deadline=None)
@given(shape=_shapes, config=_configs, seed=st.integers(0, 2**16))
def test_permuting_instances_permutes_weights(shape, config, seed):
    bsz, k, d = shape
    heads, gated = config
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen)
    mask = torch.rand(bsz, k, generator=gen) > 0.3
    perm = torch.randperm(k, generator=gen)
    pool = GatedAttentionPool(d, 4, heads=heads, gated=gated, dtype=torch.float64)
    out, out_p = pool(x, mask), pool(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out_p.weights, out.weights[:, perm])
    torch.testing.assert_close(out_p.scores, out.scores[:, perm])
    torch.testing.assert_close(out_p.pooled, out.pooled)


@settings(max_examples=40, deadline=None)
@given(shape=_shapes, extra=st.integers(1, 4), config=_configs, seed=st.integers(0, 2**16))
def test_masked_junk_instances_change_nothing(shape, extra, config, seed):
    bsz, k, d = shape
    heads, gated = config
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen)
    junk = torch.randn(bsz, extra, d, dtype=torch.float64, generator=gen) * 1e6
    mask = torch.rand(bsz, k, generator=gen) > 0.3
    x2 = torch.cat([x, junk], 1)
    mask2 = torch.cat([mask, torch.zeros(bsz, extra, dtype=torch.bool)], 1)
    pool = GatedAttentionPool(d, 4, heads=heads, gated=gated, dtype=torch.float64)
    out, out2 = pool(x, mask), pool(x2, mask2)
    torch.testing.assert_close(out2.pooled, out.pooled)
    assert (out2.weights[:, k:] == 0).all() and (out2.scores[:, k:] == -math.inf).all()
    torch.testing.assert_close(out2.weights[:, :k], out.weights)
    torch.testing.assert_close(out2.scores[:, :k], out.scores)


@settings(max_examples=40, deadline=None)
@given(shape=_shapes, config=_configs, seed=st.integers(0, 2**16))
def test_weights_on_the_simplex_per_head_and_masked_instances_get_no_gradient(shape, config, seed):
    bsz, k, d = shape
    heads, gated = config
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, k, d, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(bsz, k, generator=gen) > 0.4
    pool = GatedAttentionPool(d, 4, heads=heads, gated=gated, dtype=torch.float64)
    out = pool(x, mask)
    w = out.weights.reshape(bsz, k, heads)
    assert (w >= 0).all()
    assert (w[~mask] == 0).all()
    sums = w.sum(1)  # (B, heads)
    present = mask.any(1)
    torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))
    assert (sums[~present] == 0).all()
    (
        out.pooled.square().sum() + out.weights.sum() + torch.where(torch.isinf(out.scores), 0, out.scores).sum()
    ).backward()
    assert (x.grad[~mask] == 0).all()


# ----------------------------------------------------------------------------------------------------------
# compile and export with dynamic B and K
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("heads", [1, 2])
def test_compile_fullgraph_dynamic(heads):
    pool = GatedAttentionPool(8, 6, heads=heads)
    compiled = torch.compile(pool, backend="eager", fullgraph=True, dynamic=True)
    for bsz, k in ((2, 3), (5, 6), (1, 9)):
        x = torch.randn(bsz, k, 8, requires_grad=True)
        mask = torch.rand(bsz, k) > 0.3
        got, exp = compiled(x, mask), pool(x, mask)
        for a, b in zip(got, exp, strict=True):
            torch.testing.assert_close(a, b)
        (gx,) = torch.autograd.grad(got.pooled.sum(), x)
        (ex,) = torch.autograd.grad(exp.pooled.sum(), x)
        torch.testing.assert_close(gx, ex)


@pytest.mark.slow
def test_export_dynamic_batch_and_instances():
    pool = GatedAttentionPool(8, 6, heads=2).eval()
    batch, instances = torch.export.Dim("batch", min=1), torch.export.Dim("instances", min=2)
    x = torch.randn(3, 6, 8)
    mask = torch.rand(3, 6) > 0.3
    program = torch.export.export(
        pool, (x, mask), dynamic_shapes={"x": {0: batch, 1: instances}, "mask": {0: batch, 1: instances}}
    )
    for bsz, k in ((2, 4), (7, 9)):
        x2, m2 = torch.randn(bsz, k, 8), torch.rand(bsz, k) > 0.3
        for a, b in zip(program.module()(x2, m2), pool(x2, m2), strict=True):
            torch.testing.assert_close(a, b)


def test_no_host_sync_in_forward(device):
    if device != "cuda":
        pytest.skip("host synchronisation is only observable on CUDA")
    pool = GatedAttentionPool(8, 6, heads=2, device=device)
    x = torch.randn(4, 6, 8, device=device)
    mask = torch.rand(4, 6, device=device) > 0.3
    torch.cuda.set_sync_debug_mode("error")
    try:
        pool(x, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------------------------------------
# Module API and pad_bags
# ----------------------------------------------------------------------------------------------------------


def test_reprs_are_pinned():
    assert repr(GatedAttentionPool(8, 4, heads=2, dropout=0.25)) == (
        "GatedAttentionPool(\n  dim=8, hidden=4, heads=2, gated=True, dropout=0.25\n"
        "  (V): Linear(in_features=8, out_features=4, bias=True)\n"
        "  (U): Linear(in_features=8, out_features=4, bias=True)\n"
        "  (w): Linear(in_features=4, out_features=2, bias=True)\n)"
    )
    assert repr(GatedAttentionPool(8, 4, gated=False)) == (
        "GatedAttentionPool(\n  dim=8, hidden=4, heads=1, gated=False, dropout=0.0\n"
        "  (V): Linear(in_features=8, out_features=4, bias=True)\n"
        "  (w): Linear(in_features=4, out_features=1, bias=True)\n)"
    )


def test_constructor_parameters_device_dtype_and_reset():
    pool = GatedAttentionPool(6, 5, heads=3, dtype=torch.float64)
    assert [n for n, _ in pool.named_parameters()] == ["V.weight", "V.bias", "U.weight", "U.bias", "w.weight", "w.bias"]
    assert all(p.dtype == torch.float64 for p in pool.parameters())
    assert pool.out_features == 6 and pool.w.weight.shape == (3, 5)
    plain = GatedAttentionPool(6, 5, gated=False)
    assert plain.U is None and [n for n, _ in plain.named_parameters()] == ["V.weight", "V.bias", "w.weight", "w.bias"]
    before = [p.detach().clone() for p in pool.parameters()]
    torch.manual_seed(123)
    pool.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, pool.parameters(), strict=True))
    assert pool.V.weight.abs().max() <= 1 / 6**0.5 and pool.w.weight.abs().max() <= 1 / 5**0.5
    assert GatedAttentionPool(4, device="meta").V.weight.device.type == "meta"


def test_pad_bags():
    bags = [torch.randn(3, 4), torch.randn(0, 4), torch.randn(5, 4)]
    x, mask = pad_bags(bags)
    assert x.shape == (3, 5, 4) and mask.dtype == torch.bool
    assert mask.tolist() == [[True] * 3 + [False] * 2, [False] * 5, [True] * 5]
    for i, bag in enumerate(bags):
        torch.testing.assert_close(x[i, : len(bag)], bag)  # plain slicing gives each bag back
        assert (x[i, len(bag) :] == 0).all()
    x, mask = pad_bags((torch.randn(0, 2),), padding_value=-1.0)
    assert x.shape == (1, 1, 2) and not mask.any() and (x == -1).all()
    bag = torch.randn(2, 3, requires_grad=True)
    pad_bags([bag, torch.randn(4, 3)])[0].sum().backward()
    torch.testing.assert_close(bag.grad, torch.ones(2, 3))


pool8 = GatedAttentionPool(8, 4)
x8 = torch.randn(2, 3, 8)
v8, w8 = torch.randn(4, 8), torch.randn(1, 4)

BAD_INPUT = [
    (
        "x wrong D",
        lambda: pool8(torch.randn(2, 3, 5)),
        ValueError,
        r"gated_attention_pool expected x of shape \(B, K, 8\) to match v_weight \(4, 8\), got \(2, 3, 5\)",
    ),
    ("x 2-D", lambda: pool8(torch.randn(3, 8)), ValueError, r"expected x of shape \(B, K, D\), got 2-D shape \(3, 8\)"),
    (
        "x integer",
        lambda: pool8(torch.ones(2, 3, 8, dtype=torch.long)),
        TypeError,
        r"floating point dtype, got torch.int64",
    ),
    ("K = 0", lambda: pool8(torch.randn(2, 0, 8)), ValueError, r"at least one region \(K >= 1\), got \(2, 0, 8\)"),
    (
        "mask shape",
        lambda: pool8(x8, torch.ones(2, 4, dtype=torch.bool)),
        ValueError,
        r"expected mask of shape \(2, 3\)",
    ),
    (
        "mask dtype",
        lambda: pool8(x8, torch.ones(2, 3)),
        TypeError,
        r"mask to be a bool tensor.*got dtype torch.float32",
    ),
    (
        "x device",
        lambda: GatedAttentionPool(8, device="meta")(x8),
        ValueError,
        r"expected v_weight on cpu like x, got meta",
    ),
    ("dim 0", lambda: GatedAttentionPool(0), ValueError, r"GatedAttentionPool expected dim > 0, got 0"),
    ("hidden float", lambda: GatedAttentionPool(8, 2.0), TypeError, r"expected hidden to be an int, got float"),
    ("heads 0", lambda: GatedAttentionPool(8, heads=0), ValueError, r"expected heads > 0, got 0"),
    ("gated int", lambda: GatedAttentionPool(8, gated=1), TypeError, r"expected gated to be a bool, got int"),
    ("dropout range", lambda: GatedAttentionPool(8, dropout=1.5), ValueError, r"expected dropout in \[0, 1\], got 1.5"),
    (
        "dropout type",
        lambda: GatedAttentionPool(8, dropout="0.1"),
        TypeError,
        r"expected dropout to be a float, got str",
    ),
    (
        "functional v_weight",
        lambda: RF.gated_attention_pool(x8, torch.randn(4, 7), w8),
        ValueError,
        r"gated_attention_pool expected x of shape \(B, K, 7\) to match v_weight \(4, 7\), got \(2, 3, 8\)",
    ),
    (
        "functional w_weight",
        lambda: RF.gated_attention_pool(x8, v8, torch.randn(1, 5)),
        ValueError,
        r"expected w_weight of shape \(\?, 4\), got \(1, 5\)",
    ),
    (
        "functional u_weight",
        lambda: RF.gated_attention_pool(x8, v8, w8, u_weight=torch.randn(3, 8)),
        ValueError,
        r"expected u_weight of shape \(4, 8\), got \(3, 8\)",
    ),
    (
        "functional v_bias",
        lambda: RF.gated_attention_pool(x8, v8, w8, v_bias=torch.randn(5)),
        ValueError,
        r"expected v_bias of shape \(4,\), got \(5,\)",
    ),
    (
        "functional w_bias",
        lambda: RF.gated_attention_pool(x8, v8, w8, w_bias=torch.randn(2)),
        ValueError,
        r"expected w_bias of shape \(1,\), got \(2,\)",
    ),
    (
        "functional u_bias without u",
        lambda: RF.gated_attention_pool(x8, v8, w8, u_bias=torch.randn(4)),
        ValueError,
        r"expected u_bias only with u_weight \(a gated pool\), got u_weight=None",
    ),
    (
        "functional weight integer",
        lambda: RF.gated_attention_pool(x8, v8.long(), w8),
        TypeError,
        r"expected v_weight to have a floating point dtype, got torch.int64",
    ),
    (
        "functional weight not tensor",
        lambda: RF.gated_attention_pool(x8, v8, [[1.0] * 4]),
        TypeError,
        r"expected w_weight to be a torch.Tensor, got list",
    ),
    (
        "functional weight device",
        lambda: RF.gated_attention_pool(x8, v8.to("meta"), w8),
        ValueError,
        r"expected v_weight on cpu like x, got meta",
    ),
    (
        "functional training",
        lambda: RF.gated_attention_pool(x8, v8, w8, training=1),
        TypeError,
        r"expected training to be a bool, got int",
    ),
    ("pad_bags empty", lambda: pad_bags([]), ValueError, r"pad_bags expected at least one bag, got an empty list"),
    (
        "pad_bags tensor",
        lambda: pad_bags(torch.randn(2, 3, 4)),
        TypeError,
        r"expected bags to be a list of \(K_i, D\) tensors, got Tensor",
    ),
    (
        "pad_bags element",
        lambda: pad_bags([torch.randn(2, 3), [1.0, 2.0]]),
        TypeError,
        r"expected bags\[1\] to be a torch.Tensor, got list",
    ),
    (
        "pad_bags ndim",
        lambda: pad_bags([torch.randn(2, 3), torch.randn(2, 3, 1)]),
        ValueError,
        r"expected bags\[1\] of shape \(K_1, D\), got 3-D shape \(2, 3, 1\)",
    ),
    (
        "pad_bags dim",
        lambda: pad_bags([torch.randn(2, 3), torch.randn(4, 5)]),
        ValueError,
        r"expected bags\[1\] of shape \(K_1, 3\) like bags\[0\], got \(4, 5\)",
    ),
    (
        "pad_bags dtype",
        lambda: pad_bags([torch.randn(2, 3), torch.randn(4, 3, dtype=torch.float64)]),
        TypeError,
        r"expected bags\[1\] of dtype torch.float32 like bags\[0\], got torch.float64",
    ),
    (
        "pad_bags device",
        lambda: pad_bags([torch.randn(2, 3), torch.randn(4, 3, device="meta")]),
        ValueError,
        r"expected bags\[1\] on cpu like bags\[0\], got meta",
    ),
    (
        "pad_bags padding_value",
        lambda: pad_bags([torch.randn(2, 3)], padding_value=None),
        TypeError,
        r"expected padding_value to be a float, got NoneType",
    ),
]


@pytest.mark.parametrize(("case", "fn", "exc", "pattern"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case, fn, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn()
