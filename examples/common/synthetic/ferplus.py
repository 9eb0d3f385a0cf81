r"""The FERPlus writer: ``fer2013.csv`` + ``fer2013new.csv`` and/or the provider's image folders, the published
subset lists of the test split, the ground truth per row and the occluder masks.

It works in three steps: :func:`plan_ferplus` draws every row (class, kind, occlusion, yaw, votes, whether it
has a name), :func:`render_ferplus` draws the faces, and the ``_write_*`` functions write the files.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from examples.ferplus.formats import (
    FER2013_EMOTION,
    FER2013_HEADER,
    FERPLUS_HEADER,
    SPLIT_FOLDERS,
    SPLITS,
    USAGE_TO_SPLIT,
    VOTE_COLUMNS,
    majority_label,
)

from .annotate import (
    _KIND_MIX,
    OCCLUSION_LIST_TYPE,
    _attach_pose,
    _class_list,
    _plan_split,
    _render_plan,
    _split_generator,
    _split_probs,
    _votes_for,
    _write_meta,
)
from .occluders import OCCLUDERS_FILE, write_occluders
from .render import _save_png
from .splits import Splits

__all__ = [
    "FER2013_EMOTION",
    "FER2013_HEADER",
    "FERPLUS_FOLDERS",
    "FERPLUS_HEADER",
    "FERPLUS_LAYOUTS",
    "FERPLUS_SPLITS",
    "FERPLUS_VOTE_COLUMNS",
    "FERPlusPlan",
    "generate_ferplus",
    "plan_ferplus",
    "render_ferplus",
]

#: The 10 vote columns of ``fer2013new.csv`` / ``label.csv`` (the reader's table).
FERPLUS_VOTE_COLUMNS = VOTE_COLUMNS
#: ``Usage`` -> image folder of the provider's layout (the reader's table, keyed by usage).
FERPLUS_FOLDERS = {usage: SPLIT_FOLDERS[split] for usage, split in USAGE_TO_SPLIT.items()}
#: The default sizes of :func:`generate_ferplus`.
FERPLUS_SPLITS = Splits(train=3000, valid=400, test=800)
#: What :func:`generate_ferplus` can write: the reader's layouts, or both.
FERPLUS_LAYOUTS = ("csv", "folder", "both")
_USAGE = {split: usage for usage, split in USAGE_TO_SPLIT.items()}
# Mix of occlusion kinds, from Table I (left/right and glasses/mask split evenly).
_OCC_MIX_FERPLUS = {"upper": 70, "bottom": 138, "left": 106.5, "right": 106.5, "glasses": 92, "mask": 92}
_STR = [str(v) for v in range(256)]
_FERPLUS_DEFAULT_OCC = {"train": 0.08, "valid": 0.08, "test": 0.35}
_FERPLUS_DEFAULT_POSE = {"train": 0.3, "valid": 0.3, "test": 0.38}
_Row = dict[str, Any]


class FERPlusPlan(NamedTuple):
    """One split of a generated FERPlus before its faces are drawn: its rows (one dict each: kind, class, blend,
    occlusion, yaw, votes, whether it has a name) and the generator that draws its faces."""

    split: str
    rows: list[_Row]
    generator: torch.Generator


def generate_ferplus(
    out_dir: str | Path,
    splits: Splits = FERPLUS_SPLITS,
    *,
    seed: int = 0,
    layout: str = "csv",
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    with_image_names: bool = True,
    class_probs: Sequence[float] | None = None,
    empty_name_frac: float = 0.005,
) -> dict[str, Any]:
    """Write a synthetic FERPlus in the provider's formats (see the package docstring).

    Files written under ``out_dir``:

    * ``layout="csv"`` (default): ``fer2013.csv`` (``emotion,pixels,Usage``) and ``fer2013new.csv``
      (``Usage,Image name,<8 classes>,unknown,NF``; without ``Image name`` if ``with_image_names=False``, the
      older version). ``layout="folder"``: ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/`` with PNGs
      and header-less ``label.csv`` (``name,"(0, 0, 48, 48)",<10 votes>``) for the rows that have a name.
      ``layout="both"``: all of it.
    * ``jianfei_occlusion_list.txt`` (``<label>_<fer>.png 8 <k>``, CRLF), ``pose_30_ferplus_list.txt`` and
      ``pose_45_ferplus_list.txt`` (``<label>/<fer>.jpg``, LF): test rows with a name and a majority label, the
      label being that majority label (FERPlus order), ``k`` the occlusion type (0 upper, 1 bottom,
      2 left/right, 3 glasses/mask), pose = the drawn yaw in degrees.
    * ``ferplus_meta.csv``: the ground truth of every row (drawn class, blend, kind, occlusion, yaw, pitch, roll).
    * ``occluders.npz``: where each face's occluder is, per split, keyed ``fer%07d`` of the row index (see
      :mod:`examples.common.synthetic.occluders`).

    Rows are Training, then PublicTest, then PrivateTest; ``Image name`` is ``fer%07d`` of the 0-based row index
    (empty for about ``empty_name_frac`` of the rows, which readers drop).

    Args:
        splits: rows per split: ``train``, ``valid``, ``test`` (Training / PublicTest / PrivateTest).
        seed: the same seed gives byte-identical files; each split draws from its own stream, so changing one
            split's size leaves the other splits' images unchanged.
        layout: ``"csv"``, ``"folder"`` (the reader's layouts) or ``"both"``.
        occlusion: probability that a face is occluded, one number for all splits or per split
            (``{"train", "valid", "test"}``); default 0.08 / 0.08 / 0.35. Kinds follow Table I's mix. The
            occluders here are bigger and starker than most real ones; with rare occlusion in training a
            whole-face CNN loses clearly more on occluded test faces than a region-crop model (see the package
            docstring), with common occlusion (0.15+) in training the gap narrows.
        pose: probability of a large yaw (30-62 degrees, about half of them over 45); the others turn by
            0-27 degrees; default 0.3 / 0.3 / 0.38.
        class_probs: drawn-class mix over the 8 FERPlus classes (default uniform).

    Returns:
        ``{"root", "files": {name: path}, "counts": {...}}``.
    """
    if layout not in FERPLUS_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(FERPLUS_LAYOUTS)}, got {layout!r}")
    plans = plan_ferplus(
        splits, seed=seed, occlusion=occlusion, pose=pose, class_probs=class_probs, empty_name_frac=empty_name_frac
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, others left alone
    rows, images, occluders = render_ferplus(plans)
    files: dict[str, str] = {}
    if layout in ("csv", "both"):
        files.update(_write_csv(out, rows, images, with_image_names))
    if layout in ("folder", "both"):
        files.update(_write_folders(out, rows, images))
    test_rows = [r for r in rows if r["split"] == "test" and r["named"] and r["majority"] >= 0]
    files.update(_write_lists(out, test_rows))
    _write_meta(out / "ferplus_meta.csv", rows, key="name")
    keys = {p.split: [f"fer{r['row']:07d}" for r in rows if r["split"] == p.split] for p in plans}
    occluder_file = write_occluders(out / OCCLUDERS_FILE, {s: (keys[s], occluders[s]) for s in keys})
    files.update(meta=str(out / "ferplus_meta.csv"), occluders=str(occluder_file))
    counts = {_USAGE[p.split]: len(p.rows) for p in plans}
    counts.update(
        empty_names=sum(not r["named"] for r in rows),
        no_majority=sum(r["majority"] < 0 for r in rows),
        occluded_test=sum(r["occlusion"] != "none" for r in test_rows),
        pose_30=sum(abs(r["yaw"]) > 30 for r in test_rows),
        pose_45=sum(abs(r["yaw"]) > 45 for r in test_rows),
    )
    return {"root": str(out), "files": files, "counts": counts}


def plan_ferplus(
    splits: Splits,
    *,
    seed: int = 0,
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    class_probs: Sequence[float] | None = None,
    empty_name_frac: float = 0.005,
) -> list[FERPlusPlan]:
    """Every row of a generated FERPlus, split by split (see :func:`generate_ferplus` for the arguments)."""
    sizes = splits.sizes(SPLITS, "generate_ferplus")
    occ_p = _split_probs(occlusion, _FERPLUS_DEFAULT_OCC, "occlusion")
    pose_p = _split_probs(pose, _FERPLUS_DEFAULT_POSE, "pose")
    probs = list(class_probs) if class_probs is not None else [1.0] * 8
    if len(probs) != 8 or min(probs) < 0 or sum(probs) <= 0:
        raise ValueError(f"class_probs must be 8 non-negative weights, got {probs}")
    plans = []
    for split, n in sizes.items():
        g, rng = _split_generator(seed, "ferplus/" + split)
        rows = _plan_split(
            n,
            _class_list(n, probs, rng),
            kind_mix=_KIND_MIX,
            occlusion_p=occ_p[split],
            occlusion_mix=_OCC_MIX_FERPLUS,
            pose_p=pose_p[split],
            rng=rng,
        )
        n_empty = round(empty_name_frac * n) if n < 200 else max(1, round(empty_name_frac * n))
        n_empty = max(n_empty, 1) if n >= 20 else n_empty
        empty = set(rng.sample(range(n), n_empty)) if n_empty else set()
        for i, r in enumerate(rows):
            r.update(usage=_USAGE[split], split=split, named=i not in empty)
            r["votes"] = _votes_for(r["kind"], r["label"], r["blend"], r["weight"], rng)
        plans.append(FERPlusPlan(split, rows, g))
    return plans


def render_ferplus(plans: Sequence[FERPlusPlan]) -> tuple[list[_Row], torch.Tensor, dict[str, torch.Tensor]]:
    """Draw the faces of ``plans``: all rows in file order (numbered, named ``fer%07d.png`` unless unnamed, with
    their majority label, pitch and roll), their grey 48 x 48 images ``(N, 1, 48, 48)`` and each split's
    occluder alpha."""
    rows: list[_Row] = []
    images: list[torch.Tensor] = []
    occluders: dict[str, torch.Tensor] = {}
    for plan in plans:
        rendered, params = _render_plan(plan.rows, 48, 1, plan.generator)
        _attach_pose(plan.rows, params)
        rows += plan.rows
        images.append(rendered.images)
        occluders[plan.split] = rendered.occluders
    for idx, r in enumerate(rows):
        r.update(row=idx, name=f"fer{idx:07d}.png" if r["named"] else "", majority=majority_label(r["votes"]))
    return rows, torch.cat(images) if images else torch.zeros(0, 1, 48, 48, dtype=torch.uint8), occluders


def _write_csv(out: Path, rows: list[_Row], images: torch.Tensor, with_image_names: bool) -> dict[str, str]:
    p_fer, p_new = out / "fer2013.csv", out / "fer2013new.csv"
    with open(p_fer, "w", newline="") as fh:
        fh.write(",".join(FER2013_HEADER) + "\n")
        for r, img in zip(rows, images, strict=True):
            pixels = " ".join([_STR[v] for v in img.reshape(-1).tolist()])
            fh.write(f"{FER2013_EMOTION[r['label']]},{pixels},{r['usage']}\n")
    with open(p_new, "w", newline="") as fh:
        header = FERPLUS_HEADER if with_image_names else (FERPLUS_HEADER[0], *FERPLUS_HEADER[2:])
        fh.write(",".join(header) + "\n")
        for r in rows:
            fields = [r["usage"], r["name"]] if with_image_names else [r["usage"]]
            fh.write(",".join(fields + [str(v) for v in r["votes"]]) + "\n")
    return {"fer2013": str(p_fer), "fer2013new": str(p_new)}


def _write_folders(out: Path, rows: list[_Row], images: torch.Tensor) -> dict[str, str]:
    files = {}
    for usage, folder in FERPLUS_FOLDERS.items():
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "label.csv", "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            for r in rows:
                if r["usage"] != usage or not r["named"]:
                    continue
                _save_png(images[r["row"]], d / r["name"])
                writer.writerow([r["name"], "(0, 0, 48, 48)", *r["votes"]])
        files[folder] = str(d)
    return files


def _write_lists(out: Path, test_rows: list[_Row]) -> dict[str, str]:
    """The subset lists of the test split, in the published formats."""
    p_occ = out / "jianfei_occlusion_list.txt"
    p_30, p_45 = out / "pose_30_ferplus_list.txt", out / "pose_45_ferplus_list.txt"
    with open(p_occ, "w", newline="") as fh:
        for r in test_rows:
            if r["occlusion"] != "none":
                fh.write(f"{r['majority']}_{r['name']} 8 {OCCLUSION_LIST_TYPE[r['occlusion']]}\r\n")
    with open(p_30, "w", newline="") as f30, open(p_45, "w", newline="") as f45:
        for r in test_rows:
            stem = r["name"][:-4]
            if abs(r["yaw"]) > 30:
                f30.write(f"{r['majority']}/{stem}.jpg\n")
            if abs(r["yaw"]) > 45:
                f45.write(f"{r['majority']}/{stem}.jpg\n")
    return {"occlusion_list": str(p_occ), "pose_30_list": str(p_30), "pose_45_list": str(p_45)}
