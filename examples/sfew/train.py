"""Train and evaluate RAN (or the whole-face baseline) on SFEW 2.0.

    python examples/sfew/train.py --data-dir DIR --output-dir OUT [--epochs N] [--batch-size N] [--lr X]
        [--model ran|baseline] [--backbone resnet18|vgg16|small] [--pretrained PATH] [--recipe paper|authors]
        [--variant-layout auto|frames|aligned] [--fit stretch|pad|center] [--regions fixed|authors|random]
        [--holdout-fraction F] [--image-size N] [--device cpu|cuda] [--workers N] [--amp] [--compile]
        [--subset NAME=PATH ...] [--resume] [--seed N]
    torchrun --nproc_per_node=N examples/sfew/train.py ...     # DistributedDataParallel

    # quick try on generated data
    python examples/sfew/data.py --out /tmp/sfew
    python examples/sfew/train.py --data-dir /tmp/sfew --output-dir /tmp/sfew-run --backbone small \\
        --image-size 64 --epochs 5

DIR holds ``Train/`` and ``Val/`` (movie frames) and/or ``Train_Aligned_Faces/`` and ``Val_Aligned_Faces_new/``,
each with the folders ``Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise`` (mapped explicitly; an unknown
folder name is an error). ``--variant-layout auto`` takes the aligned faces when both exist. Classes: angry,
disgust, fear, happy, neutral, sad, surprise (recorded in every checkpoint and in summary.json).

Protocol (the paper's): the validation set is the test split, evaluated once; ``--holdout-fraction`` (default 0.1)
of ``Train``, per class and drawn with ``--seed``, selects the best epoch (``--holdout-fraction 0`` /
``--train-on-valid``: train on all of ``Train`` and report the last epoch). summary.json says which validation set
was used (``validation_set``) and the report gives per-class counts. No landmarks are distributed, so
``--regions landmarks`` is not offered.

``--subset NAME=PATH``: no subset lists were published for SFEW; a plain list of validation images (one per line,
``[<Folder>/]<image>[.png] [<label>] [<type>]``) is evaluated from the saved test predictions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from examples.common.engine import RECIPES, Task, add_engine_arguments, resolve_config, run
from examples.common.folder_data import (
    FITS,
    add_holdout_arguments,
    add_region_arguments,
    class_counts,
    cross_entropy_loss,
    is_main_process,
    split_records,
)
from examples.common.subsets import SubsetList, parse_subset_arg
from examples.sfew.data import SFEW_CLASSES, VARIANTS, detect_variant, format_report, load_sfew, parse_sfew_subset

#: Options that change the data; a resumed run must use the checkpoint's values.
DATA_KEYS = ("variant_layout", "fit", "holdout_fraction")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="examples/sfew/train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_engine_arguments(parser)
    g = parser.add_argument_group("SFEW")
    g.add_argument("--variant-layout", choices=["auto", *VARIANTS], default="auto",
                   help="frames (Train/, Val/) or aligned faces (Train_Aligned_Faces/, Val_Aligned_Faces_new/)")
    g.add_argument("--fit", choices=FITS, default="stretch",
                   help="how a non-square image becomes square: stretch, pad (black borders) or center (crop)")
    add_holdout_arguments(g)
    add_region_arguments(parser, g, landmarks=False)
    return parser


def _subset_lists(cfg: dict) -> list[SubsetList]:
    out = []
    for spec in cfg.get("subset") or []:
        try:
            name, path = parse_subset_arg(spec)
        except argparse.ArgumentTypeError as err:
            raise SystemExit(f"error: --subset: {err}") from err
        out.append(parse_sfew_subset(path, name=name))
    return out


def make_task(cfg: dict) -> Task:
    if cfg.get("regions") == "landmarks":
        raise SystemExit("error: SFEW distributes no landmarks; use --regions fixed, authors or random")
    data = load_sfew(cfg["data_dir"], cfg["variant_layout"])
    train, held = split_records(data.train, cfg["holdout_fraction"], cfg["seed"])
    report = dict(data.report)
    report["model_selection"] = {
        "holdout_fraction": cfg["holdout_fraction"], "seed": cfg["seed"],
        "train": {"images": len(train), "class_counts": class_counts([r.label for r in train], SFEW_CLASSES)},
        "valid": {"images": len(held), "class_counts": class_counts([r.label for r in held], SFEW_CLASSES)},
    }
    if is_main_process():
        print(format_report(report) + f"\n  test split: {data.notes['validation_set']['description']}", flush=True)
    size, fit = cfg["image_size"], cfg["fit"]
    test = data.dataset(data.val, size, fit)
    return Task(
        name="sfew",
        class_names=SFEW_CLASSES,
        train=data.dataset(train, size, fit),
        valid=data.dataset(held, size, fit) if held else None,
        test=test,
        test_keys=test.keys(),
        test_labels=test.labels(),
        loss=cross_entropy_loss,
        report=report,
        notes=data.notes,
        subset_parser=lambda name, path: parse_sfew_subset(path, name=name),
        identity={key: cfg[key] for key in DATA_KEYS},
    )


def main(argv: list[str] | None = None) -> dict | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data_dir is None or args.output_dir is None:
        parser.error("--data-dir and --output-dir are required")
    if not 0.0 <= args.holdout_fraction < 1.0:
        parser.error(f"--holdout-fraction must be in [0, 1), got {args.holdout_fraction}")
    cfg = resolve_config(args, RECIPES)
    cfg["variant_layout"] = detect_variant(cfg["data_dir"], cfg["variant_layout"])[0]  # auto -> what was found
    _subset_lists(cfg)  # fail early on a bad list, before reading the images
    return run(make_task(cfg), cfg)


if __name__ == "__main__":
    main()
