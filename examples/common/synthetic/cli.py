r"""Write synthetic FERPlus, AffectNet, RAF-DB or SFEW look-alikes, or a contact sheet of generated faces.

Run as ``python -m examples.common.synthetic {ferplus,affectnet,rafdb,sfew,sheet} --out ...``. Every dataset
takes its split sizes as ``--train``, ``--valid`` (FERPlus only) and ``--test`` (the split the readers test on).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from examples.rafdb.formats import LABEL_FILE_NAMES

from .affectnet import AFFECTNET_LAYOUTS, AFFECTNET_SPLITS, generate_affectnet
from .ferplus import FERPLUS_LAYOUTS, FERPLUS_SPLITS, generate_ferplus
from .rafdb import RAFDB_LAYOUTS, generate_rafdb
from .sfew import SFEW_VARIANTS, generate_sfew
from .sheet import contact_sheet
from .splits import Splits

__all__ = ["build_parser", "main"]


def _split_prob(text: str) -> float | dict[str, float]:
    """``0.3`` (all splits) or ``train=0.1,test=0.4``."""
    try:
        if "=" not in text:
            return float(text)
        return {k.strip(): float(v) for k, _, v in (part.partition("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability or SPLIT=P,...; got {text!r}") from None


def _dataset(sub: Any, name: str, help: str, splits: Splits, split_names: Sequence[str]) -> argparse.ArgumentParser:
    """A dataset's sub-command with ``--out``, ``--seed`` and one size option per split (default ``splits``)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("--out", required=True, type=Path)
    for split in split_names:
        p.add_argument(
            f"--{split}", type=int, default=getattr(splits, split), help=f"{split} images (default: %(default)s)"
        )
    p.add_argument("--seed", type=int, default=0)
    return p


def _probabilities(p: argparse.ArgumentParser) -> None:
    p.add_argument("--occlusion", type=_split_prob, default=None, help="probability, e.g. 0.3 or train=0.1,test=0.4")
    p.add_argument("--pose", type=_split_prob, default=None, help="probability of a yaw over 30 degrees, same syntax")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.common.synthetic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fp = _dataset(
        sub,
        "ferplus",
        "write a synthetic FERPlus (csv files, image folders or both)",
        FERPLUS_SPLITS,
        ("train", "valid", "test"),
    )
    fp.add_argument("--layout", choices=FERPLUS_LAYOUTS, default="csv")
    fp.add_argument("--no-image-names", action="store_true", help="write the older fer2013new.csv without names")
    _probabilities(fp)
    an = _dataset(
        sub,
        "affectnet",
        "write a synthetic AffectNet (csv lists or .npy annotations)",
        AFFECTNET_SPLITS,
        ("train", "test"),
    )
    an.add_argument("--layout", choices=AFFECTNET_LAYOUTS, default="csv")
    an.add_argument("--size", type=int, default=None, help="image side (default 112 for csv, 96 for npy)")
    an.add_argument("--balanced", action="store_true", help="uniform training classes (default: imbalanced)")
    _probabilities(an)
    rf = _dataset(
        sub,
        "rafdb",
        "write a small RAF-DB look-alike (provider layout or Kaggle-style copy)",
        Splits(train=210, test=105),
        ("train", "test"),
    )
    rf.add_argument("--layout", choices=RAFDB_LAYOUTS, default="provider")
    rf.add_argument("--label-file", choices=LABEL_FILE_NAMES, default=LABEL_FILE_NAMES[0])
    sf = _dataset(
        sub,
        "sfew",
        "write a small SFEW look-alike (frames and/or aligned faces)",
        Splits(train=140, test=70),
        ("train", "test"),
    )
    sf.add_argument("--variant", choices=SFEW_VARIANTS, default="both")
    sh = sub.add_parser("sheet", help="save a contact sheet PNG")
    sh.add_argument("--out", required=True, type=Path)
    sh.add_argument("--size", type=int, default=48)
    sh.add_argument("--color", action="store_true")
    sh.add_argument("--seed", type=int, default=0)
    return parser


def _splits(args: argparse.Namespace) -> Splits:
    return Splits(train=args.train, valid=getattr(args, "valid", 0), test=args.test)


def _ferplus(args: argparse.Namespace) -> dict[str, Any]:
    return generate_ferplus(
        args.out,
        _splits(args),
        seed=args.seed,
        layout=args.layout,
        occlusion=args.occlusion,
        pose=args.pose,
        with_image_names=not args.no_image_names,
    )


def _affectnet(args: argparse.Namespace) -> dict[str, Any]:
    return generate_affectnet(
        args.out,
        _splits(args),
        seed=args.seed,
        layout=args.layout,
        image_size=args.size,
        occlusion=args.occlusion,
        pose=args.pose,
        imbalanced=not args.balanced,
    )


def _rafdb(args: argparse.Namespace) -> dict[str, Path]:
    return generate_rafdb(args.out, _splits(args), seed=args.seed, layout=args.layout, label_file=args.label_file)


def _sfew(args: argparse.Namespace) -> dict[str, Path]:
    return generate_sfew(args.out, _splits(args), seed=args.seed, variant=args.variant)


_WRITERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "ferplus": _ferplus,
    "affectnet": _affectnet,
    "rafdb": _rafdb,
    "sfew": _sfew,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (see the package docstring); returns the exit status (2 for a bad argument)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sheet":
        print(f"wrote {contact_sheet(args.out, size=args.size, channels=3 if args.color else 1, seed=args.seed)}")
        return 0
    start = time.perf_counter()
    try:
        result = _WRITERS[args.command](args)
    except ValueError as err:  # sizes or probabilities out of range
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    if "counts" not in result:  # the image-folder datasets: what was written where
        for what, where in result.items():
            print(f"{what}: {where}")
        return 0
    print(f"wrote {result['root']} in {time.perf_counter() - start:.1f} s")
    for k, v in (*result["counts"].items(), *result["files"].items()):
        print(f"  {k}: {v}")
    return 0
