"""Pictures of a run: confusion matrices (paper Figs. 4-5), training curves, attention figures (Fig. 6)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(
    cm: Tensor | Sequence[Sequence[int]], class_names: Sequence[str], path: Path | str, title: str = ""
) -> Path:
    """Row-normalised confusion matrix (true class per row) with the percentages written in the cells."""
    plt = _pyplot()
    cm = torch.as_tensor(cm, dtype=torch.float64)
    rows = cm.sum(1, keepdim=True).clamp_min(1)
    norm = (cm / rows).numpy()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            value = norm[i][j]
            ax.text(
                j,
                i,
                f"{100 * value:.0f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > 0.55 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{c} ({int(cm[i].sum())})" for i, c in enumerate(class_names)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (images)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curves(
    metrics: Path | str | list[dict[str, Any]],
    path: Path | str,
    labels: Sequence[str] | None = None,
    extra: Sequence[list[dict[str, Any]]] = (),
) -> Path:
    """Training loss (total, classification, region biased) and validation accuracy per epoch."""
    plt = _pyplot()
    runs = [read_metrics(metrics) if not isinstance(metrics, list) else metrics, *extra]
    labels = list(labels) if labels else [""] * len(runs)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
    for run, label in zip(runs, labels, strict=True):
        epochs = [r["epoch"] for r in run]
        prefix = f"{label} " if label else ""
        ax_loss.plot(epochs, [r["train_loss"] for r in run], marker="o", label=f"{prefix}total")
        if any(r.get("train_rb_loss", 0) for r in run):
            ax_loss.plot(epochs, [r["train_rb_loss"] for r in run], linestyle="--", label=f"{prefix}region biased")
        if any("valid_accuracy" in r for r in run):
            ax_acc.plot(epochs, [r.get("valid_accuracy") for r in run], marker="o", label=f"{prefix}validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(fontsize=8)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    if ax_acc.lines:
        ax_acc.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_attention(
    images: Tensor,
    boxes: Tensor,
    weights: Tensor,
    path: Path | str,
    titles: Sequence[str] | None = None,
    mask: Tensor | None = None,
    crops: Tensor | None = None,
    coverage: Tensor | None = None,
    occluder: Tensor | None = None,
) -> Path:
    """The paper's Fig. 6: per face, the face with every region's box, then each region with its weight.

    ``images`` (N, C, H, W) in [0, 1]; ``boxes`` (N, K, 4) xyxy pixels; ``weights`` (N, K) final attention
    weights; ``crops`` (N, K, C, h, w) optional region images (without them, e.g. for the one-pass model
    whose regions are pooled from a feature map, each region is cut from the face by its box). Highest weight
    in red, lowest in blue. ``coverage`` (N, K): the share of each box that the face's occluder covers,
    written beside the weight ("w 0.210 | occ 0.48"); ``occluder`` (N, h, w) its opacity in [0, 1] at any
    resolution, tinted red over the face.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    n, k = weights.shape
    fig, axes = plt.subplots(n, k + 1, figsize=(1.5 * (k + 1), 1.7 * n), dpi=120, squeeze=False)
    for row in range(n):
        present = torch.ones(k, dtype=torch.bool) if mask is None else mask[row].cpu()
        w = weights[row].float().cpu()
        masked_w = torch.where(present, w, torch.full_like(w, float("nan")))
        hi = int(torch.nan_to_num(masked_w, nan=-1).argmax())
        lo = int(torch.nan_to_num(masked_w, nan=2).argmin())
        img = images[row].float().cpu().clamp(0, 1)
        ax = axes[row][0]
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        if occluder is not None and bool(occluder[row].any()):
            tint = torch.zeros(*img.shape[1:], 4)
            tint[..., 0] = 1.0
            alpha = occluder[row].float().cpu()[None, None]
            tint[..., 3] = 0.45 * torch.nn.functional.interpolate(alpha, size=img.shape[1:], mode="bilinear")[0, 0]
            ax.imshow(tint.numpy())
        for j in range(k):
            if not present[j]:
                continue
            x1, y1, x2, y2 = boxes[row, j].float().tolist()
            color = "red" if j == hi else "blue" if j == lo else "yellow"
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=color, linewidth=1))
        ax.set_title(titles[row] if titles else "face", fontsize=7)
        for j in range(k):
            ax = axes[row][j + 1]
            if crops is not None:
                c = crops[row, j].float().cpu().clamp(0, 1)
            else:
                x1, y1, x2, y2 = (round(v) for v in boxes[row, j].tolist())
                c = img[:, max(y1, 0) : max(y2, 1), max(x1, 0) : max(x2, 1)]
            ax.imshow(c.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if c.shape[0] == 1 else None)
            label = "masked" if not present[j] else f"{float(w[j]):.3f}"
            if coverage is not None and present[j]:
                label = f"w {label} | occ {float(coverage[row, j]):.2f}"
            color = "red" if j == hi else "blue" if j == lo else "black"
            ax.set_title(
                f"I{j}: {label}",
                fontsize=6 if coverage is not None else 7,
                color=color,
                fontweight="bold" if j in (hi, lo) else None,
            )
            for spine in ax.spines.values():
                spine.set_edgecolor(color if j in (hi, lo) else "lightgray")
                spine.set_linewidth(2 if j in (hi, lo) else 0.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
