r"""The AffectNet writer: the ``Manually_Annotated`` CSV layout or the ``train_set``/``val_set`` layout with
``.npy`` annotations, the published subset lists, the ground truth per row and the occluder masks.

It works in three steps: :func:`plan_affectnet` draws every row (class, kind, occlusion, yaw, expression code,
valence and arousal), :func:`render_affectnet` draws the faces, and the ``_write_*`` functions write the files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from examples.affectnet.formats import AFFECTNET_CLASSES, CSV_FILES, CSV_HEADER, NPY_FOLDERS

from .annotate import (
    _CONFUSABLE,
    _attach_pose,
    _class_list,
    _plan_split,
    _render_plan,
    _split_generator,
    _split_probs,
    _write_meta,
)
from .occluders import OCCLUDERS_FILE, write_occluders
from .render import Rendered, _save_jpeg
from .splits import Splits

__all__ = [
    "AFFECTNET_CLASSES",
    "AFFECTNET_HEADER",
    "AFFECTNET_LAYOUTS",
    "AFFECTNET_SPLITS",
    "FERPLUS_TO_AFFECTNET",
    "AffectNetPlan",
    "generate_affectnet",
    "plan_affectnet",
    "render_affectnet",
]

#: AffectNet code of each FERPlus class (the permutation is its own inverse).
FERPLUS_TO_AFFECTNET = (0, 1, 3, 2, 6, 5, 4, 7)
#: The header of the csv layout's list files (the reader's table).
AFFECTNET_HEADER = CSV_HEADER
#: What :func:`generate_affectnet` can write: the reader's layouts.
AFFECTNET_LAYOUTS = ("csv", "npy")
#: The default sizes of :func:`generate_affectnet`: ``test`` is the provider's validation set.
AFFECTNET_SPLITS = Splits(train=2000, test=400)
# The provider's name of each split: in the seeds of the random streams, the occluder file, the counts.
_PROVIDER_SPLIT = {"train": "train", "test": "val"}
# Mix of occlusion kinds, from Table I (left/right and glasses/mask split evenly).
_OCC_MIX_AFFECTNET = {"upper": 84, "bottom": 183, "left": 64, "right": 64, "glasses": 144, "mask": 144}
# 8-class AffectNet training counts (AffectNet order): the default class mix of the training split.
_AFFECTNET_TRAIN_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750)
# Typical (valence, arousal) per FERPlus class.
_VALENCE_AROUSAL = (
    (0.0, 0.0),
    (0.75, 0.35),
    (0.2, 0.75),
    (-0.65, -0.3),
    (-0.6, 0.65),
    (-0.65, 0.35),
    (-0.55, 0.75),
    (-0.45, 0.25),
)
_AFFECTNET_DEFAULT_OCC = {"train": 0.08, "test": 0.35}
_AFFECTNET_DEFAULT_POSE = {"train": 0.35, "test": 0.45}
# Where the face sits in the picture, per layout: (scale range, largest shift), and the default image side.
_FRAMING = {"csv": ((0.5, 0.72), 0.2, 112), "npy": ((0.9, 1.02), 0.04, 96)}
_Row = dict[str, Any]


class AffectNetPlan(NamedTuple):
    """One split of a generated AffectNet before its faces are drawn: the provider's split name (``train`` or
    ``val``), its rows, and the generators that draw its faces and its files' random details."""

    split: str
    rows: list[_Row]
    generator: torch.Generator
    rng: random.Random


def generate_affectnet(
    out_dir: str | Path,
    splits: Splits = AFFECTNET_SPLITS,
    *,
    seed: int = 0,
    layout: str = "csv",
    image_size: int | None = None,
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    imbalanced: bool = True,
    extra_frac: float = 0.03,
) -> dict[str, Any]:
    """Write a synthetic AffectNet (colour JPEGs, face boxes, 68 landmarks, valence/arousal).

    * ``layout="csv"``: ``Manually_Annotated_file_lists/{training,validation}.csv`` (header
      ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``)
      and ``Manually_Annotated_Images/<subdir>/<56-hex>.jpg``: a ``image_size`` (default 112) square image with
      the face somewhere inside and its box; landmarks ``x1;y1;...`` (136 values) in image pixels; about
      ``extra_frac`` of the rows are 8 None / 9 Uncertain / 10 No-Face (valence/arousal -2 for 9 and 10).
    * ``layout="npy"``: ``train_set/`` and ``val_set/``, each ``images/<n>.jpg`` (face crops, default 96 px) and
      ``annotations/<n>_exp.npy`` (the class as a numpy string, e.g. ``'3'``), ``<n>_lnd.npy`` (68x2 float),
      ``<n>_val.npy``, ``<n>_aro.npy`` (numpy strings); classes 0-7 only.
    * ``occlusion_affectnet_list.txt`` (``val/<label>/<id>/``), ``pose_30_affectnet_list.txt`` (``<label>/<id>.jpg``),
      ``pose_45_affectnet_list.txt`` (``<label>/<id>/8.jpg``): validation rows of classes 0-7 (AffectNet order).
    * ``affectnet_meta.csv``: the ground truth per row.
    * ``occluders.npz``: where each face's occluder is, per split (``train``, ``val``), keyed by the image stem
      (see :mod:`examples.common.synthetic.occluders`).

    ``splits``: ``train`` and ``test`` (the provider's validation set, the readers' test split). ``occlusion`` and
    ``pose``: probabilities, one for both splits or per split (``{"train", "test"}``); default 0.08 / 0.35 and
    0.35 / 0.45. The validation split is balanced over the 8 classes; the training split follows AffectNet's
    imbalance when ``imbalanced`` (happiness ~48 %, neutral ~27 %; the four rarest classes are raised to ~4 %
    each so that every class appears) and is uniform otherwise.
    """
    if layout not in AFFECTNET_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(AFFECTNET_LAYOUTS)}, got {layout!r}")
    plans = plan_affectnet(
        splits, seed=seed, layout=layout, occlusion=occlusion, pose=pose, imbalanced=imbalanced, extra_frac=extra_frac
    )
    size = image_size if image_size is not None else _FRAMING[layout][2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, others left alone
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    rows: list[_Row] = []
    occluders: dict[str, tuple[list[str], torch.Tensor]] = {}
    for plan in plans:
        rendered = render_affectnet(plan, size, layout)
        if layout == "csv":
            files.update(_write_csv_split(out, plan, rendered, size, seed))
        else:
            files.update(_write_npy_split(out, plan, rendered))
        counts[plan.split] = len(plan.rows)
        occluders[plan.split] = ([r["id"] for r in plan.rows], rendered.occluders)
        rows += plan.rows
    val_rows = [r for r in rows if r["split"] == "val" and r["expression"] < 8]
    files.update(_write_lists(out, val_rows))
    _write_meta(out / "affectnet_meta.csv", rows, key="id")
    occluder_file = write_occluders(out / OCCLUDERS_FILE, occluders)
    files.update(meta=str(out / "affectnet_meta.csv"), occluders=str(occluder_file))
    counts["occluded_val"] = sum(r["occlusion"] != "none" for r in val_rows)
    counts["pose_30"] = sum(abs(r["yaw"]) > 30 for r in val_rows)
    counts["pose_45"] = sum(abs(r["yaw"]) > 45 for r in val_rows)
    counts["extra_codes"] = sum(r["expression"] >= 8 for r in rows)
    return {"root": str(out), "files": files, "counts": counts}


def plan_affectnet(
    splits: Splits,
    *,
    seed: int = 0,
    layout: str = "csv",
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    imbalanced: bool = True,
    extra_frac: float = 0.03,
) -> list[AffectNetPlan]:
    """Every row of a generated AffectNet, split by split (see :func:`generate_affectnet` for the arguments)."""
    sizes = splits.sizes(tuple(_PROVIDER_SPLIT), "generate_affectnet")
    occ_p = _split_probs(occlusion, _AFFECTNET_DEFAULT_OCC, "occlusion")
    pose_p = _split_probs(pose, _AFFECTNET_DEFAULT_POSE, "pose")
    plans = []
    for split, n in sizes.items():
        name = _PROVIDER_SPLIT[split]
        g, rng = _split_generator(seed, "affectnet/" + name)
        n_extra = round(extra_frac * n) if layout == "csv" else 0
        if layout == "csv" and extra_frac > 0 and n >= 30:
            n_extra = max(n_extra, 3)  # one row of each of 8 / 9 / 10
        aff_probs: list[float]
        if split == "train" and imbalanced:
            aff_probs = [max(c, 3 * 3750) for c in _AFFECTNET_TRAIN_COUNTS]  # keep a few of every class
        else:
            aff_probs = [1.0] * 8
        ferplus_probs = [aff_probs[FERPLUS_TO_AFFECTNET[k]] for k in range(8)]
        classes = _class_list(n - n_extra, ferplus_probs, rng)
        kind_mix = {"clean": 0.85, "ambiguous": 0.15}
        rows = _plan_split(
            n - n_extra,
            classes,
            kind_mix=kind_mix,
            occlusion_p=occ_p[split],
            occlusion_mix=_OCC_MIX_AFFECTNET,
            pose_p=pose_p[split],
            rng=rng,
        )
        for r in rows:
            r["expression"] = FERPLUS_TO_AFFECTNET[r["label"]]
        rows += _extra_rows(n_extra, rng)
        rng.shuffle(rows)
        for r in rows:
            r["split"] = name
            _valence_arousal(r, rng)
        plans.append(AffectNetPlan(name, rows, g, rng))
    return plans


def _extra_rows(n_extra: int, rng: random.Random) -> list[_Row]:
    """Rows of the codes 8 None / 9 Uncertain / 10 No-Face, in turn."""
    rows = []
    for code in [8, 9, 10] * (n_extra // 3) + [8, 9, 10][: n_extra % 3]:
        c = rng.randrange(8)
        rows.append(
            {
                "kind": {8: "clean", 9: "ambiguous", 10: "nonface"}[code],
                "label": c,
                "blend": _CONFUSABLE[c][0],
                "weight": 0.5 if code == 9 else 0.0,
                "occlusion": "none",
                "yaw": rng.uniform(-25, 25),
                "expression": code,
            }
        )
    return rows


def _valence_arousal(r: _Row, rng: random.Random) -> None:
    """A row's valence and arousal: -2 for codes 9 and 10, near 0 for 8, else its class's (blended) plus noise."""
    code = r["expression"]
    if code in (9, 10):
        r["valence"], r["arousal"] = -2.0, -2.0
    elif code == 8:
        r["valence"], r["arousal"] = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
    else:
        v, a = _VALENCE_AROUSAL[r["label"]]
        wv = r["weight"]
        v2, a2 = _VALENCE_AROUSAL[r["blend"]]
        v, a = v + wv * (v2 - v), a + wv * (a2 - a)
        r["valence"] = max(-1.0, min(1.0, v + rng.gauss(0, 0.12)))
        r["arousal"] = max(-1.0, min(1.0, a + rng.gauss(0, 0.12)))
    r["list_label"] = code


def render_affectnet(plan: AffectNetPlan, size: int, layout: str) -> Rendered:
    """Draw the faces of one split (colour, ``size`` pixels, framed as the layout's images are) and record each
    row's pitch and roll."""
    scale, shift, _ = _FRAMING[layout]
    rendered, params = _render_plan(plan.rows, size, 3, plan.generator, face_scale=scale, max_shift=shift)
    _attach_pose(plan.rows, params)
    return rendered


def _write_csv_split(out: Path, plan: AffectNetPlan, rendered: Rendered, size: int, seed: int) -> dict[str, str]:
    """One split of the csv layout: its list file and its images in numbered sub-folders, each row's face box
    drawn around its landmarks."""
    rng = plan.rng
    ids = [
        hashlib.sha224(f"synthetic-affectnet/{seed}/{plan.split}/{i}".encode()).hexdigest()
        for i in range(len(plan.rows))
    ]
    img_root = out / "Manually_Annotated_Images"
    lists = out / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    reader_split = "train" if plan.split == "train" else "test"
    csv_path = lists / CSV_FILES[reader_split]
    with open(csv_path, "w", newline="") as fh:
        fh.write(",".join(AFFECTNET_HEADER) + "\n")
        for i, r in enumerate(plan.rows):
            sub = str(1 + rng.randrange(1000 if plan.split == "train" else 200))
            rel = f"{sub}/{ids[i]}.jpg"
            (img_root / sub).mkdir(parents=True, exist_ok=True)
            _save_jpeg(rendered.images[i], img_root / rel)
            lm = rendered.landmarks[i]
            box = _face_box(lm, size, rng)
            lm_text = ";".join(f"{v:.2f}" for v in lm.reshape(-1).tolist())
            va = "-2" if r["expression"] in (9, 10) else f"{r['valence']:.6f}"
            ar = "-2" if r["expression"] in (9, 10) else f"{r['arousal']:.6f}"
            fh.write(f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{lm_text},{r['expression']},{va},{ar}\n")
            r["id"], r["row"] = ids[i], i
    return {"training_csv" if plan.split == "train" else "validation_csv": str(csv_path), "images": str(img_root)}


def _write_npy_split(out: Path, plan: AffectNetPlan, rendered: Rendered) -> dict[str, str]:
    """One split of the npy layout: ``images/<n>.jpg`` and the four ``annotations/<n>_*.npy`` of each row."""
    base = out / NPY_FOLDERS["train" if plan.split == "train" else "test"]
    (base / "images").mkdir(parents=True, exist_ok=True)
    ann = base / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(plan.rows):
        ident = str(i)
        _save_jpeg(rendered.images[i], base / "images" / f"{ident}.jpg")
        np.save(ann / f"{ident}_exp.npy", np.array(str(r["expression"])))
        np.save(ann / f"{ident}_lnd.npy", rendered.landmarks[i].to(torch.float64).numpy())
        np.save(ann / f"{ident}_val.npy", np.array(f"{r['valence']:.6f}"))
        np.save(ann / f"{ident}_aro.npy", np.array(f"{r['arousal']:.6f}"))
        r["id"], r["row"] = ident, i
    return {f"{plan.split}_set": str(base)}


def _write_lists(out: Path, val_rows: Sequence[_Row]) -> dict[str, str]:
    """The subset lists of the validation split, in the published formats."""
    p_occ = out / "occlusion_affectnet_list.txt"
    p_30, p_45 = out / "pose_30_affectnet_list.txt", out / "pose_45_affectnet_list.txt"
    with open(p_occ, "w", newline="") as fh:
        for r in val_rows:
            if r["occlusion"] != "none":
                fh.write(f"val/{r['expression']}/{r['id']}/\n")
    with open(p_30, "w", newline="") as f30, open(p_45, "w", newline="") as f45:
        for r in val_rows:
            if abs(r["yaw"]) > 30:
                f30.write(f"{r['expression']}/{r['id']}.jpg\n")
            if abs(r["yaw"]) > 45:
                f45.write(f"{r['expression']}/{r['id']}/8.jpg\n")
    return {"occlusion_list": str(p_occ), "pose_30_list": str(p_30), "pose_45_list": str(p_45)}


def _face_box(lm: torch.Tensor, size: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A detector-like square box around the landmarks (brows to chin), clipped to the image."""
    lo, hi = lm.min(0).values, lm.max(0).values
    cx, cy = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
    side = max(float(hi[0] - lo[0]), float(hi[1] - lo[1])) * rng.uniform(1.02, 1.12)
    x0 = max(0, round(cx - side / 2 + rng.uniform(-1, 1)))
    y0 = max(0, round(cy - side / 2 + rng.uniform(-1, 1)))
    s = max(1, min(round(side), size - x0, size - y0))
    return x0, y0, s, s
