r"""The AffectNet writer: the ``Manually_Annotated`` CSV layout (1) or the ``train_set``/``val_set`` layout with
``.npy`` annotations (2), the published subset lists, the ground truth per row and the occluder masks."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from examples.affectnet.formats import AFFECTNET_CLASSES

from .annotate import _CONFUSABLE, _class_list, _plan_split, _render_plan, _split_generator, _split_probs, _write_meta
from .occluders import OCCLUDERS_FILE, write_occluders
from .render import _save_jpeg

__all__ = ["AFFECTNET_CLASSES", "AFFECTNET_HEADER", "FERPLUS_TO_AFFECTNET", "generate_affectnet"]

#: AffectNet code of each FERPlus class (the permutation is its own inverse).
FERPLUS_TO_AFFECTNET = (0, 1, 3, 2, 6, 5, 4, 7)
AFFECTNET_HEADER = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
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
_AFFECTNET_DEFAULT_OCC = {"train": 0.08, "val": 0.35}
_AFFECTNET_DEFAULT_POSE = {"train": 0.35, "val": 0.45}


def generate_affectnet(
    out_dir: str | Path,
    *,
    n_train: int = 2000,
    n_val: int = 400,
    seed: int = 0,
    layout: int = 1,
    image_size: int | None = None,
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    imbalanced: bool = True,
    extra_frac: float = 0.03,
) -> dict[str, Any]:
    """Write a synthetic AffectNet (colour JPEGs, face boxes, 68 landmarks, valence/arousal).

    * ``layout=1``: ``Manually_Annotated_file_lists/{training,validation}.csv`` (header
      ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``)
      and ``Manually_Annotated_Images/<subdir>/<56-hex>.jpg``: a ``image_size`` (default 112) square image with
      the face somewhere inside and its box; landmarks ``x1;y1;...`` (136 values) in image pixels; about
      ``extra_frac`` of the rows are 8 None / 9 Uncertain / 10 No-Face (valence/arousal -2 for 9 and 10).
    * ``layout=2``: ``train_set/`` and ``val_set/``, each ``images/<n>.jpg`` (face crops, default 96 px) and
      ``annotations/<n>_exp.npy`` (the class as a numpy string, e.g. ``'3'``), ``<n>_lnd.npy`` (68x2 float),
      ``<n>_val.npy``, ``<n>_aro.npy`` (numpy strings); classes 0-7 only. Needs numpy.
    * ``occlusion_affectnet_list.txt`` (``val/<label>/<id>/``), ``pose_30_affectnet_list.txt`` (``<label>/<id>.jpg``),
      ``pose_45_affectnet_list.txt`` (``<label>/<id>/8.jpg``): validation rows of classes 0-7 (AffectNet order).
    * ``affectnet_meta.csv``: the ground truth per row.
    * ``occluders.npz``: where each face's occluder is, per split (``train``, ``val``), keyed by the image stem
      (see :mod:`examples.common.synthetic.occluders`).

    The validation split is balanced over the 8 classes; the training split follows AffectNet's imbalance when
    ``imbalanced`` (happiness ~48 %, neutral ~27 %; the four rarest classes are raised to ~4 % each so that
    every class appears) and is uniform otherwise.
    """
    if layout not in (1, 2):
        raise ValueError(f"layout must be 1 (csv lists) or 2 (train_set/val_set with .npy), got {layout!r}")
    np = None
    if layout == 2:
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is present wherever torch.numpy() works
            raise RuntimeError(
                "AffectNet layout 2 writes .npy annotations and needs numpy; install numpy or use layout=1"
            ) from exc
    size = image_size if image_size is not None else (112 if layout == 1 else 96)
    occ_p = _split_probs(occlusion, _AFFECTNET_DEFAULT_OCC, "occlusion")
    pose_p = _split_probs(pose, _AFFECTNET_DEFAULT_POSE, "pose")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, others left alone
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    all_rows: list[dict[str, Any]] = []
    occluders: dict[str, tuple[list[str], torch.Tensor]] = {}
    for split, n in (("train", n_train), ("val", n_val)):
        g, rng = _split_generator(seed, "affectnet/" + split)
        n_extra = round(extra_frac * n) if layout == 1 else 0
        if layout == 1 and extra_frac > 0 and n >= 30:
            n_extra = max(n_extra, 3)  # one row of each of 8 / 9 / 10
        n_main = n - n_extra
        if split == "train" and imbalanced:
            aff_probs = [max(c, 3 * 3750) for c in _AFFECTNET_TRAIN_COUNTS]  # keep a few of every class
        else:
            aff_probs = [1.0] * 8
        ferplus_probs = [aff_probs[FERPLUS_TO_AFFECTNET[k]] for k in range(8)]
        classes = _class_list(n_main, ferplus_probs, rng)
        kind_mix = {"clean": 0.85, "ambiguous": 0.15}
        plan = _plan_split(
            n_main,
            classes,
            kind_mix=kind_mix,
            occlusion_p=occ_p[split],
            occlusion_mix=_OCC_MIX_AFFECTNET,
            pose_p=pose_p[split],
            rng=rng,
        )
        for r in plan:
            r["expression"] = FERPLUS_TO_AFFECTNET[r["label"]]
        extra = [8, 9, 10] * (n_extra // 3) + [8, 9, 10][: n_extra % 3]
        for code in extra:
            c = rng.randrange(8)
            r = {
                "kind": {8: "clean", 9: "ambiguous", 10: "nonface"}[code],
                "label": c,
                "blend": _CONFUSABLE[c][0],
                "weight": 0.5 if code == 9 else 0.0,
                "occlusion": "none",
                "yaw": rng.uniform(-25, 25),
                "expression": code,
            }
            plan.append(r)
        rng.shuffle(plan)
        if layout == 1:
            scale = (0.5, 0.72)
            shift = 0.2
        else:
            scale = (0.9, 1.02)
            shift = 0.04
        rendered, params = _render_plan(plan, size, 3, g, face_scale=scale, max_shift=shift)
        images, landmarks = rendered.images, rendered.landmarks
        for i, r in enumerate(plan):
            r["split"] = split
            r["pitch"] = float(torch.rad2deg(params["pitch"][i]))
            r["roll"] = float(torch.rad2deg(params["roll"][i]))
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
        if layout == 1:
            ids = [
                hashlib.sha224(f"synthetic-affectnet/{seed}/{split}/{i}".encode()).hexdigest() for i in range(len(plan))
            ]
            img_root = out / "Manually_Annotated_Images"
            lists = out / "Manually_Annotated_file_lists"
            lists.mkdir(parents=True, exist_ok=True)
            csv_path = lists / ("training.csv" if split == "train" else "validation.csv")
            with open(csv_path, "w", newline="") as fh:
                fh.write(",".join(AFFECTNET_HEADER) + "\n")
                for i, r in enumerate(plan):
                    sub = str(1 + rng.randrange(1000 if split == "train" else 200))
                    rel = f"{sub}/{ids[i]}.jpg"
                    (img_root / sub).mkdir(parents=True, exist_ok=True)
                    _save_jpeg(images[i], img_root / rel)
                    lm = landmarks[i]
                    box = _face_box(lm, size, rng)
                    lm_text = ";".join(f"{v:.2f}" for v in lm.reshape(-1).tolist())
                    va = "-2" if r["expression"] in (9, 10) else f"{r['valence']:.6f}"
                    ar = "-2" if r["expression"] in (9, 10) else f"{r['arousal']:.6f}"
                    fh.write(f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{lm_text},{r['expression']},{va},{ar}\n")
                    r["id"], r["row"] = ids[i], i
            files["training_csv" if split == "train" else "validation_csv"] = str(csv_path)
            files["images"] = str(img_root)
        else:
            base = out / ("train_set" if split == "train" else "val_set")
            (base / "images").mkdir(parents=True, exist_ok=True)
            (base / "annotations").mkdir(parents=True, exist_ok=True)
            for i, r in enumerate(plan):
                ident = str(i)
                _save_jpeg(images[i], base / "images" / f"{ident}.jpg")
                ann = base / "annotations"
                np.save(ann / f"{ident}_exp.npy", np.array(str(r["expression"])))
                np.save(ann / f"{ident}_lnd.npy", landmarks[i].to(torch.float64).numpy())
                np.save(ann / f"{ident}_val.npy", np.array(f"{r['valence']:.6f}"))
                np.save(ann / f"{ident}_aro.npy", np.array(f"{r['arousal']:.6f}"))
                r["id"], r["row"] = ident, i
            files[f"{split}_set"] = str(base)
        counts[split] = len(plan)
        occluders[split] = ([r["id"] for r in plan], rendered.occluders)
        all_rows += plan
    val_rows = [r for r in all_rows if r["split"] == "val" and r["expression"] < 8]
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
    p_meta = out / "affectnet_meta.csv"
    _write_meta(p_meta, all_rows, key="id")
    p_occluders = write_occluders(out / OCCLUDERS_FILE, occluders)
    files.update(
        occlusion_list=str(p_occ),
        pose_30_list=str(p_30),
        pose_45_list=str(p_45),
        meta=str(p_meta),
        occluders=str(p_occluders),
    )
    counts["occluded_val"] = sum(r["occlusion"] != "none" for r in val_rows)
    counts["pose_30"] = sum(abs(r["yaw"]) > 30 for r in val_rows)
    counts["pose_45"] = sum(abs(r["yaw"]) > 45 for r in val_rows)
    counts["extra_codes"] = sum(r["expression"] >= 8 for r in all_rows)
    return {"root": str(out), "files": files, "counts": counts}


def _face_box(lm: torch.Tensor, size: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A detector-like square box around the landmarks (brows to chin), clipped to the image."""
    lo, hi = lm.min(0).values, lm.max(0).values
    cx, cy = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
    side = max(float(hi[0] - lo[0]), float(hi[1] - lo[1])) * rng.uniform(1.02, 1.12)
    x0 = max(0, round(cx - side / 2 + rng.uniform(-1, 1)))
    y0 = max(0, round(cy - side / 2 + rng.uniform(-1, 1)))
    s = max(1, min(round(side), size - x0, size - y0))
    return x0, y0, s, s

