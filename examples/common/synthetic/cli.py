r"""Write synthetic FERPlus, AffectNet, RAF-DB or SFEW look-alikes, or a contact sheet of generated faces.

Run as ``python -m examples.common.synthetic {ferplus,affectnet,rafdb,sfew,sheet} --out ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .affectnet import generate_affectnet
from .ferplus import generate_ferplus
from .rafdb import generate_rafdb
from .sfew import generate_sfew
from .sheet import contact_sheet

__all__ = ["main"]


def _parse_split_prob(text: str | None) -> float | dict[str, float] | None:
    """``0.3`` (all splits) or ``train=0.1,test=0.4``."""
    if text is None:
        return None
    if "=" not in text:
        return float(text)
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = float(v)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (see the package docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m examples.common.synthetic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("ferplus", help="write a synthetic FERPlus (fer2013.csv + fer2013new.csv, or folders)")
    fp.add_argument("--out", required=True, type=Path)
    fp.add_argument("--train", type=int, default=3000)
    fp.add_argument("--valid", type=int, default=400)
    fp.add_argument("--test", type=int, default=800)
    fp.add_argument("--layout", choices=("csv", "folders", "both"), default="csv")
    fp.add_argument("--no-image-names", action="store_true", help="write the older fer2013new.csv without names")
    an = sub.add_parser("affectnet", help="write a synthetic AffectNet (layout 1: csv lists; 2: .npy)")
    an.add_argument("--out", required=True, type=Path)
    an.add_argument("--train", type=int, default=2000)
    an.add_argument("--val", type=int, default=400)
    an.add_argument("--layout", type=int, choices=(1, 2), default=1)
    an.add_argument("--size", type=int, default=None, help="image side (default 112 for layout 1, 96 for 2)")
    an.add_argument("--balanced", action="store_true", help="uniform training classes (default: imbalanced)")
    for p in (fp, an):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--occlusion", default=None, help="probability, e.g. 0.3 or train=0.1,test=0.4")
        p.add_argument("--pose", default=None, help="probability of a yaw over 30 degrees, same syntax")
    rf = sub.add_parser("rafdb", help="write a small RAF-DB look-alike (provider layout or Kaggle-style copy)")
    rf.add_argument("--out", required=True, type=Path)
    rf.add_argument("--layout", choices=("provider", "kaggle"), default="provider")
    rf.add_argument("--train", type=int, default=210)
    rf.add_argument("--test", type=int, default=105)
    rf.add_argument("--seed", type=int, default=0)
    sf = sub.add_parser("sfew", help="write a small SFEW look-alike (frames and/or aligned faces)")
    sf.add_argument("--out", required=True, type=Path)
    sf.add_argument("--variant", choices=("both", "frames", "aligned"), default="both")
    sf.add_argument("--train", type=int, default=140)
    sf.add_argument("--val", type=int, default=70)
    sf.add_argument("--seed", type=int, default=0)
    sh = sub.add_parser("sheet", help="save a contact sheet PNG")
    sh.add_argument("--out", required=True, type=Path)
    sh.add_argument("--size", type=int, default=48)
    sh.add_argument("--color", action="store_true")
    sh.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "ferplus":
        result = generate_ferplus(
            args.out,
            n_train=args.train,
            n_valid=args.valid,
            n_test=args.test,
            seed=args.seed,
            occlusion=_parse_split_prob(args.occlusion),
            pose=_parse_split_prob(args.pose),
            layout=args.layout,
            with_image_names=not args.no_image_names,
        )
    elif args.command == "affectnet":
        try:
            result = generate_affectnet(
                args.out,
                n_train=args.train,
                n_val=args.val,
                seed=args.seed,
                layout=args.layout,
                image_size=args.size,
                occlusion=_parse_split_prob(args.occlusion),
                pose=_parse_split_prob(args.pose),
                imbalanced=not args.balanced,
            )
        except RuntimeError as exc:  # layout 2 without numpy
            print(f"skipped: {exc}", file=sys.stderr)
            return 2
    elif args.command in ("rafdb", "sfew"):
        if args.command == "rafdb":
            written = generate_rafdb(args.out, train=args.train, test=args.test, seed=args.seed, layout=args.layout)
        else:
            written = generate_sfew(args.out, train=args.train, val=args.val, seed=args.seed, variant=args.variant)
        for what, where in written.items():
            print(f"{what}: {where}")
        return 0
    else:
        path = contact_sheet(args.out, size=args.size, channels=3 if args.color else 1, seed=args.seed)
        print(f"wrote {path}")
        return 0
    took = time.perf_counter() - start
    print(f"wrote {result['root']} in {took:.1f} s")
    for k, v in result["counts"].items():
        print(f"  {k}: {v}")
    for k, v in result["files"].items():
        print(f"  {k}: {v}")
    return 0

