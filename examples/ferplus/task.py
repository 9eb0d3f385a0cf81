"""The FERPlus task for the engine: the three splits as datasets, the loss of the label mode, the report.

Shared by the training script (:mod:`examples.ferplus.train`) and the demo (:mod:`examples.ferplus.demo`).
"""

from __future__ import annotations

from functools import partial

from examples.common import engine
from examples.ferplus.data import FERPLUS_CLASSES, FERPlusSplit, ferplus_loss, format_report, load_ferplus

__all__ = ["make_task"]


def make_task(cfg: engine.RunConfig, splits: dict[str, FERPlusSplit] | None = None) -> engine.Task:
    """Read the FERPlus of ``cfg.data_dir`` (``cfg.label_mode`` for the training split, majority labels for the
    others) and wrap it for :func:`examples.common.engine.run`. ``splits``: the three splits as
    :func:`~examples.ferplus.data.load_ferplus` read them with ``cfg``'s label mode and layout, when they are
    read already (the demo reads its data once for its three models)."""
    if splits is None:
        splits = load_ferplus(
            engine.required(cfg.data_dir, "data_dir"),
            engine.required(cfg.label_mode, "label_mode"),
            layout=engine.required(cfg.layout, "layout"),
        )
    engine.log(format_report(splits))
    size = cfg.image_size
    return engine.Task(
        name="ferplus",
        class_names=FERPLUS_CLASSES,
        train=splits["train"].dataset(size),
        valid=splits["valid"].dataset(size, draw_targets=False),
        test=splits["test"].dataset(size, draw_targets=False),
        test_keys=splits["test"].keys(),
        test_labels=splits["test"].labels(),
        loss=partial(ferplus_loss, mode=engine.required(cfg.label_mode, "label_mode")),
        report={name: split.report for name, split in splits.items()},
        subset_dataset="ferplus",
        image_channels="L",
    )
