"""Train and evaluate RAN (or the whole-face baseline) on FERPlus.

    python examples/ferplus/train.py --data-dir DIR --output-dir OUT [--epochs N] [--batch-size N] [--lr X]
        [--model ran|baseline] [--backbone resnet18|vgg16|small] [--pretrained PATH] [--label-mode MODE]
        [--regions fixed|authors|random] [--dropout P] [--recipe paper|authors] [--image-size N]
        [--device cpu|cuda] [--workers N] [--amp] [--compile] [--subset NAME=PATH ...] [--resume] [--seed N]
    torchrun --nproc_per_node=N examples/ferplus/train.py ...     # DistributedDataParallel
    python examples/ferplus/train.py --demo                       # generated data, RAN vs baseline, on CPU

DIR holds ``fer2013.csv`` + ``fer2013new.csv`` (either FERPlus version) or the provider's image folders
(``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/`` with ``label.csv``). Only the training split uses
``--label-mode``; validation and test always use majority labels. The 48 x 48 grey faces become 3-channel
images of ``--image-size`` pixels, fed in [0, 1] without mean/std normalisation, as the authors did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.common import engine
from examples.ferplus.data import LABEL_MODES
from examples.ferplus.demo import parse_seeds, run_demo
from examples.ferplus.task import make_task

__all__ = ["build_parser", "main", "make_task"]

#: What the FERPlus script offers besides the engine's options (FERPlus has no landmarks).
DATA_OPTIONS = ("regions", "num_regions", "label_mode", "layout")
DATA_CHOICES = {
    "regions": ("fixed", "authors", "random"),
    "label_mode": LABEL_MODES,
    "layout": ("auto", "csv", "folder"),
}
DATA_DEFAULTS = {"label_mode": "majority", "layout": "auto"}


def build_parser() -> argparse.ArgumentParser:
    parser = engine.script_parser(
        "examples/ferplus/train.py",
        __doc__,
        "FERPlus",
        DATA_OPTIONS,
        required=False,
        engine_notes={
            "data_dir": "required without --demo",
            "output_dir": "required; default with --demo: demo-output",
        },
        choices=DATA_CHOICES,
        defaults=DATA_DEFAULTS,
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="generate FER-format data (if absent), train the baseline, RAN and RAN one-pass briefly "
        "on CPU, and print overall / occlusion / pose accuracy and attention on occluded "
        "regions (default: off)",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="S,S,...",
        help="with --demo: run the whole demo once per seed (e.g. 0,1,2) and print mean and "
        "standard deviation of every figure (default: one run with --seed)",
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo:
        if args.seeds is not None:
            try:
                parse_seeds(args.seeds)
            except ValueError as err:
                parser.error(str(err))
        return run_demo(args, engine.explicit_options(parser, argv))
    if args.data_dir is None or args.output_dir is None:
        parser.error("--data-dir and --output-dir are required (or use --demo)")
    cfg = engine.config_from_args(parser, args)
    task = engine.read_data(parser, make_task, cfg)
    return engine.run_script(parser, lambda: engine.run(task, cfg))


if __name__ == "__main__":
    main()
