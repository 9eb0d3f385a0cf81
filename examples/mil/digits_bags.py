"""Attention-MIL on the MNIST-bags protocol of Ilse et al. (ICML 2018), with scikit-learn's bundled 8 x 8 digits.

    python examples/mil/digits_bags.py --json runs/mil/digits_bags.json          # the full protocol
    python examples/mil/digits_bags.py --quick --json runs/mil/quick.json        # 1 bag mean, 2 sizes, 2 seeds
    python examples/mil/digits_bags.py --pools gated_attention,ran_relation --bag-means 10 --seeds 3

A bag is positive when it holds at least one 9. Bag lengths are int(normal(mean, mean / 5)), at least 2, with
mean 10, 50 or 100 (standard deviation 2, 10, 20). The 1,797 digits are split per seed into disjoint training and
test pools (stratified by digit, half each); 50 to 500 training bags are drawn from the training pool and 1,000
test bags from the test pool. Half of the bags of every set are positive (see "Balanced bags" below).

Every pool gets the same instance encoder (a LeNet scaled down to 8 x 8 inputs), the same linear classifier on the
pooled feature, the same optimiser (Adam, lr 5e-4, betas (0.9, 0.999), weight decay 1e-4) and the same epochs
(20); within a seed all pools start from the same encoder weights and see the bags in the same order. Rows:

    mean, max          masked mean / max over the instances
    attention          GatedAttentionPool(gated=False), Ilse et al.'s attention
    gated_attention    GatedAttentionPool(gated=True), Ilse et al.'s gated attention
    ran_self           SelfAttentionPool (RAN Eq. 2-3)
    ran_relation       SelfAttentionPool, then RelationAttentionPool on its F_m and gates; the classifier reads
                       P_RAN = [sum_i w_i F_i : F_m] (RAN Eq. 4-5), 2 x the features
    torchmil_gated     torchmil's AttentionPool(gated=True), skipped with a note when torchmil is missing
                       (pip install --no-deps torchmil; its pools need only torch)

Metrics per run: the test bag AUC, and the instance AUC: the AUC of the pool's attention weights against "is a 9"
within each positive test bag that holds both 9s and other digits, averaged over those bags (null for mean/max).

Deviations from the authors' code, all in the JSON's config: mini-batches of --batch-size bags padded with masks
(the authors train one bag per step), balanced bag labels, bag lengths at least 2 (theirs: at least 1), and an
encoder scaled to 8 x 8 digits. Nothing downloads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from region_attention import GatedAttentionPool, RelationAttentionPool, SelfAttentionPool

#: The rows of the comparison, in table order.
POOLS = ("mean", "max", "attention", "gated_attention", "ran_self", "ran_relation", "torchmil_gated")
#: Pools that have attention weights (an instance AUC).
ATTENTION_POOLS = ("attention", "gated_attention", "ran_self", "ran_relation", "torchmil_gated")
#: The protocol's bag means; the standard deviation is a fifth of the mean (2, 10, 20).
BAG_MEANS = (10, 50, 100)
TRAIN_BAGS = (50, 100, 150, 200, 300, 400, 500)
TARGET_DIGIT = 9
#: --quick: one bag mean, two training-set sizes, two seeds.
QUICK: dict[str, Any] = {"bag_means": (10,), "train_bags": (50, 150), "seeds": 2}
FULL: dict[str, Any] = {"bag_means": BAG_MEANS, "train_bags": TRAIN_BAGS, "seeds": 5}

RESULT_KEYS = ("pool", "bag_mean", "train_bags", "seed", "bag_auc", "instance_auc", "seconds")


# --------------------------------------------------------------------------------------------------------- data


class Bags(NamedTuple):
    """A set of bags: the digits' indices into the whole data set, the bag labels and the instance labels."""

    indices: list[np.ndarray]  # per bag, int64 indices into the 1,797 images
    labels: np.ndarray  # (n,) float32, 1 = holds a TARGET_DIGIT
    instance_labels: list[np.ndarray]  # per bag, bool: is this instance a TARGET_DIGIT


def load_digits_data() -> tuple[Tensor, np.ndarray]:
    """scikit-learn's 8 x 8 digits (inside its wheel, nothing downloads): images ``(1797, 1, 8, 8)`` float32 in
    [0, 1] and their digits ``(1797,)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1)
    return images.contiguous(), np.asarray(digits.target, dtype=np.int64)


def split_pools(targets: np.ndarray, seed: int, test_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint training and test pools of image indices, stratified by digit, drawn from ``seed``.

    Each digit's images are shuffled and ``round(test_fraction * count)`` of them go to the test pool."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split_pools expected test_fraction in (0, 1), got {test_fraction}")
    rng = np.random.default_rng([seed, 1])
    train, test = [], []
    for digit in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == digit))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def bag_std(mean: int) -> float:
    """The protocol's standard deviation of the bag length: mean / 5 (2, 10, 20 for 10, 50, 100)."""
    return mean / 5.0


def make_bags(
    pool: np.ndarray,
    targets: np.ndarray,
    count: int,
    mean: float,
    std: float,
    rng: np.random.Generator,
    *,
    target: int = TARGET_DIGIT,
    min_length: int = 2,
) -> Bags:
    """``count`` bags of digits drawn uniformly with replacement from ``pool`` (indices into ``targets``).

    Lengths are ``max(min_length, int(rng.normal(mean, std)))``. Half the bags (``ceil(count / 2)``, in random
    order) are positive: a random bag of that length redrawn until it holds a ``target`` digit, i.e. a draw from
    the bags that hold one. The others are drawn from the pool's other digits, i.e. from the bags that hold
    none. Without the balance nearly every bag of mean length 50 or 100 would be positive (a tenth of the digits
    are 9s: 0.9^100 < 1e-4), and the test AUC would be undefined.
    """
    if count < 1:
        raise ValueError(f"make_bags expected count >= 1, got {count}")
    if mean <= 0 or std < 0:
        raise ValueError(f"make_bags expected mean > 0 and std >= 0, got mean={mean}, std={std}")
    pool = np.asarray(pool, dtype=np.int64)
    is_target = targets[pool] == target
    negatives = pool[~is_target]
    if not is_target.any() or len(negatives) == 0:
        raise ValueError(f"make_bags expected a pool with digits {target} and other digits")
    labels = np.zeros(count, dtype=np.float32)
    labels[: (count + 1) // 2] = 1.0
    labels = labels[rng.permutation(count)]
    indices, instance_labels = [], []
    for label in labels:
        length = max(min_length, int(rng.normal(mean, std)))
        if label:
            while True:
                bag = rng.choice(pool, size=length, replace=True)
                if (targets[bag] == target).any():
                    break
        else:
            bag = rng.choice(negatives, size=length, replace=True)
        indices.append(bag)
        instance_labels.append(targets[bag] == target)
    return Bags(indices, labels, instance_labels)


def pad_indices(indices: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Index bags padded to one ``(n, K_max)`` int64 tensor (padding: index 0) and the mask, True = present."""
    lengths = torch.tensor([len(b) for b in indices])
    k_max = int(lengths.max())
    idx = torch.zeros(len(indices), k_max, dtype=torch.int64)
    for i, bag in enumerate(indices):
        idx[i, : len(bag)] = torch.from_numpy(np.asarray(bag, dtype=np.int64))
    return idx, torch.arange(k_max) < lengths.unsqueeze(1)


# ------------------------------------------------------------------------------------------------------ metrics


def roc_auc(labels: Iterable[Any], scores: Iterable[Any]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative, ties
    counting one half (the Mann-Whitney statistic over average ranks), in float64."""
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(bool)
    s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"roc_auc expected labels and scores of the same 1-D shape, got {y.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("roc_auc expected finite scores")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc needs both classes, got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # tie groups: [start, end) of equal scores get the average of ranks start + 1 .. end
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def instance_auc(weights: Sequence[np.ndarray], bags: Bags) -> float | None:
    """Mean over the positive bags that hold both target and other digits of the AUC of the attention
    ``weights`` (one array per bag, its present instances) against "is a target digit"; None if no such bag."""
    aucs = []
    for w, label, inst in zip(weights, bags.labels, bags.instance_labels, strict=True):
        if label and 0 < inst.sum() < len(inst):
            aucs.append(roc_auc(inst, w))
    return float(np.mean(aucs)) if aucs else None


# -------------------------------------------------------------------------------------------------------- model


def make_encoder(features: int) -> nn.Sequential:
    """Ilse et al.'s LeNet (conv 5x5 20, pool, conv 5x5 50, pool, linear 500) scaled down to 8 x 8 digits:
    conv 3x3 8, pool, conv 3x3 16, pool, linear ``features``, each conv and the linear followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4 x 4
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 2 x 2
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, features),
        nn.ReLU(),
    )


def torchmil_available() -> bool:
    try:
        from torchmil.nn import AttentionPool  # noqa: F401
    except ImportError:
        return False
    return True


def _masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=1)


class BagClassifier(nn.Module):
    """Instance encoder, one of the pools, and a linear classifier giving one logit per bag.

    ``forward(feats, mask)`` takes encoded instances ``(B, K, features)`` and the mask ``(B, K)`` (True =
    present) and returns the logits ``(B,)`` and the attention weights ``(B, K)`` (None for mean and max).
    """

    def __init__(self, pool: str, features: int = 64, hidden: int = 32) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"BagClassifier expected pool in {POOLS}, got {pool!r}")
        self.pool_name = pool
        self.encoder = make_encoder(features)
        self.pool: nn.Module | None = None
        self.relation: RelationAttentionPool | None = None
        out = features
        if pool in ("attention", "gated_attention"):
            self.pool = GatedAttentionPool(features, hidden, gated=pool == "gated_attention")
        elif pool == "ran_self":
            self.pool = SelfAttentionPool(features)
        elif pool == "ran_relation":
            self.pool = SelfAttentionPool(features)
            self.relation = RelationAttentionPool(features)
            out = self.relation.out_features
        elif pool == "torchmil_gated":
            from torchmil.nn import AttentionPool

            self.pool = AttentionPool(in_dim=features, att_dim=hidden, gated=True)
        self.classifier = nn.Linear(out, 1)

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        name = self.pool_name
        weights: Tensor | None = None
        if name == "mean":
            m = mask.unsqueeze(-1).to(feats.dtype)
            pooled = (feats * m).sum(1) / m.sum(1).clamp_min(1.0)
        elif name == "max":
            pooled = feats.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
            pooled = torch.where(mask.any(1, keepdim=True), pooled, torch.zeros_like(pooled))
        elif name == "ran_relation":
            assert self.pool is not None and self.relation is not None
            s = self.pool(feats, mask)
            r = self.relation(feats, s.pooled, s.gates, mask)
            pooled, weights = r.pooled, r.weights
        elif name == "torchmil_gated":
            assert self.pool is not None
            pooled, scores = self.pool(feats, mask, return_att=True)
            weights = _masked_softmax(scores, mask)
        else:
            assert self.pool is not None
            out = self.pool(feats, mask)
            pooled, weights = out.pooled, out.weights
        return self.classifier(pooled).squeeze(-1), weights


# ----------------------------------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a run's figures (written to the JSON's ``config``)."""

    bag_means: tuple[int, ...] = BAG_MEANS
    train_bags: tuple[int, ...] = TRAIN_BAGS
    seeds: int = 5
    pools: tuple[str, ...] = POOLS
    test_bags: int = 1000
    epochs: int = 20
    batch_size: int = 64
    lr: float = 5e-4 * math.sqrt(64)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    features: int = 64
    hidden: int = 32
    test_fraction: float = 0.5
    min_length: int = 2
    target_digit: int = TARGET_DIGIT
    balanced: bool = True
    bag_std: str = "mean / 5"
    encoder: str = "conv3x3(8)-relu-maxpool2-conv3x3(16)-relu-maxpool2-linear(features)-relu"
    classifier: str = "linear(pooled -> 1), binary cross-entropy on the logit"
    instance_auc: str = "mean per-bag AUC of the attention weights over positive test bags holding 9s and others"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


class RunSpec(NamedTuple):
    pool: str
    bag_mean: int
    train_bags: int
    seed: int


class _Data:
    """Per-process cache of the digits, the seed's split and its test bags."""

    images: Tensor | None = None
    targets: np.ndarray | None = None
    splits: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # noqa: RUF012
    test: dict[tuple[int, int, int], tuple[Bags, Tensor, Tensor]] = {}  # noqa: RUF012

    @classmethod
    def get(cls) -> tuple[Tensor, np.ndarray]:
        if cls.images is None or cls.targets is None:
            cls.images, cls.targets = load_digits_data()
        return cls.images, cls.targets

    @classmethod
    def split(cls, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        if seed not in cls.splits:
            cls.splits[seed] = split_pools(cls.get()[1], seed, test_fraction)
        return cls.splits[seed]

    @classmethod
    def test_bags(cls, seed: int, bag_mean: int, proto: Protocol) -> tuple[Bags, Tensor, Tensor]:
        key = (seed, bag_mean, proto.test_bags)
        if key not in cls.test:
            _, test_pool = cls.split(seed, proto.test_fraction)
            rng = np.random.default_rng([seed, 3, bag_mean])
            bags = make_bags(
                test_pool,
                cls.get()[1],
                proto.test_bags,
                bag_mean,
                bag_std(bag_mean),
                rng,
                target=proto.target_digit,
                min_length=proto.min_length,
            )
            cls.test[key] = (bags, *pad_indices(bags.indices))
        return cls.test[key]


def train_bags_for(spec: RunSpec, proto: Protocol) -> Bags:
    """The training bags of a run: the same for every pool of a (seed, bag mean, size)."""
    targets = _Data.get()[1]
    train_pool, _ = _Data.split(spec.seed, proto.test_fraction)
    rng = np.random.default_rng([spec.seed, 2, spec.bag_mean, spec.train_bags])
    return make_bags(
        train_pool,
        targets,
        spec.train_bags,
        spec.bag_mean,
        bag_std(spec.bag_mean),
        rng,
        target=proto.target_digit,
        min_length=proto.min_length,
    )


def run_one(spec: RunSpec, proto: Protocol) -> dict[str, Any]:
    """Train one pool on one training set and evaluate it on the seed's test bags."""
    start = time.perf_counter()
    images, _ = _Data.get()
    bags = train_bags_for(spec, proto)
    idx_all, mask_all = pad_indices(bags.indices)
    lengths = mask_all.sum(1)
    y_all = torch.from_numpy(bags.labels)

    run_seed = int(np.random.SeedSequence([spec.seed, 4, spec.bag_mean, spec.train_bags]).generate_state(1)[0])
    torch.manual_seed(run_seed)  # the encoder is created first: the same initial encoder for every pool
    model = BagClassifier(spec.pool, proto.features, proto.hidden)
    model.encoder.to(memory_format=torch.channels_last)  # the same arithmetic; about 1.3x as fast on a CPU
    optimizer = torch.optim.Adam(model.parameters(), lr=proto.lr, betas=proto.betas, weight_decay=proto.weight_decay)
    order = torch.Generator().manual_seed(run_seed)
    model.train()
    for _ in range(proto.epochs):
        perm = torch.randperm(len(y_all), generator=order)
        for i in range(0, len(perm), proto.batch_size):
            rows = perm[i : i + proto.batch_size]
            k = int(lengths[rows].max())
            idx, mask = idx_all[rows, :k], mask_all[rows, :k]
            # Encode each distinct digit of the batch once; the gather sends every copy's gradient back to it
            # (exactly the gradient of encoding every instance: the encoder has no batch statistics).
            unique, inverse = torch.unique(idx, return_inverse=True)
            feats = model.encoder(images[unique].contiguous(memory_format=torch.channels_last))[inverse]
            logits, _ = model(feats, mask)
            loss = F.binary_cross_entropy_with_logits(logits, y_all[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()

    test, t_idx, t_mask = _Data.test_bags(spec.seed, spec.bag_mean, proto)
    model.eval()
    scores: list[Tensor] = []
    weights: list[np.ndarray] = []
    with torch.no_grad():
        feats_all = model.encoder(images.contiguous(memory_format=torch.channels_last))
        for i in range(0, len(t_idx), 250):
            mask = t_mask[i : i + 250]
            logits, w = model(feats_all[t_idx[i : i + 250]], mask)
            scores.append(logits.double())
            if w is not None:
                weights.extend(w[j, mask[j]].double().numpy() for j in range(len(w)))
    bag_auc = roc_auc(test.labels, torch.cat(scores).numpy())
    inst_auc = instance_auc(weights, test) if weights else None
    return {
        "pool": spec.pool,
        "bag_mean": spec.bag_mean,
        "train_bags": spec.train_bags,
        "seed": spec.seed,
        "bag_auc": bag_auc,
        "instance_auc": inst_auc,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_in_worker(spec: RunSpec, proto: Protocol) -> dict[str, Any]:
    return run_one(spec, proto)


def run_protocol(
    proto: Protocol,
    specs: Sequence[RunSpec],
    *,
    workers: int,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``specs`` (largest first, for the load balance) on ``workers`` processes of one torch thread each;
    ``on_result`` is called with each result as it arrives."""
    from tqdm import tqdm

    todo = sorted(specs, key=lambda s: (-s.bag_mean * s.train_bags, POOLS.index(s.pool), s.seed))
    results: list[dict[str, Any]] = []
    with tqdm(total=len(todo), desc="runs", unit="run", disable=not progress) as bar:

        def done(result: dict[str, Any]) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)
            bar.set_postfix_str(f"{result['pool']} mean {result['bag_mean']} n {result['train_bags']}")
            bar.update()

        if workers <= 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for spec in todo:
                    done(run_one(spec, proto))
            finally:
                torch.set_num_threads(threads)
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
                futures = [pool.submit(_run_in_worker, spec, proto) for spec in todo]
                for future in as_completed(futures):
                    done(future.result())
    return results


# ------------------------------------------------------------------------------------------------------ reports


def summarise(results: Sequence[dict[str, Any]], key: str) -> dict[tuple[str, int, int], tuple[float, float, int]]:
    """(pool, bag mean, training bags) -> (mean, standard deviation over seeds (ddof 1; 0 for one seed), seeds)
    of ``key``; runs whose value is null are left out."""
    groups: dict[tuple[str, int, int], list[float]] = {}
    for r in results:
        if r[key] is not None:
            groups.setdefault((r["pool"], r["bag_mean"], r["train_bags"]), []).append(float(r[key]))
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def format_table(results: Sequence[dict[str, Any]], key: str = "bag_auc") -> str:
    """One block per bag mean: a row per pool, a column per training-set size, mean ± std over seeds."""
    stats = summarise(results, key)
    pools = [p for p in POOLS if any(k[0] == p for k in stats)]
    lines = []
    for mean in sorted({k[1] for k in stats}):
        sizes = sorted({k[2] for k in stats if k[1] == mean})
        seeds = max(v[2] for k, v in stats.items() if k[1] == mean)
        lines.append(f"{key}, bag mean {mean} (std {bag_std(mean):g}), mean ± std over {seeds} seeds")
        lines.append(f"{'training bags':<16}" + "".join(f"{n:>14}" for n in sizes))
        for p in pools:
            cells = []
            for n in sizes:
                s = stats.get((p, mean, n))
                cells.append(f"{s[0]:.3f} ± {s[1]:.3f}" if s else "-")
            if any(c != "-" for c in cells):
                lines.append(f"{p:<16}" + "".join(f"{c:>14}" for c in cells))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot_results(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Test bag AUC against the number of training bags, one panel per bag mean, one line per pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summarise(results, "bag_auc")
    means = sorted({k[1] for k in stats})
    fig, axes = plt.subplots(1, len(means), figsize=(4.2 * len(means), 3.6), squeeze=False, sharey=True)
    for ax, mean in zip(axes[0], means, strict=True):
        for p in POOLS:
            pts = sorted((k[2], v) for k, v in stats.items() if k[0] == p and k[1] == mean)
            if pts:
                ax.errorbar(
                    [n for n, _ in pts],
                    [v[0] for _, v in pts],
                    yerr=[v[1] for _, v in pts],
                    label=p,
                    marker="o",
                    markersize=3,
                    capsize=2,
                    linewidth=1.2,
                )
        ax.set_title(f"mean bag length {mean}")
        ax.set_xlabel("training bags")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylim(top=1.005)  # an AUC ends at 1; the error bars (standard deviations) need not
    axes[0][0].set_ylabel("test bag AUC")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def sort_results(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results in table order: pool, bag mean, training bags, seed."""
    return sorted(results, key=lambda r: (POOLS.index(r["pool"]), r["bag_mean"], r["train_bags"], r["seed"]))


def write_json(path: Path, config: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    """Atomically write ``{"config": ..., "results": [...]}`` (in :func:`sort_results` order)."""
    ordered = sort_results(results)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"config": config, "results": ordered}, indent=1) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    """A user error is one line on stderr and exit status 2 (``--help`` has the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct values, got {text!r}")
    return values


def _pool_list(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(","))
    unknown = [n for n in names if n not in POOLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown pool {unknown[0]!r}; choose from {', '.join(POOLS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct pools, got {text!r}")
    return tuple(p for p in POOLS if p in names)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def default_lr(batch_size: int) -> float:
    """The authors' 5e-4 at one bag per step, scaled by the square root of the batch size."""
    return 5e-4 * math.sqrt(batch_size)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="examples/mil/digits_bags.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="bag mean 10, 50 and 150 training bags, 2 seeds (default: off, the full protocol)",
    )
    p.add_argument(
        "--bag-means",
        type=_int_list,
        default=None,
        metavar="M,M,...",
        help="mean bag lengths; the standard deviation is mean / 5 (default: 10,50,100)",
    )
    p.add_argument(
        "--train-bags",
        type=_int_list,
        default=None,
        metavar="N,N,...",
        help="training-set sizes in bags (default: 50,100,150,200,300,400,500)",
    )
    p.add_argument("--seeds", type=_positive, default=None, metavar="N", help="seeds 0..N-1 (default: 5)")
    p.add_argument(
        "--pools",
        type=_pool_list,
        default=POOLS,
        metavar="P,P,...",
        help=f"pools to compare (default: all: {','.join(POOLS)})",
    )
    _add_training_options(p)
    _add_output_options(p)
    return p


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """The test set, epochs, batch, learning rate and processes of :func:`build_parser`."""
    p.add_argument("--test-bags", type=_positive, default=1000, metavar="N", help="test bags (default: 1000)")
    p.add_argument("--epochs", type=_positive, default=20, metavar="N", help="epochs (default: 20)")
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=Protocol.batch_size,
        metavar="N",
        help=f"bags per step, padded and masked; 1 is the authors' (default: {Protocol.batch_size})",
    )
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        metavar="X",
        help="Adam's learning rate (default: 5e-4 * sqrt(batch size): the authors' 5e-4 at batch size 1, 4e-3 at 64)",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes, one torch thread each (default: min(2, CPU count))",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Where :func:`main` writes (``--json``, ``--plot``), ``--resume`` and the progress bar."""
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the config and every run's result here, after each run (default: none)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="bag AUC against training bags, a PNG (default: the --json path with .png, else none)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --json (same config) and run only the others (default: off)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")


def _check_output(parser: argparse.ArgumentParser, path: Path | None, option: str) -> None:
    if path is None:
        return
    if path.exists() and path.is_dir():
        parser.error(f"{option} {path} is a folder, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        parser.error(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        parser.error(f"{option} {path}: folder {parent} is not writable")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        given = [
            f
            for f, v in (("--bag-means", args.bag_means), ("--train-bags", args.train_bags), ("--seeds", args.seeds))
            if v is not None
        ]
        if given:
            parser.error(f"--quick sets the bag means, training sizes and seeds; drop {given[0]}")
    base = QUICK if args.quick else FULL
    if args.resume and args.json is None:
        parser.error("--resume needs --json PATH (the runs to keep are read from it)")
    _check_output(parser, args.json, "--json")
    plot = args.plot if args.plot is not None else (args.json.with_suffix(".png") if args.json else None)
    _check_output(parser, plot, "--plot")

    pools = _available_pools(parser, args.pools)
    proto = Protocol(
        bag_means=args.bag_means or base["bag_means"],
        train_bags=args.train_bags or base["train_bags"],
        seeds=args.seeds or base["seeds"],
        pools=pools,
        test_bags=args.test_bags,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else default_lr(args.batch_size),
    )
    config = proto.as_json()
    config["torch"] = torch.__version__
    specs = [
        RunSpec(p, m, n, s)
        for p in proto.pools
        for m in proto.bag_means
        for n in proto.train_bags
        for s in range(proto.seeds)
    ]
    kept: list[dict[str, Any]] = []
    if args.resume and args.json.exists():
        kept, specs = _resumed(parser, args.json, config, proto, specs)
    elif args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; pass --resume to continue it, or another path")
    return _run_and_report(args, proto, config, specs, kept, plot)


def _available_pools(parser: argparse.ArgumentParser, pools: tuple[str, ...]) -> tuple[str, ...]:
    """``--pools`` less ``torchmil_gated`` when torchmil is missing (with a printed note); scikit-learn checked."""
    if "torchmil_gated" in pools and not torchmil_available():
        print(
            "note: torchmil is not installed, so the torchmil_gated row is skipped "
            "(pip install --no-deps torchmil; its pools need only torch)",
            flush=True,
        )
        pools = tuple(p for p in pools if p != "torchmil_gated")
        if not pools:
            parser.error("--pools holds only torchmil_gated, and torchmil is not installed")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        parser.error("scikit-learn is needed for its bundled digits: pip install scikit-learn")
    return pools


def _resumed(
    parser: argparse.ArgumentParser, path: Path, config: dict[str, Any], proto: Protocol, specs: list[RunSpec]
) -> tuple[list[dict[str, Any]], list[RunSpec]]:
    """``--resume``: the runs kept from ``path`` (same config) and the specs still to run; ``config["pools"]``
    becomes every pool of the file and of this call."""
    try:
        old = json.loads(path.read_text())
        old_config, old_results = old["config"], old["results"]
    except (ValueError, KeyError, TypeError) as e:
        parser.error(f"--resume: {path} is not a results file of this script ({e})")
    now = json.loads(json.dumps(config))  # tuples as lists, as read back
    differ = [k for k in now if k != "pools" and old_config.get(k) != now[k]]
    if differ:
        parser.error(
            f"--resume: {path} was written with another {differ[0]} "
            f"({old_config.get(differ[0])!r}, now {now[differ[0]]!r})"
        )
    kept = list(old_results)  # all of them: runs of pools not asked for now stay in the file
    config["pools"] = [p for p in POOLS if p in proto.pools or p in old_config.get("pools", ())]
    have = {(r["pool"], r["bag_mean"], r["train_bags"], r["seed"]) for r in kept}
    specs = [s for s in specs if tuple(s) not in have]
    print(f"resuming: {len(kept)} runs kept from {path}, {len(specs)} to run", flush=True)
    return kept, specs


def _run_and_report(
    args: argparse.Namespace,
    proto: Protocol,
    config: dict[str, Any],
    specs: list[RunSpec],
    kept: list[dict[str, Any]],
    plot: Path | None,
) -> dict[str, Any]:
    """Run ``specs``, saving ``--json`` after each run, then print the tables and draw the plot."""
    results = list(kept)
    start = time.perf_counter()

    def save(result: dict[str, Any]) -> None:
        results.append(result)
        if args.json is not None:
            write_json(args.json, config, results)

    run_protocol(proto, specs, workers=args.workers, progress=not args.no_progress, on_result=save)
    results = sort_results(results)
    config["wall_seconds"] = round(time.perf_counter() - start, 1)
    config["workers"] = args.workers
    if args.json is not None:
        write_json(args.json, config, results)
    print(format_table(results, "bag_auc"))
    print(format_table([r for r in results if r["pool"] in ATTENTION_POOLS], "instance_auc"))
    print(f"{len(results)} runs, {config['wall_seconds']:.0f} s wall time on {args.workers} worker(s)")
    if plot is not None and results:
        plot_results(results, plot)
        print(f"plot: {plot}")
    if args.json is not None:
        print(f"results: {args.json}")
    return {"config": config, "results": results}


if __name__ == "__main__":
    main()
