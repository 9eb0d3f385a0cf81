"""What a run writes (rank 0 only): config.json, metrics.jsonl, summary.json, test_predictions.pt, the plots
and the closing lines on the terminal.

Guarantees: ``metrics.jsonl`` has one line per finished epoch, also after a resume (lines of epochs after the
checkpoint are dropped first); ``summary.json`` is written once, after the test; plots need matplotlib (an
examples extra) and are skipped with a warning without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .runtime import log
from .task import Task


class RunFiles:
    """The files of one run under ``OUT``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.root = Path(output_dir)
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"

    def write_config(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(json.dumps(record, indent=2, default=str))

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def drop_metrics_after(self, epochs: int) -> None:
        """Keep the lines of the first ``epochs`` epochs (a resumed run rewrites the later ones)."""
        if self.metrics.exists():
            lines = self.metrics.read_text().splitlines()
            kept = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= epochs]
            self.metrics.write_text("".join(ln + "\n" for ln in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.root / "summary.json").write_text(json.dumps(summary, indent=2))

    def write_predictions(self, result: dict[str, Tensor], task: Task) -> None:
        torch.save({"probs": result["probs"], "labels": task.test_labels, "keys": task.test_keys,
                    **({"attention": result["attention"]} if "attention" in result else {})},
                   self.root / "test_predictions.pt")

    def write_plots(self, cm: Tensor, task: Task, title: str) -> None:
        try:
            from ..plots import plot_confusion_matrix, plot_curves

            plot_confusion_matrix(cm, task.class_names, self.root / "confusion_matrix.png", title=title)
            plot_curves(self.metrics, self.root / "training_curves.png")
        except ImportError as err:  # matplotlib is an examples extra
            log(f"warning: plots skipped ({err})", error=True)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    val_text = f", valid acc {record['valid_accuracy']:.4f}" if "valid_accuracy" in record else ""
    return (f"epoch {record['epoch']}/{epochs}: lr {record['lr']:g}, loss {record['train_loss']:.4f} "
            f"(cls {record['train_cls_loss']:.4f}, rb {record['train_rb_loss']:.4f}){val_text}, "
            f"{record['train_images_per_s']:.0f} images/s")


def closing_lines(test: dict[str, Any], subsets: dict[str, dict[str, Any]], epoch: int) -> str:
    lines = [f"test accuracy {test['accuracy']:.4f} (mean class {test['mean_class_accuracy']:.4f}) "
             f"with the checkpoint of epoch {epoch}"]
    for name, entry in subsets.items():
        acc = "n/a" if entry["accuracy"] is None else f"{entry['accuracy']:.4f}"
        lines.append(f"  subset {name}: accuracy {acc} on {entry['matched']} images "
                     f"({entry['unmatched']} list entries matched no test image, {entry['duplicates']} duplicates)")
    return "\n".join(lines)


__all__ = ["RunFiles", "closing_lines", "epoch_line"]
