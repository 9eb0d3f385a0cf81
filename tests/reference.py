"""Independent float64 references: per-sample Python loops over the paper's equations (Eq. 2-6).

Written from the paper and from the description of the authors' code, deliberately naive: scalars,
explicit sums and divisions, no masking tricks, so they share nothing with the library's log-space code.
"""

from __future__ import annotations

import math

import torch


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _softmax(values: list[float]) -> list[float]:
    m = max(values)
    e = [math.exp(v - m) for v in values]
    return [v / sum(e) for v in e]


def ran_reference(x, q0, q1, b0=0.0, b1=0.0, mask=None, variant="paper"):
    """Returns (F_m, sa_weights, sa_gates, P_RAN, ra_weights, ra_gates) as float64 tensors."""
    x = x.double()
    bsz, k, d = x.shape
    q0 = q0.double().reshape(-1).tolist()
    q1 = q1.double().reshape(-1).tolist()
    outs = {name: [] for name in ("fm", "sw", "sg", "p", "rw", "rg")}
    for b in range(bsz):
        present = [i for i in range(k) if mask is None or bool(mask[b, i])]
        feats = [x[b, i].tolist() for i in range(k)]
        fm = [0.0] * d
        sw = [0.0] * k
        sg = [0.0] * k
        p = [0.0] * (2 * d)
        rw = [0.0] * k
        rg = [0.0] * k
        if present:
            a = {i: _sigmoid(_dot(feats[i], q0) + b0) for i in present}
            if variant == "authors":
                sm = _softmax([a[i] for i in present])
                mu = dict(zip(present, sm, strict=True))
            else:
                mu = a
            total = sum(mu[i] for i in present)
            for i in present:
                sg[i] = mu[i]
                sw[i] = mu[i] / total
                for j in range(d):
                    fm[j] += mu[i] * feats[i][j] / total
            cat = {i: feats[i] + fm for i in present}
            bb = {i: _sigmoid(_dot(cat[i], q1) + b1) for i in present}
            if variant == "authors":
                sm = _softmax([bb[i] for i in present])
                nu = dict(zip(present, sm, strict=True))
            else:
                nu = bb
            total = sum(mu[i] * nu[i] for i in present)
            for i in present:
                rg[i] = nu[i]
                rw[i] = mu[i] * nu[i] / total
                for j in range(2 * d):
                    p[j] += mu[i] * nu[i] * cat[i][j] / total
        for name, val in (("fm", fm), ("sw", sw), ("sg", sg), ("p", p), ("rw", rw), ("rg", rg)):
            outs[name].append(val)
    return tuple(torch.tensor(outs[n], dtype=torch.float64) for n in ("fm", "sw", "sg", "p", "rw", "rg"))


def rb_loss_reference(gates, mask=None, margin=0.02, whole_index=0, reduction="mean"):
    """Eq. 6 per sample: max(0, margin - (max_{present crops} mu_i - mu_whole)); 0 where undefined."""
    bsz, k = gates.shape
    whole = whole_index % k
    rows = []
    for b in range(bsz):
        crops = [i for i in range(k) if i != whole and (mask is None or bool(mask[b, i]))]
        whole_present = mask is None or bool(mask[b, whole])
        if not crops or not whole_present:
            rows.append(0.0)
            continue
        mu_max = max(float(gates[b, i]) for i in crops)
        rows.append(max(0.0, margin - (mu_max - float(gates[b, whole]))))
    out = torch.tensor(rows, dtype=torch.float64)
    if reduction == "mean":
        return out.mean()
    if reduction == "sum":
        return out.sum()
    return out
