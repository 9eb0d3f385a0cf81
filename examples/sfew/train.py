"""Train and evaluate RAN (or the whole-face baseline) on SFEW 2.0.

    python examples/sfew/train.py --data-dir DIR --output-dir OUT [--epochs N] [--batch-size N] [--lr X]
        [--model ran|baseline] [--backbone resnet18|vgg16|small] [--pretrained PATH] [--recipe paper|authors]
        [--num-regions K] [--dropout P]
        [--layout auto|frames|aligned] [--fit stretch|pad|center] [--regions fixed|authors|random]
        [--holdout-fraction F] [--image-size N] [--device cpu|cuda] [--workers N] [--amp] [--compile]
        [--subset NAME=PATH ...] [--resume] [--seed N]
    torchrun --nproc_per_node=N examples/sfew/train.py ...     # DistributedDataParallel

    # quick try on generated data
    python -m examples.common.synthetic sfew --out /tmp/sfew
    python examples/sfew/train.py --data-dir /tmp/sfew --output-dir /tmp/sfew-run --backbone small \\
        --image-size 64 --epochs 5

DIR holds ``Train/`` and ``Val/`` (movie frames) and/or ``Train_Aligned_Faces/`` and ``Val_Aligned_Faces_new/``,
each with the folders ``Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise`` (mapped explicitly; an unknown
folder name is an error). ``--layout auto`` takes the aligned faces when
both exist. Classes: angry, disgust, fear, happy, neutral, sad, surprise (recorded in every checkpoint and in
summary.json).

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
import dataclasses
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from examples.common import engine
from examples.common.folder_data import FITS, hold_out
from examples.sfew.data import SFEW_CLASSES, VARIANTS, detect_variant, format_report, load_sfew, parse_sfew_subset

#: Options that change the data (name in the checkpoint's data identity -> option); a resumed run must use the
#: checkpoint's values.
DATA_KEYS = {"layout": "layout", "fit": "fit", "holdout_fraction": "holdout_fraction"}
#: SFEW distributes no landmarks: no landmark regions, so no ``--radius`` (refused: it would be ignored).
DATA_OPTIONS = ("layout", "fit", "holdout_fraction", "regions", "num_regions")
DATA_CHOICES = {"layout": ("auto", *VARIANTS), "fit": FITS, "regions": ("fixed", "authors", "random")}
DATA_DEFAULTS = {"layout": "auto", "fit": "stretch", "holdout_fraction": 0.1}


def build_parser() -> argparse.ArgumentParser:
    return engine.script_parser(
        "examples/sfew/train.py",
        __doc__,
        "SFEW",
        DATA_OPTIONS,
        choices=DATA_CHOICES,
        defaults=DATA_DEFAULTS,
        notes={
            "layout": "frames (Train/, Val/) or aligned faces (Train_Aligned_Faces/, Val_Aligned_Faces_new/); "
            "default: auto, the aligned faces when both exist"
        },
    )


def make_task(cfg: engine.RunConfig) -> engine.Task:
    data = load_sfew(engine.required(cfg.data_dir, "data_dir"), engine.required(cfg.layout, "layout"))
    fraction = engine.required(cfg.holdout_fraction, "holdout_fraction")
    train, held, selection = hold_out(data.train, fraction, cfg.seed, SFEW_CLASSES)
    report = {**data.report, "model_selection": selection}
    engine.log(format_report(report) + f"\n  test split: {data.notes['validation_set']['description']}")
    size, fit = cfg.image_size, engine.required(cfg.fit, "fit")
    test = data.dataset(data.val, size, fit)
    return engine.Task(
        name="sfew",
        class_names=SFEW_CLASSES,
        train=data.dataset(train, size, fit),
        valid=data.dataset(held, size, fit) if held else None,
        test=test,
        test_keys=test.keys(),
        test_labels=test.labels(),
        report=report,
        notes=data.notes,
        subset_parser=lambda name, path: parse_sfew_subset(path, name=name),
        identity={key: getattr(cfg, option) for key, option in DATA_KEYS.items()},
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = build_parser()
    cfg = engine.config_from_args(parser, parser.parse_args(argv))
    found = engine.read_data(
        parser,
        lambda c: detect_variant(engine.required(c.data_dir, "data_dir"), engine.required(c.layout, "layout"))[0],
        cfg,
    )
    cfg = dataclasses.replace(cfg, layout=found)  # auto -> what was found
    task = engine.read_data(parser, make_task, cfg)
    return engine.run_script(parser, lambda: engine.run(task, cfg))


if __name__ == "__main__":
    main()
