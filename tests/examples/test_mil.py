"""examples/mil/digits_bags.py: the bag rules of the MNIST-bags protocol, the AUC against independent references,
the pools' masks, the command line, and (slow) the --quick run end to end."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from examples.mil import digits_bags as mil
from sklearn.metrics import roc_auc_score

from ..background import python_code

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_TORCHMIL = mil.torchmil_available()
POOLS_HERE = [p for p in mil.POOLS if p != "torchmil_gated" or HAS_TORCHMIL]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, np.ndarray]:
    return mil.load_digits_data()


# ----------------------------------------------------------------------------------------------------- the data


def test_digits_are_the_bundled_8x8_set(digits):
    images, targets = digits
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert sorted(np.unique(targets).tolist()) == list(range(10))


@pytest.mark.parametrize("seed", [0, 3])
def test_split_is_disjoint_complete_and_stratified(digits, seed):
    _, targets = digits
    train, test = mil.split_pools(targets, seed)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(targets)))
    for d in range(10):
        count = int((targets == d).sum())
        assert int((targets[test] == d).sum()) == round(0.5 * count)
    again = mil.split_pools(targets, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    other = mil.split_pools(targets, seed + 1)
    assert not np.array_equal(other[0], train)


def test_split_rejects_a_bad_fraction(digits):
    with pytest.raises(ValueError, match="test_fraction"):
        mil.split_pools(digits[1], 0, test_fraction=1.0)


def test_bags_follow_the_protocol(digits):
    _, targets = digits
    train, _ = mil.split_pools(targets, 0)
    # mean 2, std 5: most normal draws fall below 2, so the lower bound is exercised
    bags = mil.make_bags(train, targets, 301, 2.0, 5.0, np.random.default_rng(0))
    lengths = np.array([len(b) for b in bags.indices])
    assert lengths.min() == 2 and (lengths == 2).mean() > 0.5
    assert int(bags.labels.sum()) == 151  # ceil(301 / 2) positive bags
    for idx, label, inst in zip(bags.indices, bags.labels, bags.instance_labels, strict=True):
        assert np.isin(idx, train).all()  # only digits of the pool
        assert np.array_equal(inst, targets[idx] == 9)
        assert label == float((targets[idx] == 9).any())  # positive iff at least one 9


@pytest.mark.parametrize(("mean", "std"), [(10, 2), (100, 20)])
def test_bag_lengths_are_int_of_normal_draws(digits, mean, std):
    _, targets = digits
    train, _ = mil.split_pools(targets, 0)
    bags = mil.make_bags(train, targets, 400, mean, std, np.random.default_rng(1))
    lengths = np.array([len(b) for b in bags.indices])
    # int() truncates a normal(mean, std) draw: the average is about mean - 0.5
    assert abs(lengths.mean() - (mean - 0.5)) < 4 * std / math.sqrt(400)
    assert abs(lengths.std() - std) < 0.2 * std


def test_bags_are_deterministic_per_seed(digits):
    _, targets = digits
    train, _ = mil.split_pools(targets, 0)
    a = mil.make_bags(train, targets, 20, 10, 2, np.random.default_rng([5, 2]))
    b = mil.make_bags(train, targets, 20, 10, 2, np.random.default_rng([5, 2]))
    c = mil.make_bags(train, targets, 20, 10, 2, np.random.default_rng([6, 2]))
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices, strict=True))
    assert np.array_equal(a.labels, b.labels)
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a.indices, c.indices, strict=True))


def test_training_and_test_bags_never_share_digits():
    proto = mil.Protocol(test_bags=200)
    spec = mil.RunSpec("mean", 50, 100, 1)
    train_pool, test_pool = mil._Data.split(1, proto.test_fraction)
    train = mil.train_bags_for(spec, proto)
    test = mil._Data.test_bags(1, 50, proto)[0]
    train_digits = np.unique(np.concatenate(train.indices))
    test_digits = np.unique(np.concatenate(test.indices))
    assert len(np.intersect1d(train_digits, test_digits)) == 0
    assert np.isin(train_digits, train_pool).all() and np.isin(test_digits, test_pool).all()
    assert int(test.labels.sum()) == 100  # balanced
    # the same training bags for every pool of a (seed, bag mean, size)
    other = mil.train_bags_for(spec._replace(pool="ran_relation"), proto)
    assert all(np.array_equal(x, y) for x, y in zip(train.indices, other.indices, strict=True))


def test_make_bags_rejects_bad_arguments(digits):
    _, targets = digits
    pool = np.arange(100)
    with pytest.raises(ValueError, match="count"):
        mil.make_bags(pool, targets, 0, 10, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mean"):
        mil.make_bags(pool, targets, 5, 0, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="digits 9"):
        mil.make_bags(np.flatnonzero(targets != 9), targets, 5, 10, 2, np.random.default_rng(0))


def test_pad_indices():
    idx, mask = mil.pad_indices([np.array([4, 5]), np.array([7, 8, 9])])
    assert idx.tolist() == [[4, 5, 0], [7, 8, 9]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]


# ------------------------------------------------------------------------------------------------------ metrics


def pairwise_auc(labels, scores) -> float:
    """The definition, in float64 loops: P(score of a positive > score of a negative), ties one half."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    neg = [s for y, s in zip(labels, scores, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_the_pairwise_definition_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 5, n).astype(float) if seed % 2 else rng.normal(size=n)  # with and without ties
    auc = mil.roc_auc(labels, scores)
    assert auc == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_edge_cases():
    assert mil.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert mil.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert mil.roc_auc([0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        mil.roc_auc([1, 1], [0.3, 0.4])
    with pytest.raises(ValueError, match="same 1-D shape"):
        mil.roc_auc([0, 1], [0.3])
    with pytest.raises(ValueError, match="finite"):
        mil.roc_auc([0, 1], [0.3, float("nan")])


def test_instance_auc_averages_over_positive_bags_with_both_classes():
    bags = mil.Bags(
        indices=[np.zeros(3, dtype=np.int64)] * 4,
        labels=np.array([1, 1, 0, 1], dtype=np.float32),
        instance_labels=[
            np.array([True, False, False]),
            np.array([False, True, True]),
            np.array([False, False, False]),  # negative: left out
            np.array([True, True, True]),  # only 9s: left out
        ],
    )
    weights = [np.array([0.8, 0.1, 0.1]), np.array([0.5, 0.2, 0.3]), np.array([1.0, 0, 0]), np.ones(3) / 3]
    # bag 0 ranks its 9 first (AUC 1); bag 1 ranks its non-9 above both 9s (AUC 0)
    assert mil.instance_auc(weights, bags) == 0.5
    assert mil.instance_auc(weights[2:], mil.Bags(bags.indices[2:], bags.labels[2:], bags.instance_labels[2:])) is None


# -------------------------------------------------------------------------------------------------------- pools


def _ragged_batch(features: int = 64) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bags = [torch.rand(k, features, generator=g) for k in (2, 5, 3)]
    x = torch.full((3, 5, features), 7.0)  # padding that would change every pool that reads it
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = b
        mask[i, : len(b)] = True
    return bags, x, mask


@pytest.mark.parametrize("pool", POOLS_HERE)
def test_pools_give_one_logit_per_bag_and_ignore_padding(pool):
    torch.manual_seed(0)
    model = mil.BagClassifier(pool).eval()
    bags, x, mask = _ragged_batch()
    with torch.no_grad():
        logits, weights = model(x, mask)
        assert logits.shape == (3,)
        for i, b in enumerate(bags):  # each bag alone, unpadded, gives the same logit
            alone, w_alone = model(b.unsqueeze(0), torch.ones(1, len(b), dtype=torch.bool))
            torch.testing.assert_close(logits[i], alone[0], rtol=1e-5, atol=1e-6)
            if weights is not None:
                torch.testing.assert_close(weights[i, : len(b)].float(), w_alone[0].float(), rtol=1e-5, atol=1e-6)
    if pool in mil.ATTENTION_POOLS:
        assert weights is not None and weights.shape == (3, 5)
        assert weights[~mask].abs().sum() == 0
        torch.testing.assert_close(weights.sum(1).float(), torch.ones(3))
    else:
        assert weights is None


@pytest.mark.parametrize("pool", POOLS_HERE)
def test_pools_are_permutation_invariant(pool):
    torch.manual_seed(1)
    model = mil.BagClassifier(pool).eval()
    x = torch.rand(2, 6, 64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        a, wa = model(x, mask)
        b, wb = model(x[:, perm], mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if wa is not None:
        torch.testing.assert_close(wa[:, perm], wb, rtol=1e-5, atol=1e-6)


def test_mean_and_max_pools_against_plain_slicing():
    bags, x, mask = _ragged_batch()
    for name, reduce in (("mean", lambda b: b.mean(0)), ("max", lambda b: b.amax(0))):
        model = mil.BagClassifier(name)
        captured = []
        model.classifier.register_forward_hook(lambda _m, inp, _out, c=captured: c.append(inp[0]))
        with torch.no_grad():
            model(x, mask)
        expected = torch.stack([reduce(b) for b in bags])
        torch.testing.assert_close(captured[0], expected)


def test_ran_relation_classifies_p_ran():
    """The relation row reads P_RAN = [sum_i w_i F_i : F_m] (2 x features), the relation pool's output."""
    torch.manual_seed(0)
    model = mil.BagClassifier("ran_relation", features=16)
    assert model.classifier.in_features == 32
    x = torch.rand(2, 4, 16)
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    captured = []
    model.classifier.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
    with torch.no_grad():
        model(x, mask)
        s = model.pool(x, mask)
        r = model.relation(x, s.pooled, s.gates, mask)
    torch.testing.assert_close(captured[0], r.pooled)
    torch.testing.assert_close(captured[0][:, 16:], s.pooled)  # the second half is F_m


def test_encoding_distinct_digits_once_gives_the_same_gradient():
    """The training step encodes each distinct digit of a batch once and gathers: the same gradient as encoding
    every instance (this breaks if the encoder gets batch statistics)."""
    torch.manual_seed(0)
    images = torch.rand(10, 1, 8, 8)
    idx = torch.tensor([[1, 3, 3, 7], [7, 1, 2, 2]])
    grads = []
    for dedup in (False, True):
        torch.manual_seed(0)
        enc = mil.make_encoder(16)
        if dedup:
            unique, inverse = torch.unique(idx, return_inverse=True)
            feats = enc(images[unique])[inverse]
        else:
            feats = enc(images[idx.flatten()]).view(2, 4, 16)
        (feats.sin().sum()).backward()
        grads.append([p.grad.clone() for p in enc.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_unknown_pool_is_a_value_error():
    with pytest.raises(ValueError, match="pool"):
        mil.BagClassifier("attn")


def test_a_run_is_deterministic_and_learns_something():
    proto = mil.Protocol(epochs=2, test_bags=60, batch_size=8, lr=2e-3)
    spec = mil.RunSpec("gated_attention", 10, 32, 0)
    a, b = mil.run_one(spec, proto), mil.run_one(spec, proto)
    assert set(a) == set(mil.RESULT_KEYS)
    assert a["bag_auc"] == b["bag_auc"] and a["instance_auc"] == b["instance_auc"]
    assert 0.0 <= a["bag_auc"] <= 1.0 and 0.0 <= a["instance_auc"] <= 1.0
    assert mil.run_one(spec._replace(pool="max"), proto)["instance_auc"] is None


# -------------------------------------------------------------------------------------------------- the script


TINY = ["--bag-means", "10", "--train-bags", "8", "--seeds", "1", "--epochs", "1", "--test-bags", "20",
        "--workers", "1", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--quick", "--seeds", "3"], "--quick sets"),
        (["--pools", "mean,attn"], "unknown pool 'attn'"),
        (["--pools", "mean,mean"], "distinct"),
        (["--bag-means", "10,x"], "comma-separated integers"),
        (["--train-bags", "0"], "positive"),
        (["--batch-size", "0"], "positive integer"),
        (["--lr", "-1"], "positive number"),
        (["--resume"], "--resume needs --json"),
        (["--json", "no/such/folder/r.json"], "does not exist"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_command_line_mistakes_are_one_line_and_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        mil.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and needle in err[0], err


def test_json_exists_resume_and_config_mismatch(tmp_path, capsys):
    out = tmp_path / "r.json"
    first = mil.main([*TINY, "--pools", "mean", "--json", str(out)])
    assert [r["pool"] for r in first["results"]] == ["mean"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as e:  # never overwrite finished runs silently
        mil.main([*TINY, "--pools", "mean", "--json", str(out)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    second = mil.main([*TINY, "--pools", "mean,max", "--json", str(out), "--resume"])
    assert "1 runs kept" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert [r["pool"] for r in saved["results"]] == ["mean", "max"]
    assert saved["results"] == second["results"]  # returned in table order, as written
    assert saved["results"][0] == first["results"][0]  # kept as it was, not rerun
    assert second["results"][0] == first["results"][0]
    with pytest.raises(SystemExit) as e:
        mil.main([*TINY, "--epochs", "2", "--pools", "mean", "--json", str(out), "--resume"])
    assert e.value.code == 2 and "another epochs" in capsys.readouterr().err


def test_missing_torchmil_is_a_printed_note(monkeypatch, capsys):
    monkeypatch.setattr(mil, "torchmil_available", lambda: False)
    result = mil.main([*TINY, "--pools", "mean,torchmil_gated"])
    assert "torchmil is not installed" in capsys.readouterr().out
    assert [r["pool"] for r in result["results"]] == ["mean"]
    with pytest.raises(SystemExit) as e:
        mil.main([*TINY, "--pools", "torchmil_gated"])
    assert e.value.code == 2


#: The --quick run, as the test below called it, writing what ``main`` returns next to its JSON.
QUICK = """
import json, torch
from examples.mil import digits_bags as mil
torch.set_num_threads(1)
returned = mil.main(sys.argv[1:])
with open("returned.json", "w") as f:
    json.dump(returned["results"], f)
"""


def quick_run(folder):
    return python_code(QUICK, "--quick", "--json", str(folder / "quick.json"), "--no-progress")


#: The --quick run takes a quarter of a minute in a process of its own: it runs while the suite does
#: (tests/background.py), on the core the one-thread tests leave idle.
BACKGROUND = {"test_quick_run_end_to_end": quick_run}


@pytest.mark.slow
def test_quick_run_end_to_end(request, background):
    done = background.result(request.node)
    assert done.returncode == 0, done.stderr
    tmp_path = background.folder(request.node)
    out = tmp_path / "quick.json"
    result = {"results": json.loads((tmp_path / "returned.json").read_text())}
    saved = json.loads(out.read_text())
    assert saved["results"] == result["results"]
    config = saved["config"]
    assert config["bag_means"] == [10] and config["train_bags"] == [50, 150] and config["seeds"] == 2
    assert config["epochs"] == 20 and config["test_bags"] == 1000 and config["batch_size"] == mil.Protocol.batch_size
    runs = saved["results"]
    assert len(runs) == len(POOLS_HERE) * 2 * 2
    assert {r["pool"] for r in runs} == set(POOLS_HERE)
    for r in runs:
        assert list(r) == list(mil.RESULT_KEYS)
        assert 0.0 <= r["bag_auc"] <= 1.0 and r["seconds"] > 0
        assert (r["instance_auc"] is None) == (r["pool"] in ("mean", "max"))
    # with 150 training bags every attention pool finds the 9s and classifies the bags well
    for pool in mil.ATTENTION_POOLS:
        sel = [r for r in runs if r["pool"] == pool and r["train_bags"] == 150]
        if sel:
            assert np.mean([r["bag_auc"] for r in sel]) > 0.85, pool
            assert np.mean([r["instance_auc"] for r in sel]) > 0.8, pool
    printed = done.stdout
    assert "bag_auc, bag mean 10" in printed and "instance_auc" in printed and "±" in printed
    assert (tmp_path / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
