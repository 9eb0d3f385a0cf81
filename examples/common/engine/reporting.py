"""What a run writes (rank 0 only): config.json, metrics.jsonl, summary.json, test_predictions.pt, the plots
and the closing lines on the terminal.

Guarantees: ``metrics.jsonl`` has one line per finished epoch, also after a resume (it is rebuilt from the
checkpoint's history, so lines lost or torn by a kill are repaired and lines of epochs after the checkpoint are
dropped); ``config.json``, ``summary.json`` and ``test_predictions.pt`` are written atomically (complete or
absent); ``summary.json`` is written last, after the test, so its presence means the run finished; plots need
matplotlib (an examples extra) and are skipped with a warning without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from .checkpoints import TMP_MARK, atomic_save, atomic_write_text, remove_stale_temporaries
from .runtime import log
from .task import Task

#: What a run writes under OUT (``checkpoints/`` holds ``last.pt`` and ``best.pt``): a folder holding any of them
#: holds a run.
OUTPUT_FILES = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "test_predictions.pt",
    "confusion_matrix.png",
    "training_curves.png",
)
CHECKPOINT_FILES = ("last.pt", "best.pt")


def output_folder_problem(output_dir: str | Path | None, *, resume: bool, overwrite: bool) -> str | None:
    """Why a run may not start in ``output_dir`` (None: it may): a new run into a folder holding another run's
    outputs is refused (``--resume`` continues that run, ``--overwrite`` deletes it first)."""
    if output_dir is None or resume or overwrite:
        return None
    found = RunFiles(output_dir).existing_outputs()
    if not found:
        return None
    return (
        f"{output_dir} already holds a run ({', '.join(str(p.relative_to(Path(output_dir))) for p in found)}); "
        "give --resume to continue it, --overwrite to delete it and start afresh, or another --output-dir"
    )


class RunFiles:
    """The files of one run under ``OUT``."""

    def __init__(self, output_dir: str | Path) -> None:
        self.root = Path(output_dir)
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"

    def existing_outputs(self) -> list[Path]:
        """The outputs of a run already in the folder (empty: the folder is free for a new run)."""
        found = [self.root / name for name in OUTPUT_FILES if (self.root / name).exists()]
        return found + [self.checkpoints / name for name in CHECKPOINT_FILES if (self.checkpoints / name).exists()]

    def remove_outputs(self) -> list[Path]:
        """``--overwrite``: delete the outputs of the run in the folder (only the files a run writes)."""
        found = self.existing_outputs()
        for path in found:
            path.unlink()
        self.remove_temporaries()
        return found

    def remove_temporaries(self) -> list[Path]:
        """The temporary files of writes killed half-way (``.NAME.tmp-PID``), deleted."""
        return remove_stale_temporaries(self.root, self.checkpoints)

    def remove_results(self) -> None:
        """A resumed run that trains further: its earlier summary and test predictions no longer hold."""
        for name in ("summary.json", "test_predictions.pt", "confusion_matrix.png"):
            (self.root / name).unlink(missing_ok=True)

    def read_config(self) -> dict[str, Any] | None:
        """``config.json``, the record the run started with; None when it is absent or unreadable (a resume then
        takes the record of ``checkpoints/last.pt``)."""
        try:
            record = json.loads((self.root / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "run_id" in record else None

    def write_config(self, record: dict[str, Any]) -> None:
        atomic_write_text(json.dumps(record, indent=2, default=str), self.root / "config.json")

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl`` from a checkpoint's history: exactly the epochs trained, one line each (a line lost
        or torn by a kill is repaired, lines of epochs after the checkpoint are dropped)."""
        atomic_write_text("".join(json.dumps(r) + "\n" for r in history), self.metrics)

    def drop_metrics_after(self, epochs: int) -> None:
        """Keep the lines of the first ``epochs`` epochs (torn or unreadable lines are dropped, not parsed into a
        bare ``JSONDecodeError``); :meth:`rewrite_metrics` is what a resume uses."""
        if self.metrics.exists():
            kept = []
            for line in self.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    if json.loads(line)["epoch"] <= epochs:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    log(f"warning: {self.metrics}: dropped an unreadable line {line[:60]!r}", error=True)
            atomic_write_text("".join(ln + "\n" for ln in kept), self.metrics)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(json.dumps(summary, indent=2), self.root / "summary.json")

    def write_predictions(self, result: dict[str, Tensor], task: Task) -> None:
        atomic_save(
            {
                "probs": result["probs"],
                "labels": task.test_labels,
                "keys": task.test_keys,
                **({"attention": result["attention"]} if "attention" in result else {}),
            },
            self.root / "test_predictions.pt",
            checksum=False,
        )

    def write_plots(self, cm: Tensor, task: Task, title: str) -> None:
        try:
            from ..plots import plot_confusion_matrix, plot_curves

            plot_confusion_matrix(cm, task.class_names, self.root / "confusion_matrix.png", title=title)
            plot_curves(self.metrics, self.root / "training_curves.png")
        except ImportError as err:  # matplotlib is an examples extra
            log(f"warning: plots skipped ({err})", error=True)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    val_text = f", valid acc {record['valid_accuracy']:.4f}" if "valid_accuracy" in record else ""
    return (
        f"epoch {record['epoch']}/{epochs}: lr {record['lr']:g}, loss {record['train_loss']:.4f} "
        f"(cls {record['train_cls_loss']:.4f}, rb {record['train_rb_loss']:.4f}){val_text}, "
        f"{record['train_images_per_s']:.0f} images/s"
    )


def closing_lines(test: dict[str, Any], subsets: dict[str, dict[str, Any]], epoch: int) -> str:
    lines = [
        f"test accuracy {test['accuracy']:.4f} (mean class {test['mean_class_accuracy']:.4f}) "
        f"with the checkpoint of epoch {epoch}"
    ]
    for name, entry in subsets.items():
        acc = "n/a" if entry["accuracy"] is None else f"{entry['accuracy']:.4f}"
        lines.append(
            f"  subset {name}: accuracy {acc} on {entry['matched']} images "
            f"({entry['unmatched']} list entries matched no test image, {entry['duplicates']} duplicates)"
        )
    return "\n".join(lines)


__all__ = [
    "CHECKPOINT_FILES",
    "OUTPUT_FILES",
    "TMP_MARK",
    "RunFiles",
    "closing_lines",
    "epoch_line",
    "output_folder_problem",
]
