r"""The FERPlus writer: ``fer2013.csv`` + ``fer2013new.csv`` and/or the provider's image folders, the published
subset lists of the test split, the ground truth per row and the occluder masks."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from examples.ferplus.formats import SPLIT_FOLDERS, USAGE_TO_SPLIT, VOTE_COLUMNS

from .annotate import (
    _KIND_MIX,
    OCCLUSION_LIST_TYPE,
    _class_list,
    _plan_split,
    _render_plan,
    _split_generator,
    _split_probs,
    _votes_for,
    _write_meta,
    majority_label,
)
from .occluders import OCCLUDERS_FILE, write_occluders
from .render import _save_png

__all__ = [
    "FER2013_EMOTION",
    "FER2013_HEADER",
    "FER2013_USAGES",
    "FERPLUS_FOLDERS",
    "FERPLUS_HEADER",
    "FERPLUS_VOTE_COLUMNS",
    "generate_ferplus",
]

#: The 10 vote columns of ``fer2013new.csv`` / ``label.csv`` (the reader's table).
FERPLUS_VOTE_COLUMNS = VOTE_COLUMNS
FERPLUS_HEADER = ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS)
FER2013_HEADER = ("emotion", "pixels", "Usage")
FER2013_USAGES = tuple(USAGE_TO_SPLIT)  # Training, PublicTest, PrivateTest
#: ``Usage`` -> image folder of the provider's layout (the reader's table, keyed by usage).
FERPLUS_FOLDERS = {usage: SPLIT_FOLDERS[split] for usage, split in USAGE_TO_SPLIT.items()}
#: FER2013 7-class ``emotion`` code (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral) for each
#: FERPlus class; FER2013 has no contempt, it is written as Neutral (6).
FER2013_EMOTION = (6, 3, 5, 4, 0, 1, 2, 6)
# Mix of occlusion kinds, from Table I (left/right and glasses/mask split evenly).
_OCC_MIX_FERPLUS = {"upper": 70, "bottom": 138, "left": 106.5, "right": 106.5, "glasses": 92, "mask": 92}
_STR = [str(v) for v in range(256)]
_FERPLUS_DEFAULT_OCC = {"train": 0.08, "valid": 0.08, "test": 0.35}
_FERPLUS_DEFAULT_POSE = {"train": 0.3, "valid": 0.3, "test": 0.38}
_SPLITS_FERPLUS = (("train", "Training"), ("valid", "PublicTest"), ("test", "PrivateTest"))


def generate_ferplus(
    out_dir: str | Path,
    *,
    n_train: int = 3000,
    n_valid: int = 400,
    n_test: int = 800,
    seed: int = 0,
    occlusion: float | Mapping[str, float] | None = None,
    pose: float | Mapping[str, float] | None = None,
    layout: str = "csv",
    with_image_names: bool = True,
    class_probs: Sequence[float] | None = None,
    empty_name_frac: float = 0.005,
) -> dict[str, Any]:
    """Write a synthetic FERPlus in the provider's formats (see the package docstring).

    Files written under ``out_dir``:

    * ``layout="csv"`` (default): ``fer2013.csv`` (``emotion,pixels,Usage``) and ``fer2013new.csv``
      (``Usage,Image name,<8 classes>,unknown,NF``; without ``Image name`` if ``with_image_names=False``, the
      older version). ``layout="folders"``: ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/`` with PNGs
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
        n_train / n_valid / n_test: rows per split (Training / PublicTest / PrivateTest).
        seed: the same seed gives byte-identical files; each split draws from its own stream, so changing one
            split's size leaves the other splits' images unchanged.
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
    if layout not in ("csv", "folders", "both"):
        raise ValueError(f"layout must be 'csv', 'folders' or 'both', got {layout!r}")
    for name, v in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    occ_p = _split_probs(occlusion, _FERPLUS_DEFAULT_OCC, "occlusion")
    pose_p = _split_probs(pose, _FERPLUS_DEFAULT_POSE, "pose")
    probs = list(class_probs) if class_probs is not None else [1.0] * 8
    if len(probs) != 8 or min(probs) < 0 or sum(probs) <= 0:
        raise ValueError(f"class_probs must be 8 non-negative weights, got {probs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, others left alone
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    rows_all: list[dict[str, Any]] = []
    images_all: list[torch.Tensor] = []
    occluders: dict[str, torch.Tensor] = {}
    for split, usage in _SPLITS_FERPLUS:
        g, rng = _split_generator(seed, "ferplus/" + split)
        n = sizes[split]
        plan = _plan_split(
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
        rendered, params = _render_plan(plan, 48, 1, g)
        images = rendered.images
        occluders[split] = rendered.occluders
        for i, r in enumerate(plan):
            r["usage"] = usage
            r["split"] = split
            r["votes"] = _votes_for(r["kind"], r["label"], r["blend"], r["weight"], rng)
            r["named"] = i not in empty
            r["pitch"] = float(torch.rad2deg(params["pitch"][i]))
            r["roll"] = float(torch.rad2deg(params["roll"][i]))
        rows_all += plan
        images_all.append(images)
    images = torch.cat(images_all) if images_all else torch.zeros(0, 1, 48, 48, dtype=torch.uint8)
    for idx, r in enumerate(rows_all):
        r["row"] = idx
        r["name"] = f"fer{idx:07d}.png" if r["named"] else ""
        r["majority"] = majority_label(r["votes"])

    files: dict[str, str] = {}
    if layout in ("csv", "both"):
        p_fer, p_new = out / "fer2013.csv", out / "fer2013new.csv"
        with open(p_fer, "w", newline="") as fh:
            fh.write(",".join(FER2013_HEADER) + "\n")
            for r, img in zip(rows_all, images, strict=True):
                pixels = " ".join([_STR[v] for v in img.reshape(-1).tolist()])
                fh.write(f"{FER2013_EMOTION[r['label']]},{pixels},{r['usage']}\n")
        with open(p_new, "w", newline="") as fh:
            header = FERPLUS_HEADER if with_image_names else (FERPLUS_HEADER[0], *FERPLUS_HEADER[2:])
            fh.write(",".join(header) + "\n")
            for r in rows_all:
                fields = [r["usage"], r["name"]] if with_image_names else [r["usage"]]
                fh.write(",".join(fields + [str(v) for v in r["votes"]]) + "\n")
        files["fer2013"], files["fer2013new"] = str(p_fer), str(p_new)
    if layout in ("folders", "both"):
        for usage, folder in FERPLUS_FOLDERS.items():
            d = out / folder
            d.mkdir(parents=True, exist_ok=True)
            with open(d / "label.csv", "w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                for r in rows_all:
                    if r["usage"] != usage or not r["named"]:
                        continue
                    _save_png(images[r["row"]], d / r["name"])
                    writer.writerow([r["name"], "(0, 0, 48, 48)", *r["votes"]])
            files[folder] = str(d)
    # Subset lists of the test split, in the published formats.
    test_rows = [r for r in rows_all if r["split"] == "test" and r["named"] and r["majority"] >= 0]
    p_occ = out / "jianfei_occlusion_list.txt"
    p_30, p_45 = out / "pose_30_ferplus_list.txt", out / "pose_45_ferplus_list.txt"
    with open(p_occ, "w", newline="") as fh:
        for r in test_rows:
            if r["occlusion"] != "none":
                fh.write(f"{r['majority']}_{r['name']} 8 {OCCLUSION_LIST_TYPE[r['occlusion']]}\r\n")
    n30 = n45 = 0
    with open(p_30, "w", newline="") as f30, open(p_45, "w", newline="") as f45:
        for r in test_rows:
            stem = r["name"][:-4]
            if abs(r["yaw"]) > 30:
                f30.write(f"{r['majority']}/{stem}.jpg\n")
                n30 += 1
            if abs(r["yaw"]) > 45:
                f45.write(f"{r['majority']}/{stem}.jpg\n")
                n45 += 1
    p_meta = out / "ferplus_meta.csv"
    _write_meta(p_meta, rows_all, key="name")
    keys: dict[str, list[str]] = {split: [] for split in sizes}
    for r in rows_all:
        keys[r["split"]].append(f"fer{r['row']:07d}")
    p_occluders = write_occluders(
        out / OCCLUDERS_FILE, {split: (keys[split], occluders[split]) for split in sizes}
    )
    files.update(
        occlusion_list=str(p_occ),
        pose_30_list=str(p_30),
        pose_45_list=str(p_45),
        meta=str(p_meta),
        occluders=str(p_occluders),
    )
    counts = {
        "Training": n_train,
        "PublicTest": n_valid,
        "PrivateTest": n_test,
        "empty_names": sum(not r["named"] for r in rows_all),
        "no_majority": sum(r["majority"] < 0 for r in rows_all),
        "occluded_test": sum(r["occlusion"] != "none" for r in test_rows),
        "pose_30": n30,
        "pose_45": n45,
    }
    return {"root": str(out), "files": files, "counts": counts}

