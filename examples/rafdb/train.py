"""Train and evaluate RAN (or the whole-face baseline) on RAF-DB (basic emotions).

    python examples/rafdb/train.py --data-dir DIR --output-dir OUT [--epochs N] [--batch-size N] [--lr X]
        [--model ran|baseline] [--backbone resnet18|vgg16|small] [--pretrained PATH] [--recipe paper|authors]
        [--layout auto|provider|kaggle] [--images aligned|original] [--face-margin F] [--regions R]
        [--radius R] [--num-regions K] [--dropout P] [--holdout-fraction F] [--image-size N] [--device cpu|cuda]
        [--workers N] [--amp] [--compile] [--subset NAME=PATH ...] [--subset-labels NAME=PATH ...] [--resume] [--seed N]
    torchrun --nproc_per_node=N examples/rafdb/train.py ...     # DistributedDataParallel

    # quick try on generated data
    python -m examples.common.synthetic rafdb --out /tmp/rafdb
    python examples/rafdb/train.py --data-dir /tmp/rafdb --output-dir /tmp/rafdb-run --backbone small \\
        --image-size 64 --epochs 5 --subset occlusion=/tmp/rafdb/lists/rafdb_occlusion_list.txt \\
        --subset pose30=/tmp/rafdb/lists/val_raf_db_list.txt --subset pose45=/tmp/rafdb/lists/val_raf_db_list_45.txt

DIR is the provider's ``basic/`` folder (or its parent) with ``EmoLabel/list_patition_label.txt`` (or
``list_partition_label.txt``), or a Kaggle-style copy (``train_labels.csv``, ``test_labels.csv``, ``DATASET/``);
see examples/rafdb/data.py. Classes are the official labels 1-7 minus one: surprise, fear, disgust, happiness,
sadness, anger, neutral (the order of the published occlusion/pose lists; recorded in every checkpoint and in
summary.json).

Protocol: ``--holdout-fraction`` (default 0.1) of the training images, per class and drawn with ``--seed`` (as in
the AffectNet script), select the best epoch; the test set is evaluated once. ``--holdout-fraction 0`` or
``--train-on-valid`` train on the whole training set and report the last epoch (what the paper's 86.90 does: RAF-DB
has no validation split).

``--images original`` cuts each original image to the square around its provider face box (``--face-margin``
enlarges it on each side) and allows ``--regions landmarks`` (boxes around the 5 manual landmarks, radius
``--radius``). ``--subset NAME=PATH`` reads the published RAF-DB occlusion list (accuracy per occlusion type is
reported too) and pose lists; a pose list's label file (``val_raf_db_list_45.txt`` -> ``val_raf_db_label_45.txt``
beside it, or ``--subset-labels NAME=PATH``) is cross-checked before training.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.common import engine
from examples.common.folder_data import hold_out
from examples.rafdb.data import (
    IMAGE_KINDS,
    LAYOUTS,
    RAFDB_CLASSES,
    detect_layout,
    format_report,
    load_rafdb,
    parse_rafdb_subset,
)

#: Options that change the data; a resumed run must use the checkpoint's values.
DATA_KEYS = ("layout", "images", "face_margin", "holdout_fraction")
DATA_OPTIONS = ("layout", "images", "face_margin", "holdout_fraction", *engine.REGION_OPTIONS, "subset_labels")
DATA_CHOICES = {"layout": LAYOUTS, "images": IMAGE_KINDS}
DATA_DEFAULTS = {"layout": "auto", "images": "aligned", "face_margin": 0.0, "holdout_fraction": 0.1}


def build_parser() -> argparse.ArgumentParser:
    return engine.script_parser(
        "examples/rafdb/train.py", __doc__, "RAF-DB", DATA_OPTIONS, choices=DATA_CHOICES, defaults=DATA_DEFAULTS
    )


def _subset_lists(cfg: engine.RunConfig) -> dict[str, dict[str, Any]]:
    """Parse every --subset list before training (cross-checking pose-list label files); what was read."""
    labels = cfg.subset_label_files
    unknown = sorted(set(labels) - {name for name, _ in cfg.subsets})
    if unknown:
        raise SystemExit(f"error: --subset-labels names no --subset: {', '.join(unknown)}")
    out: dict[str, dict[str, Any]] = {}
    for name, path in cfg.subsets:
        subset = parse_rafdb_subset(path, name=name, label_path=labels.get(name))
        out[name] = {
            "list": str(path),
            "format": subset.format,
            "entries": len(subset.entries),
            "duplicates": subset.duplicates,
            "label_file": str(subset.label_path) if subset.label_path is not None else None,
        }
    return out


def make_task(cfg: engine.RunConfig) -> engine.Task:
    landmarks = cfg.regions == "landmarks"
    if landmarks and cfg.images != "original":
        raise SystemExit(
            "error: --regions landmarks needs --images original (the RAF-DB landmarks are in "
            "original-image pixels; the alignment of Image/aligned/ is not published)"
        )
    layout, images = engine.required(cfg.layout, "layout"), engine.required(cfg.images, "images")
    data = load_rafdb(engine.required(cfg.data_dir, "data_dir"), layout=layout, images=images, landmarks=landmarks)
    fraction = engine.required(cfg.holdout_fraction, "holdout_fraction")
    train, held, selection = hold_out(data.train, fraction, cfg.seed, RAFDB_CLASSES)
    report = {**data.report, "model_selection": selection, "subset_lists": _subset_lists(cfg)}
    labels = {name: Path(path) for name, path in cfg.subset_label_files.items()}
    engine.log(format_report(report))
    size, margin = cfg.image_size, engine.required(cfg.face_margin, "face_margin")
    test = data.dataset("test", size, margin=margin, landmarks=landmarks)
    return engine.Task(
        name="rafdb",
        class_names=RAFDB_CLASSES,
        train=data.dataset("train", size, records=train, margin=margin, landmarks=landmarks),
        valid=data.dataset("train", size, records=held, margin=margin, landmarks=landmarks) if held else None,
        test=test,
        test_keys=test.keys(),
        test_labels=test.labels(),
        report=report,
        subset_dataset="rafdb",
        subset_parser=lambda name, path: parse_rafdb_subset(path, name=name, label_path=labels.get(name)),
        identity={key: getattr(cfg, key) for key in DATA_KEYS},
        notes={"class_order": "RAF-DB official label minus one (the order of the published occlusion/pose lists)"},
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = build_parser()
    cfg = engine.config_from_args(parser, parser.parse_args(argv))
    found = engine.read_data(
        parser,
        lambda c: detect_layout(engine.required(c.data_dir, "data_dir"), engine.required(c.layout, "layout"))[0],
        cfg,
    )
    cfg = dataclasses.replace(cfg, layout=found)  # auto -> what was found
    task = engine.read_data(parser, make_task, cfg)
    return engine.run_script(parser, lambda: engine.run(task, cfg))


if __name__ == "__main__":
    main()
