r"""Annotation: how many faces of each kind, class, occlusion and pose a split gets, and the annotators' votes.

The FERPlus majority rule is :func:`examples.ferplus.formats.majority_label` (the reader's, so writer and reader
cannot disagree); class names come from the datasets' data modules.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from examples.ferplus.formats import FERPLUS_CLASSES, majority_label

from .faces import sample_faces
from .render import Rendered, render

__all__ = ["OCCLUSION_LIST_TYPE", "majority_label"]

#: Occlusion type ``k`` of the published FERPlus list (``<label>_<fer>.png 8 <k>``): the Table I columns in order.
#: The counts of k in the published list (70 / 138 / 213 / 184) equal Table I's upper / bottom / left-right /
#: glasses-mask counts for FERPlus.
OCCLUSION_LIST_TYPE = {"upper": 0, "bottom": 1, "left": 2, "right": 2, "glasses": 3, "mask": 3}
# Expressions annotators confuse (and that ambiguous images blend), per FERPlus class.
_CONFUSABLE = ((3, 7), (2, 0), (6, 1), (0, 6), (5, 3), (4, 7), (2, 3), (0, 5))


def _exact_counts(n: int, weights: Sequence[float], *, at_least_one: bool = False) -> list[int]:
    """Split ``n`` in proportion to ``weights`` exactly (largest remainders); optionally give every entry with a
    positive weight at least one, taken from the largest counts."""
    total = float(sum(weights))
    raw = [n * w / total for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(weights)), key=lambda k: raw[k] - counts[k], reverse=True)
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    if at_least_one and n >= sum(w > 0 for w in weights):
        for k, w in enumerate(weights):
            if w > 0 and counts[k] == 0:
                counts[max(range(len(counts)), key=lambda j: counts[j])] -= 1
                counts[k] = 1
    return counts


def _shuffled(n: int, mix: Mapping[str, float], rng: random.Random, *, at_least_one: bool) -> list[str]:
    """Exactly proportional numbers of each key of ``mix`` (see :func:`_exact_counts`), in random order."""
    counts = _exact_counts(n, list(mix.values()), at_least_one=at_least_one)
    out = [k for k, c in zip(mix, counts, strict=True) for _ in range(c)]
    rng.shuffle(out)
    return out


_KIND_MIX = {"clean": 0.76, "ambiguous": 0.12, "no_majority": 0.05, "unknown": 0.04, "nonface": 0.03}


def _votes_for(kind: str, c: int, c2: int, w: float, rng: random.Random) -> list[int]:
    votes = [0] * 10

    def stray(k: int) -> None:
        for _ in range(k):
            r = rng.random()
            if r < 0.14:
                votes[8] += 1
            elif r < 0.17:
                votes[9] += 1
            elif r < 0.6:
                votes[_CONFUSABLE[c][rng.random() < 0.5]] += 1
            else:
                votes[rng.randrange(8)] += 1

    if kind == "clean":
        n_c = rng.choices((10, 9, 8, 7, 6), weights=(35, 25, 20, 12, 8))[0]
        votes[c] += n_c
        stray(10 - n_c)
    elif kind == "ambiguous":
        n_2 = max(2, min(5, round(10 * w) + rng.choice((-1, 0, 0, 1))))
        n_c = min(10 - n_2, rng.choice((5, 6, 6, 7)))
        votes[c] += n_c
        votes[c2] += n_2
        stray(10 - n_c - n_2)
    elif kind == "no_majority":
        others = [k for k in range(8) if k not in (c, c2)]
        split = rng.choice(((4, 3, 3), (4, 4, 2), (3, 3, 2, 2), (4, 2, 2, 2)))
        targets = [c, c2, *rng.sample(others, len(split) - 2)]
        for k, v in zip(targets, split, strict=True):
            votes[k] += v
    elif kind == "unknown":
        n_u = rng.choice((5, 6, 7))
        votes[8] += n_u
        votes[c] += 10 - n_u - 1
        stray(1)
    else:  # nonface
        n_nf = rng.choice((6, 8, 9, 10))
        votes[9] += n_nf
        votes[8] += 10 - n_nf
    return votes


def _split_probs(value: float | Mapping[str, float] | None, defaults: Mapping[str, float], name: str):  # type: ignore[no-untyped-def]
    if value is None:
        return dict(defaults)
    if isinstance(value, Mapping):
        unknown = set(value) - set(defaults)
        if unknown:
            raise ValueError(f"{name}: unknown split(s) {sorted(unknown)}; expected {sorted(defaults)}")
        out = dict(defaults)
        out.update({k: float(v) for k, v in value.items()})
    else:
        out = {k: float(value) for k in defaults}
    for k, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}[{k!r}] must be a probability in [0, 1], got {v}")
    return out


def _plan_split(
    n: int,
    classes: list[int],
    *,
    kind_mix: Mapping[str, float],
    occlusion_p: float,
    occlusion_mix: Mapping[str, float],
    pose_p: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Per-row plan: kind, class, blend class and weight, occlusion, yaw (quotas are exact, then shuffled)."""
    kinds = _shuffled(n, kind_mix, rng, at_least_one=n >= 40)
    n_occ = round(occlusion_p * n)
    occ = _shuffled(n_occ, occlusion_mix, rng, at_least_one=n_occ >= 12) + ["none"] * (n - n_occ)
    rng.shuffle(occ)
    n_pose = round(pose_p * n)
    large = [True] * n_pose + [False] * (n - n_pose)
    rng.shuffle(large)
    rows = []
    for i in range(n):
        c = classes[i]
        c2 = _CONFUSABLE[c][rng.random() < 0.5]
        kind = kinds[i]
        w = rng.uniform(0.25, 0.45) if kind == "ambiguous" else rng.uniform(0.35, 0.5) if kind == "no_majority" else 0.0
        yaw = rng.uniform(30.5, 62.0) if large[i] else rng.uniform(0.0, 27.0)
        yaw *= rng.choice((-1.0, 1.0))
        o = occ[i]
        if kind == "nonface":
            o, yaw = "none", 0.0
        rows.append({"kind": kind, "label": c, "blend": c2, "weight": w, "occlusion": o, "yaw": yaw})
    return rows


def _render_plan(
    rows: list[dict[str, Any]], size: int, channels: int, g: torch.Generator, **sample_kwargs: Any
) -> tuple[Rendered, dict[str, torch.Tensor]]:
    p = sample_faces(
        [r["label"] for r in rows],
        generator=g,
        blend_labels=[r["blend"] for r in rows],
        blend_weights=[r["weight"] for r in rows],
        occlusion=[r["occlusion"] for r in rows],
        yaw=[r["yaw"] for r in rows],
        degraded=[r["kind"] == "unknown" for r in rows],
        nonface=[r["kind"] == "nonface" for r in rows],
        **sample_kwargs,
    )
    return render(p, size, channels=channels, generator=g), p


def _attach_pose(rows: list[dict[str, Any]], params: dict[str, torch.Tensor]) -> None:
    """Record each row's drawn pitch and roll (degrees) from the face parameters."""
    for i, r in enumerate(rows):
        r["pitch"] = float(torch.rad2deg(params["pitch"][i]))
        r["roll"] = float(torch.rad2deg(params["roll"][i]))


def _split_generator(seed: int, split: str) -> tuple[torch.Generator, random.Random]:
    digest = hashlib.sha256(f"{seed}/{split}".encode()).digest()
    s = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    return torch.Generator().manual_seed(s), random.Random(s)


def _class_list(n: int, probs: Sequence[float], rng: random.Random) -> list[int]:
    """Classes in exact proportion to ``probs`` (largest remainders), shuffled."""
    out = [k for k, c in enumerate(_exact_counts(n, probs)) for _ in range(c)]
    rng.shuffle(out)
    return out


def _write_meta(path: Path, rows: list[dict[str, Any]], key: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(
            [
                "row",
                "split",
                key,
                "drawn_class",
                "blend_class",
                "blend_weight",
                "kind",
                "label",
                "occlusion",
                "occlusion_type",
                "yaw",
                "pitch",
                "roll",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r["row"],
                    r["split"],
                    r[key],
                    FERPLUS_CLASSES[r["label"]],
                    FERPLUS_CLASSES[r["blend"]],
                    f"{r['weight']:.3f}",
                    r["kind"],
                    r["list_label"] if "list_label" in r else r["majority"],
                    r["occlusion"],
                    OCCLUSION_LIST_TYPE.get(r["occlusion"], -1),
                    f"{r['yaw']:.2f}",
                    f"{r['pitch']:.2f}",
                    f"{r['roll']:.2f}",
                ]
            )
