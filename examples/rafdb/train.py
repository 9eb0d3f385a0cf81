"""Train and evaluate RAN (or the whole-face baseline) on RAF-DB (basic emotions).

    python examples/rafdb/train.py --data-dir DIR --output-dir OUT [--epochs N] [--batch-size N] [--lr X]
        [--model ran|baseline] [--backbone resnet18|vgg16|small] [--pretrained PATH] [--recipe paper|authors]
        [--layout auto|provider|kaggle] [--images aligned|original] [--face-margin F] [--regions R]
        [--holdout-fraction F] [--image-size N] [--device cpu|cuda] [--workers N] [--amp] [--compile]
        [--subset NAME=PATH ...] [--subset-labels NAME=PATH ...] [--resume] [--seed N]
    torchrun --nproc_per_node=N examples/rafdb/train.py ...     # DistributedDataParallel

    # quick try on generated data
    python examples/rafdb/data.py --out /tmp/rafdb
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
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.common.engine import RECIPES, Task, add_engine_arguments, resolve_config, run
from examples.common.folder_data import (
    add_holdout_arguments,
    add_region_arguments,
    class_counts,
    cross_entropy_loss,
    is_main_process,
    split_records,
)
from examples.common.subsets import parse_subset_arg
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="examples/rafdb/train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_engine_arguments(parser)
    g = parser.add_argument_group("RAF-DB")
    g.add_argument("--layout", choices=LAYOUTS, default="auto", help="provider (basic/) or kaggle (CSV) layout")
    g.add_argument("--images", choices=IMAGE_KINDS, default="aligned",
                   help="Image/aligned/ (100x100) or Image/original/ cut to the provider's face box")
    g.add_argument("--face-margin", type=float, default=0.0,
                   help="with --images original: enlarge the square face box by this fraction on each side")
    add_holdout_arguments(g)
    add_region_arguments(parser, g, landmarks=True)
    g.add_argument("--subset-labels", action="append", default=[], metavar="NAME=PATH",
                   help="label file of the --subset NAME pose list (default: found beside it by the published "
                        "naming, e.g. val_raf_db_label_45.txt)")
    return parser


def _subset_labels(cfg: dict) -> dict[str, Path]:
    labels = {}
    for spec in cfg.get("subset_labels") or []:
        try:
            name, path = parse_subset_arg(spec)
        except argparse.ArgumentTypeError as err:
            raise SystemExit(f"error: --subset-labels: {err}") from err
        labels[name] = path
    return labels


def _subset_lists(cfg: dict) -> dict[str, dict]:
    """Parse every --subset list before training (cross-checking pose-list label files); what was read."""
    labels = _subset_labels(cfg)
    out = {}
    for spec in cfg.get("subset") or []:
        try:
            name, path = parse_subset_arg(spec)
        except argparse.ArgumentTypeError as err:
            raise SystemExit(f"error: --subset: {err}") from err
        subset = parse_rafdb_subset(path, name=name, label_path=labels.pop(name, None))
        out[name] = {"list": str(path), "format": subset.format, "entries": len(subset.entries),
                     "duplicates": subset.duplicates,
                     "label_file": str(subset.label_path) if subset.label_path is not None else None}
    if labels:
        raise SystemExit(f"error: --subset-labels names no --subset: {', '.join(labels)}")
    return out


def make_task(cfg: dict) -> Task:
    landmarks = cfg.get("regions") == "landmarks"
    if landmarks and cfg["images"] != "original":
        raise SystemExit("error: --regions landmarks needs --images original (the RAF-DB landmarks are in "
                         "original-image pixels; the alignment of Image/aligned/ is not published)")
    data = load_rafdb(cfg["data_dir"], layout=cfg["layout"], images=cfg["images"], landmarks=landmarks)
    train, held = split_records(data.train, cfg["holdout_fraction"], cfg["seed"])
    report = dict(data.report)
    report["model_selection"] = {
        "holdout_fraction": cfg["holdout_fraction"], "seed": cfg["seed"],
        "train": {"images": len(train), "class_counts": class_counts([r.label for r in train], RAFDB_CLASSES)},
        "valid": {"images": len(held), "class_counts": class_counts([r.label for r in held], RAFDB_CLASSES)},
    }
    report["subset_lists"] = _subset_lists(cfg)
    labels = _subset_labels(cfg)
    if is_main_process():
        print(format_report(report), flush=True)
    size, margin = cfg["image_size"], cfg["face_margin"]
    test = data.dataset("test", size, margin=margin, landmarks=landmarks)
    return Task(
        name="rafdb",
        class_names=RAFDB_CLASSES,
        train=data.dataset("train", size, records=train, margin=margin, landmarks=landmarks),
        valid=data.dataset("train", size, records=held, margin=margin, landmarks=landmarks) if held else None,
        test=test,
        test_keys=test.keys(),
        test_labels=test.labels(),
        loss=cross_entropy_loss,
        report=report,
        subset_dataset="rafdb",
        subset_parser=lambda name, path: parse_rafdb_subset(path, name=name, label_path=labels.get(name)),
        identity={key: cfg[key] for key in DATA_KEYS},
        landmarks=landmarks,
        notes={"class_order": "RAF-DB official label minus one (the order of the published occlusion/pose lists)"},
    )


def main(argv: list[str] | None = None) -> dict | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data_dir is None or args.output_dir is None:
        parser.error("--data-dir and --output-dir are required")
    if not 0.0 <= args.holdout_fraction < 1.0:
        parser.error(f"--holdout-fraction must be in [0, 1), got {args.holdout_fraction}")
    if args.face_margin < 0:
        parser.error(f"--face-margin must be >= 0, got {args.face_margin}")
    cfg = resolve_config(args, RECIPES)
    cfg["layout"] = detect_layout(cfg["data_dir"], cfg["layout"])[0]  # auto -> what was found
    return run(make_task(cfg), cfg)


if __name__ == "__main__":
    main()
