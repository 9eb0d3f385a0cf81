r"""Synthetic FERPlus / AffectNet look-alikes: procedural faces whose expressions live in local facial parts.

Neither FERPlus nor AffectNet can be downloaded on a machine without internet (both are licence-gated), so the
examples and their tests run on data drawn here and written in **exactly** the providers' file formats. The
faces are cartoons, but they are built so that Region Attention Networks have something real to find:

* every expression has its own signature in *several* local parts (brows, eyes, the nose/glabella area, mouth),
  so a crop that sees only the upper or only the lower face still carries the class, while a model that relies
  on the whole face loses evidence when a part is hidden;
* identity varies (head shape, feature spacing, skin tone, hair, background, lighting, blur, noise, contrast),
  expressions vary in intensity and some images blend two expressions (with annotator votes to match);
* occlusions of the four types of the RAN paper's Table I (upper, bottom, left/right, glasses/mask) and yaw-like
  head poses are drawn with chosen probabilities per split and recorded, and the test split gets occlusion and
  pose lists in the published formats of ``kaiwang960112/Challenge-condition-FER-dataset``.

Quality check (a 3-layer CNN, 8 epochs on 2,300 training faces on 2 CPU cores; the region model is the same
CNN on the paper's 5 fixed crops + the whole face, native crop sizes, self-attention pooling; 855 test faces,
298 occluded, so about +-3 points of noise on the occluded accuracies). Accuracy clean / occluded / pose > 30:

==========================  ======================  ======================
training faces occluded     whole face              regions
==========================  ======================  ======================
5 %                         76.1 / 37.9 / 51.1      77.0 / 46.3 / 56.1
8 % (the default)           84.6 / 46.6 / 59.9      83.3 / 53.4 / 61.8
15 %                        81.1 / 49.7 / 62.1      82.9 / 53.7 / 62.4
==========================  ======================  ======================

Rendering is vectorised in torch: every part is an analytic shape (ellipse, band between two curves, stroke,
capsule) whose anti-aliased coverage is computed for a whole batch at once and composited back to front, so no
supersampling is needed (a few thousand 48x48 faces take a few seconds on two CPU cores). The same seed gives
byte-identical files on the same machine and torch version.

Convention:
    Drawing coordinates are normalised image coordinates, ``x`` to the right and ``y`` down, both in
    ``[-1, 1]`` across the image; pixel ``i`` covers ``[i, i + 1)`` in continuous pixel coordinates, so the
    normalised coordinate of its centre is ``(i + 0.5) / size * 2 - 1``. Landmarks are written in continuous
    pixel coordinates (``x``, ``y``), the iBUG 68-point order. "Left"/"right" are as seen in the image.

Python API:
    :func:`generate_ferplus`, :func:`generate_affectnet`, :func:`render_faces`, :func:`sample_faces` +
    :func:`render_batch`, :func:`majority_label`, :func:`contact_sheet`.

Command line (both forms work)::

    python -m examples.common.synthetic ferplus --out DIR [--train N --valid N --test N --seed S --layout csv]
    python examples/common/synthetic.py affectnet --out DIR [--train N --val N --layout 1]
    python -m examples.common.synthetic sheet --out /tmp/synthetic_sheet.png
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "AFFECTNET_CLASSES",
    "FER2013_EMOTION",
    "FERPLUS_CLASSES",
    "FERPLUS_TO_AFFECTNET",
    "FERPLUS_VOTE_COLUMNS",
    "OCCLUSIONS",
    "OCCLUSION_LIST_TYPE",
    "contact_sheet",
    "generate_affectnet",
    "generate_ferplus",
    "majority_label",
    "render_batch",
    "render_faces",
    "sample_faces",
]

#: FERPlus class order (labels 0-7 of ``fer2013new.csv`` and of the published FERPlus lists).
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
#: The 10 vote columns of ``fer2013new.csv`` / ``label.csv``.
FERPLUS_VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
FERPLUS_HEADER = ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS)
FER2013_HEADER = ("emotion", "pixels", "Usage")
FER2013_USAGES = ("Training", "PublicTest", "PrivateTest")
FERPLUS_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
#: FER2013 7-class ``emotion`` code (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral) for each
#: FERPlus class; FER2013 has no contempt, it is written as Neutral (6).
FER2013_EMOTION = (6, 3, 5, 4, 0, 1, 2, 6)
#: AffectNet ``expression`` codes 0-7.
AFFECTNET_CLASSES = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
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
#: Occlusion codes used by the renderer (index = code).
OCCLUSIONS = ("none", "upper", "bottom", "left", "right", "glasses", "mask")
#: Occlusion type ``k`` of the published FERPlus list (``<label>_<fer>.png 8 <k>``): the Table I columns in order.
#: The counts of k in the published list (70 / 138 / 213 / 184) equal Table I's upper / bottom / left-right /
#: glasses-mask counts for FERPlus.
OCCLUSION_LIST_TYPE = {"upper": 0, "bottom": 1, "left": 2, "right": 2, "glasses": 3, "mask": 3}
# Mix of occlusion kinds, from Table I (left/right and glasses/mask split evenly).
_OCC_MIX_FERPLUS = {"upper": 70, "bottom": 138, "left": 106.5, "right": 106.5, "glasses": 92, "mask": 92}
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
# Expressions annotators confuse (and that ambiguous images blend), per FERPlus class.
_CONFUSABLE = ((3, 7), (2, 0), (6, 1), (0, 6), (5, 3), (4, 7), (2, 3), (0, 5))

# ----------------------------------------------------------------------------------------------------------------
# Expression model
# ----------------------------------------------------------------------------------------------------------------

_EXPR = (
    "mouth_curve",  # corner lift (+ up), normalised units
    "mouth_open",  # half opening of the mouth
    "mouth_width",  # width factor
    "mouth_asym",  # one corner raised
    "teeth",  # share of the opening showing teeth
    "lip_raise",  # upper lip raised on one side (disgust)
    "brow_raise",  # brows up
    "brow_tilt",  # inner brow ends down (+) or up (-)
    "brow_arch",  # brow middle up
    "brow_asym",  # one brow raised
    "brow_pinch",  # inner ends drawn together
    "eye_open",  # eye opening factor
    "eye_smile",  # eyes arched into crescents
    "nose_wrinkle",  # horizontal creases over the nose bridge
    "glabella",  # vertical frown lines between the brows
    "smile_lines",  # nasolabial folds
    "clench",  # teeth clenched (dark line between the rows)
)
# One row per FERPlus class (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt), columns in
# the order of _EXPR. Every class differs from the others in the upper face (brows, eyes, glabella, nose) AND in
# the lower face (mouth), so that a part of the face still carries it when another part is hidden.
# fmt: off
_EXPR_TABLE = torch.tensor([
    # curve open  width asym  teeth lrais brais tilt  arch  basym pinch eopen esmil wrink glab  smile clench
    [0.00,  0.00, 1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.01, 0.00, 0.00, 1.00, 0.00, 0.0,  0.0,  0.0,  0.0],
    [0.15,  0.06, 1.18, 0.00, 0.65, 0.00, 0.02, 0.00, 0.02, 0.00, 0.00, 0.55, 1.00, 0.0,  0.0,  1.0,  0.0],
    [0.00,  0.17, 0.52, 0.00, 0.00, 0.00, 0.11, 0.00, 0.06, 0.00, 0.00, 1.65, 0.00, 0.0,  0.0,  0.0,  0.0],
    [-0.12, 0.00, 0.88, 0.00, 0.00, 0.00, 0.02, -0.1, 0.00, 0.00, 0.02, 0.65, 0.00, 0.0,  0.0,  0.0,  0.0],
    [-0.03, 0.05, 0.80, 0.00, 1.00, 0.00, -.06, 0.12, -.01, 0.00, 0.05, 0.55, 0.00, 0.0,  1.0,  0.0,  1.0],
    [-0.06, 0.02, 0.90, 0.02, 0.60, 0.08, -.04, 0.05, 0.00, 0.00, 0.03, 0.50, 0.25, 1.0,  0.3,  0.5,  0.0],
    [-0.03, 0.07, 1.25, 0.00, 0.30, 0.00, 0.08, -.08, -.02, 0.00, 0.04, 1.55, 0.00, 0.0,  0.0,  0.0,  0.0],
    [0.00,  0.00, 0.95, 0.14, 0.00, 0.00, 0.00, 0.00, 0.01, 0.07, 0.00, 0.75, 0.00, 0.0,  0.0,  0.0,  0.0],
], dtype=torch.float32)
# fmt: on
_E = {name: i for i, name in enumerate(_EXPR)}


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _choice(n: int, probs: Sequence[float], g: torch.Generator) -> torch.Tensor:
    p = torch.tensor(probs, dtype=torch.float64)
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=g)


def _occlusion_codes(occlusion: Sequence[str | int] | torch.Tensor | None, n: int) -> torch.Tensor:
    if occlusion is None:
        return torch.zeros(n, dtype=torch.long)
    if isinstance(occlusion, torch.Tensor):
        codes = occlusion.long().reshape(-1)
    else:
        out = []
        for o in occlusion:
            if isinstance(o, str):
                if o not in OCCLUSIONS:
                    raise ValueError(f"unknown occlusion {o!r}; expected one of {', '.join(OCCLUSIONS)}")
                out.append(OCCLUSIONS.index(o))
            else:
                out.append(int(o))
        codes = torch.tensor(out, dtype=torch.long)
    if codes.numel() != n or (codes.numel() and (codes.min() < 0 or codes.max() >= len(OCCLUSIONS))):
        raise ValueError(f"occlusion must give {n} codes in 0..{len(OCCLUSIONS) - 1}, got {codes.tolist()[:10]}")
    return codes


def sample_faces(
    labels: Sequence[int] | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    blend_labels: Sequence[int] | torch.Tensor | None = None,
    blend_weights: Sequence[float] | torch.Tensor | None = None,
    occlusion: Sequence[str | int] | torch.Tensor | None = None,
    yaw: Sequence[float] | torch.Tensor | None = None,
    degraded: Sequence[bool] | torch.Tensor | None = None,
    nonface: Sequence[bool] | torch.Tensor | None = None,
    face_scale: tuple[float, float] = (1.0, 1.1),
    max_shift: float = 0.05,
) -> dict[str, torch.Tensor]:
    """Draw identity, expression and pose parameters for one face per label (FERPlus class 0-7).

    Args:
        labels: FERPlus classes, shape ``(N,)``.
        generator: source of randomness (a fresh one seeded with 0 if None).
        blend_labels / blend_weights: optional second class per face and its weight in ``[0, 1]`` (ambiguous
            faces); the expression parameters are mixed linearly.
        occlusion: per face an occlusion name from :data:`OCCLUSIONS` (or its code); default none.
        yaw: per face the yaw-like head turn in degrees (sign = direction); default ``U(-25, 25)``.
        degraded: faces drawn so badly (heavy blur, noise, low contrast) that annotators say "unknown".
        nonface: images with no face at all (blobs on a background), the FERPlus ``NF`` case.
        face_scale: range of the face size relative to a tight 48x48 FER crop (``1`` fills it).
        max_shift: largest shift of the face centre, in normalised units.

    Returns:
        A dict of ``(N,)`` tensors consumed by :func:`render_batch`.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    labels_t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    n = labels_t.numel()
    if n and (labels_t.min() < 0 or labels_t.max() >= len(FERPLUS_CLASSES)):
        raise ValueError(f"labels must be FERPlus classes 0..7, got {labels_t.tolist()[:10]}")
    expr = _EXPR_TABLE[labels_t]
    if blend_labels is not None:
        other = _EXPR_TABLE[torch.as_tensor(blend_labels, dtype=torch.long).reshape(-1)]
        w = torch.as_tensor(blend_weights if blend_weights is not None else [0.5] * n, dtype=torch.float32)
        expr = expr + w.reshape(-1, 1) * (other - expr)
    neutral = _EXPR_TABLE[0]
    intensity = _uniform(n, 0.7, 1.2, g).reshape(-1, 1)
    expr = neutral + intensity * (expr - neutral)
    jitter = torch.tensor(
        [0.015, 0.01, 0.06, 0.01, 0.1, 0.01, 0.015, 0.015, 0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    )
    expr = expr + jitter * torch.randn(n, len(_EXPR), generator=g)
    nonnegative = [_E[k] for k in ("mouth_open", "teeth", "lip_raise", "mouth_asym", "brow_asym", "nose_wrinkle",
                                   "glabella", "smile_lines", "clench")]
    expr[:, nonnegative] = expr[:, nonnegative].clamp_min(0.0)
    expr[:, _E["teeth"]] = expr[:, _E["teeth"]].clamp_max(1.0)
    expr[:, _E["eye_open"]] = expr[:, _E["eye_open"]].clamp(0.3, 2.0)
    p: dict[str, torch.Tensor] = {name: expr[:, i].contiguous() for i, name in enumerate(_EXPR)}
    p["label"] = labels_t.clone()
    p["side"] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)  # which corner/brow/lip side
    p["brow_side"] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    # Pose: the face's place, size and in-plane rotation, and the yaw/pitch-like turn.
    p["scale"] = _uniform(n, *face_scale, g)
    p["tx"] = _uniform(n, -max_shift, max_shift, g)
    p["ty"] = _uniform(n, -max_shift, max_shift, g)
    p["roll"] = torch.deg2rad(_uniform(n, -10.0, 10.0, g))
    yaw_deg = _uniform(n, -25.0, 25.0, g) if yaw is None else torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    p["yaw"] = torch.deg2rad(yaw_deg)
    p["pitch"] = torch.deg2rad(_uniform(n, -10.0, 10.0, g))
    # Identity.
    p["head_w"] = _uniform(n, 0.70, 0.82, g)
    p["head_h"] = _uniform(n, 0.93, 1.02, g)
    p["head_cy"] = _uniform(n, 0.0, 0.06, g)
    p["eye_dx"] = _uniform(n, 0.26, 0.32, g)
    p["eye_y"] = _uniform(n, -0.2, -0.12, g)
    p["eye_w"] = _uniform(n, 0.11, 0.14, g)
    p["eye_h"] = _uniform(n, 0.055, 0.07, g)
    p["gaze"] = _uniform(n, -0.25, 0.25, g)
    p["brow_gap"] = _uniform(n, 0.16, 0.21, g)
    p["brow_len"] = _uniform(n, 0.13, 0.17, g)
    p["brow_th"] = _uniform(n, 0.028, 0.042, g)
    p["nose_y"] = _uniform(n, 0.12, 0.2, g)
    p["nose_w"] = _uniform(n, 0.05, 0.075, g)
    p["nose_depth"] = _uniform(n, 0.12, 0.2, g)
    p["mouth_y"] = p["nose_y"] + _uniform(n, 0.28, 0.34, g)
    p["mouth_w"] = _uniform(n, 0.19, 0.24, g)
    p["lip_th"] = _uniform(n, 0.022, 0.036, g)
    tone = torch.rand(n, generator=g)
    light, dark = torch.tensor([0.97, 0.82, 0.71]), torch.tensor([0.42, 0.27, 0.18])
    skin = light + tone.reshape(-1, 1) * (dark - light) + 0.03 * torch.randn(n, 3, generator=g)
    p["skin"] = skin.clamp(0.05, 1.0)
    hair_palette = torch.tensor(
        [
            [0.08, 0.06, 0.05],
            [0.25, 0.16, 0.09],
            [0.55, 0.38, 0.2],
            [0.85, 0.72, 0.45],
            [0.6, 0.6, 0.6],
            [0.45, 0.15, 0.08],
        ]
    )
    hair = hair_palette[_choice(n, (5, 4, 2, 1.5, 1, 1), g)] * _uniform(n, 0.8, 1.15, g).reshape(-1, 1)
    p["hair"] = hair.clamp(0.0, 1.0)
    p["hairline"] = torch.where(torch.rand(n, generator=g) < 0.08, torch.full((n,), -1.3), _uniform(n, -0.85, -0.58, g))
    p["hair_long"] = (torch.rand(n, generator=g) < 0.45).float()
    p["iris"] = torch.tensor([[0.25, 0.15, 0.08], [0.2, 0.35, 0.55], [0.25, 0.35, 0.2]])[_choice(n, (6, 2, 1), g)]
    p["clothes"] = torch.rand(n, 3, generator=g)
    p["bg1"] = torch.rand(n, 3, generator=g)
    p["bg2"] = (p["bg1"] + 0.35 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    p["bg_angle"] = _uniform(n, 0.0, 2 * math.pi, g)
    p["bg_tex"] = _uniform(n, 0.0, 0.25, g)
    p["light_x"] = _uniform(n, -0.3, 0.3, g)
    p["light_y"] = _uniform(n, -0.2, 0.15, g)
    # Camera: blur (edge width in pixels), noise, contrast, brightness.
    p["aa"] = _uniform(n, 0.9, 1.7, g)
    p["noise"] = _uniform(n, 0.0, 0.035, g)
    p["contrast"] = _uniform(n, 0.75, 1.15, g)
    p["brightness"] = _uniform(n, -0.08, 0.08, g)
    p["occlusion"] = _occlusion_codes(occlusion, n)
    # Occluder geometry and look (used only where an occluder is drawn).
    p["occ_a"] = torch.rand(n, generator=g)
    p["occ_b"] = torch.rand(n, generator=g)
    p["occ_c"] = torch.rand(n, generator=g)
    p["occ_col"] = torch.where(
        (torch.rand(n, generator=g) < 0.3).reshape(-1, 1),
        _uniform(n, 0.05, 0.95, g).reshape(-1, 1).expand(n, 3),
        torch.rand(n, 3, generator=g),
    ).contiguous()
    p["occ_tex"] = _uniform(n, 0.1, 0.45, g)
    p["degraded"] = (
        torch.zeros(n, dtype=torch.bool) if degraded is None else torch.as_tensor(degraded, dtype=torch.bool)
    )
    p["nonface"] = torch.zeros(n, dtype=torch.bool) if nonface is None else torch.as_tensor(nonface, dtype=torch.bool)
    deg = p["degraded"]
    p["aa"] = torch.where(deg, _uniform(n, 3.5, 6.0, g), p["aa"])
    p["noise"] = torch.where(deg, _uniform(n, 0.08, 0.14, g), p["noise"])
    p["contrast"] = torch.where(deg, _uniform(n, 0.3, 0.5, g), p["contrast"])
    return p


# ----------------------------------------------------------------------------------------------------------------
# Shapes: anti-aliased coverage in [0, 1] of analytic shapes, for a batch (params broadcast as (B, 1, 1))
# ----------------------------------------------------------------------------------------------------------------


def _cov(d: torch.Tensor, aa: torch.Tensor) -> torch.Tensor:
    """Coverage from a signed distance (negative inside) with an edge of width ``aa``."""
    return (0.5 - d / aa).clamp_(0.0, 1.0)


def _ellipse(x, y, cx, cy, rx, ry, aa):  # type: ignore[no-untyped-def]
    nx, ny = (x - cx) / rx, (y - cy) / ry
    r = torch.sqrt(nx * nx + ny * ny + 1e-12)
    grad = torch.sqrt((nx / rx) ** 2 + (ny / ry) ** 2 + 1e-12) / r
    return _cov((r - 1.0) / grad, aa)


def _box(x, y, cx, cy, hw, hh, radius, aa):  # type: ignore[no-untyped-def]
    qx = (x - cx).abs() - hw + radius
    qy = (y - cy).abs() - hh + radius
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
    inside = torch.maximum(qx, qy).clamp_max(0)
    return _cov(outside + inside - radius, aa)


def _capsule(x, y, x0, y0, x1, y1, th, aa):  # type: ignore[no-untyped-def]
    """A segment from (x0, y0) to (x1, y1) of half thickness ``th``."""
    dx, dy = x1 - x0, y1 - y0
    h = (((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12)).clamp(0.0, 1.0)
    d = torch.sqrt((x - x0 - h * dx) ** 2 + (y - y0 - h * dy) ** 2)
    return _cov(d - th, aa)


def _band(x, y, cx, hw, top, bottom, aa):  # type: ignore[no-untyped-def]
    """The region between two curves ``top(t) <= y <= bottom(t)`` over ``|t| <= 1``, ``t = (x - cx) / hw``."""
    t = (x - cx) / hw
    d = torch.maximum(torch.maximum(top(t) - y, y - bottom(t)), (t.abs() - 1.0) * hw)
    return _cov(d, aa)


def _stroke(x, y, cx, hw, curve, th, aa):  # type: ignore[no-untyped-def]
    """A stroke of half thickness ``th`` along ``y = curve(t)``, ``|t| <= 1``, ``t = (x - cx) / hw``.

    ``curve(t)`` returns the height and its derivative in ``t``; the distance is the vertical gap divided by
    the slope factor (exact for straight lines, close for gentle curves), rounded at the ends.
    """
    t = (x - cx) / hw
    tc = t.clamp(-1.0, 1.0)
    yc, dyc = curve(tc)
    slope = dyc / hw
    ex = (t - tc) * hw
    dy = (y - yc) / torch.sqrt(1.0 + slope * slope)
    return _cov(torch.sqrt(ex * ex + dy * dy) - th, aa)


def _paint(img: torch.Tensor, cov: torch.Tensor, colour: torch.Tensor) -> None:
    """Composite ``colour`` ((B, 3) or (B, 3, H, W)) over ``img`` (B, 3, H, W) with alpha ``cov`` (B, H, W)."""
    a = cov.unsqueeze(1)
    if colour.dim() == 2:
        colour = colour[:, :, None, None]
    img.mul_(1.0 - a).add_(a * colour)


def _lowfreq(b: int, ch: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(b, ch, cells, cells, generator=g)
    return F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)


# ----------------------------------------------------------------------------------------------------------------
# Face geometry shared by the renderer and the landmarks
# ----------------------------------------------------------------------------------------------------------------


def _relu(t: torch.Tensor) -> torch.Tensor:
    return t.clamp_min(0.0)


class _Mouth:
    """Mouth curves as functions of ``t`` in ``[-1, 1]`` along the mouth (params shaped to broadcast)."""

    def __init__(self, q: Any) -> None:
        self.my, self.curve, self.asym, self.side = q("mouth_y"), q("mouth_curve"), q("mouth_asym"), q("side")
        self.open, self.raise_ = q("mouth_open"), q("lip_raise")
        self.hw = q("mouth_w") * q("mouth_width")
        self.lip = q("lip_th")

    def centre(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = _relu(self.side * t)
        y = self.my - self.curve * t * t - self.asym * st * st
        dy = -2 * self.curve * t - 2 * self.asym * st * self.side
        return y, dy

    def _profile(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - t * t).clamp_min(0.0) ** 0.6

    def top(self, t: torch.Tensor) -> torch.Tensor:
        bump = torch.exp(-(((t - 0.35 * self.side) / 0.4) ** 2))
        return self.centre(t)[0] - self.open * self._profile(t) - self.raise_ * bump

    def bottom(self, t: torch.Tensor) -> torch.Tensor:
        return self.centre(t)[0] + 1.15 * self.open * self._profile(t)

    def lip_top(self, t: torch.Tensor) -> torch.Tensor:
        return self.top(t) - self.lip * self._profile(t) ** 0.5

    def lip_bottom(self, t: torch.Tensor) -> torch.Tensor:
        return self.bottom(t) + 1.3 * self.lip * self._profile(t) ** 0.5


class _Eye:
    """One eye (``s = -1`` image left, ``+1`` image right) as curves of ``t`` (``t = -1`` its left corner)."""

    def __init__(self, q: Any, s: float) -> None:
        self.cx = s * q("eye_dx")
        self.hw = q("eye_w")
        self.cy = q("eye_y")
        self.smile = q("eye_smile")
        self.h = q("eye_h") * q("eye_open")
        self.base_h = q("eye_h")

    def centre(self, t: torch.Tensor) -> torch.Tensor:
        return self.cy - self.smile * self.base_h * 0.9 * (1.0 - t * t)

    def top(self, t: torch.Tensor) -> torch.Tensor:
        return self.centre(t) - self.h * (1.0 - t * t)

    def bottom(self, t: torch.Tensor) -> torch.Tensor:
        return self.centre(t) + self.h * (1.0 - t * t)

    def top_curve(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.smile * self.base_h * 0.9 + self.h
        return self.cy - a * (1.0 - t * t), 2 * a * t


class _Brow:
    def __init__(self, q: Any, s: float) -> None:
        asym = q("brow_asym") * (q("brow_side") == s).float()
        self.cx = s * (q("eye_dx") - q("brow_pinch"))
        self.hw = q("brow_len")
        self.cy = q("eye_y") - q("brow_gap") - q("brow_raise") - asym
        self.c1 = -s * q("brow_tilt")  # the inner end is t = -s
        self.arch = q("brow_arch") + 0.02
        self.th = q("brow_th")

    def curve(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cy - self.arch * (1.0 - t * t) + self.c1 * t, 2 * self.arch * t + self.c1


def _landmarks_face(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """68 iBUG points in face-surface coordinates ``(B, 68, 2)`` and their nose depth ``(B, 68)``."""
    b = p["label"].numel()

    def q(name: str) -> torch.Tensor:
        return p[name].reshape(b, 1)

    pts = torch.zeros(b, 68, 2)
    depth = torch.zeros(b, 68)
    # Jaw 0-16 lies on the head outline (drawn unwarped), filled in by _landmarks_image.
    for s, first in ((-1.0, 17), (1.0, 22)):
        brow = _Brow(q, s)
        t = torch.linspace(-1, 1, 5).reshape(1, 5)
        pts[:, first : first + 5, 0] = brow.cx + brow.hw * t
        pts[:, first : first + 5, 1] = brow.curve(t)[0]
    # Nose: bridge 27-30 down to the tip, base 31-35.
    frac = torch.linspace(0, 1, 4).reshape(1, 4)
    pts[:, 27:31, 1] = q("eye_y") - 0.02 + frac * (q("nose_y") - 0.02 - q("eye_y"))
    depth[:, 27:31] = (0.3 + 0.7 * frac) * q("nose_depth")
    pts[:, 31:36, 0] = torch.linspace(-1, 1, 5).reshape(1, 5) * q("nose_w")
    pts[:, 31:36, 1] = q("nose_y") + 0.015 - 0.01 * torch.tensor([1.0, 0.0, -1.0, 0.0, 1.0]).reshape(1, 5)
    depth[:, 31:36] = 0.85 * q("nose_depth")
    # Eyes: 36 outer (left) corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid; 42-47 mirrored.
    third = 1.0 / 3.0
    for s, first, ts, upper in (
        (-1.0, 36, (-1, -third, third, 1, third, -third), (False, True, True, False, False, False)),
        (1.0, 42, (-1, -third, third, 1, third, -third), (False, True, True, False, False, False)),
    ):
        eye = _Eye(q, s)
        t = torch.tensor(ts).reshape(1, 6)
        up = torch.tensor(upper).reshape(1, 6)
        ys = torch.where(up, eye.top(t), eye.bottom(t))
        ys = torch.where(t.abs() > 0.99, eye.centre(t), ys)
        pts[:, first : first + 6, 0] = eye.cx + eye.hw * t
        pts[:, first : first + 6, 1] = ys
    # Mouth: 48 left corner, 49-53 upper outer lip, 54 right corner, 55-59 lower outer; 60-67 inner.
    mouth = _Mouth(q)
    t_outer = torch.tensor([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3]).reshape(1, 12)
    is_upper = torch.tensor([0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool).reshape(1, 12)
    corner = t_outer.abs() > 0.99
    y_outer = torch.where(is_upper, mouth.lip_top(t_outer), mouth.lip_bottom(t_outer))
    y_outer = torch.where(corner, mouth.centre(t_outer)[0], y_outer)
    pts[:, 48:60, 0] = mouth.hw * t_outer
    pts[:, 48:60, 1] = y_outer
    t_inner = torch.tensor([-0.9, -1 / 3, 0, 1 / 3, 0.9, 1 / 3, 0, -1 / 3]).reshape(1, 8)
    is_upper = torch.tensor([0, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool).reshape(1, 8)
    y_inner = torch.where(is_upper, mouth.top(t_inner), mouth.bottom(t_inner))
    y_inner = torch.where(t_inner.abs() > 0.85, mouth.centre(t_inner)[0], y_inner)
    pts[:, 60:68, 0] = mouth.hw * t_inner
    pts[:, 60:68, 1] = y_inner
    depth[:, 48:68] = 0.25 * q("nose_depth")
    return pts, depth


def _to_head(p: dict[str, torch.Tensor], pts: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Face-surface points (B, M, 2) to head coordinates (after the yaw/pitch turn, before roll/scale/shift)."""
    b = pts.shape[0]
    rx = (p["head_w"] * 1.08).reshape(b, 1)
    ry = (p["head_h"] * 1.08).reshape(b, 1)
    cy = p["head_cy"].reshape(b, 1)
    yaw, pitch = p["yaw"].reshape(b, 1), p["pitch"].reshape(b, 1)
    phi = (torch.asin((pts[..., 0] / rx).clamp(-0.999, 0.999)) + yaw).clamp(-math.pi / 2, math.pi / 2)
    hx = rx * torch.sin(phi) + depth * torch.sin(yaw)
    th = (torch.asin(((pts[..., 1] - cy) / ry).clamp(-0.999, 0.999)) + pitch).clamp(-math.pi / 2, math.pi / 2)
    hy = cy + ry * torch.sin(th) - depth * torch.sin(pitch)
    return torch.stack([hx, hy], dim=-1)


def _head_to_image(p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    b = h.shape[0]
    cr, sr = torch.cos(p["roll"]).reshape(b, 1), torch.sin(p["roll"]).reshape(b, 1)
    sc, tx, ty = p["scale"].reshape(b, 1), p["tx"].reshape(b, 1), p["ty"].reshape(b, 1)
    x = tx + sc * (cr * h[..., 0] - sr * h[..., 1])
    y = ty + sc * (sr * h[..., 0] + cr * h[..., 1])
    return torch.stack([x, y], dim=-1)


def _landmarks_head(p: dict[str, torch.Tensor]) -> torch.Tensor:
    pts, depth = _landmarks_face(p)
    head = _to_head(p, pts, depth)
    b = pts.shape[0]
    phi = (math.pi + 0.15) - torch.arange(17, dtype=torch.float32) * (math.pi + 0.3) / 16
    head[:, :17, 0] = p["head_w"].reshape(b, 1) * torch.cos(phi)
    head[:, :17, 1] = p["head_cy"].reshape(b, 1) + p["head_h"].reshape(b, 1) * torch.sin(phi)
    return head


# ----------------------------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------------------------


def _render_chunk(p: dict[str, torch.Tensor], size: int, g: torch.Generator) -> torch.Tensor:
    b = p["label"].numel()
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    gx, gy = lin.reshape(1, 1, size), lin.reshape(1, size, 1)

    def q(name: str) -> torch.Tensor:
        return p[name].reshape(b, 1, 1)

    def col(name: str) -> torch.Tensor:
        return p[name].reshape(b, 3)

    pix = 2.0 / size
    # Image -> head coordinates (undo shift, scale and in-plane rotation).
    sc = q("scale")
    dx, dy = (gx - q("tx")) / sc, (gy - q("ty")) / sc
    cr, sr = torch.cos(q("roll")), torch.sin(q("roll"))
    hx, hy = cr * dx + sr * dy, cr * dy - sr * dx
    aa_h = q("aa") * pix / sc
    # Head -> face-surface coordinates: the face turns on a sphere-like head (yaw about the vertical axis,
    # pitch about the horizontal one); the nose sticks out and moves further.
    rx, ry, hcy = q("head_w") * 1.08, q("head_h") * 1.08, q("head_cy")
    yaw, pitch = q("yaw"), q("pitch")
    phis = torch.asin((hx / rx).clamp(-0.999, 0.999))
    phi = (phis - yaw).clamp(-math.pi / 2, math.pi / 2)
    fx = rx * torch.sin(phi)
    ths = torch.asin(((hy - hcy) / ry).clamp(-0.999, 0.999))
    fy = hcy + ry * torch.sin((ths - pitch).clamp(-math.pi / 2, math.pi / 2))
    jac = (torch.cos(phi) / torch.cos(phis)).clamp(0.7, 4.0)
    aa = aa_h * jac  # one screen pixel in face units
    nd = q("nose_depth")
    hxn = hx - nd * torch.sin(yaw)
    fxn = rx * torch.sin((torch.asin((hxn / rx).clamp(-0.999, 0.999)) - yaw).clamp(-math.pi / 2, math.pi / 2))
    fyn = fy + nd * torch.sin(pitch)

    # Background: two-colour gradient with a low-frequency texture.
    ang = q("bg_angle")
    ramp = ((torch.cos(ang) * gx + torch.sin(ang) * gy) * 0.5 + 0.5).unsqueeze(1)
    img = col("bg1")[:, :, None, None] * (1 - ramp) + col("bg2")[:, :, None, None] * ramp
    img = img + q("bg_tex").unsqueeze(1) * _lowfreq(b, 3, size, 5, g)
    img = img.clamp(0, 1).contiguous()

    skin = col("skin")
    hw, hh = q("head_w"), q("head_h")
    # Clothes, neck, hair behind the head.
    _paint(img, _ellipse(hx, hy, 0.0, hcy + hh * 1.75, hw * 1.9, hh * 0.85, aa_h), col("clothes"))
    neck = _box(hx, hy, 0.0, hcy + hh * 0.95, hw * 0.55, hh * 0.5, 0.05, aa_h)
    _paint(img, neck, skin * 0.72)
    back_hair = _ellipse(hx, hy, 0.0, hcy - 0.08, hw * 1.14, hh * 1.06, aa_h)
    hair_bottom = torch.where(q("hair_long") > 0, hcy + hh * 0.9, hcy - hh * 0.3)
    back_hair = back_hair * _cov(hy - hair_bottom, 4 * aa_h) * (q("hairline") > -1.0).float()
    _paint(img, back_hair, col("hair") * 0.8)
    # Head with soft shading (darker towards the outline, a light direction).
    head = _ellipse(hx, hy, 0.0, hcy, hw, hh, aa_h)
    r2 = (hx / hw) ** 2 + ((hy - hcy) / hh) ** 2
    shade = (1.0 - 0.22 * r2.clamp(0, 1) ** 3 - q("light_x") * hx / hw - q("light_y") * hy / hh).clamp(0.4, 1.2)
    _paint(img, head, skin[:, :, None, None] * shade.unsqueeze(1))
    # Hair on the head: above a hairline that dips at the sides, following the turn of the head.
    hairline = q("hairline") + 0.3 * (fx / hw) ** 2
    _paint(img, head * _cov(fy - hairline, 2 * aa), col("hair"))

    def paint(cov: torch.Tensor, colour: torch.Tensor) -> None:
        # Facial parts exist only on the head: outside it the turned coordinates are clamped and would repeat.
        _paint(img, cov * head, colour)

    dark = torch.tensor([0.08, 0.06, 0.06]).expand(b, 3)
    line_col = skin * 0.55
    # Brows, frown lines, nose creases.
    brow_col = skin * 0.25 + col("hair") * 0.3
    for s in (-1.0, 1.0):
        brow = _Brow(q, s)
        paint(_stroke(fx, fy, brow.cx, brow.hw, brow.curve, brow.th, aa), brow_col)
    inner_y = q("eye_y") - q("brow_gap") - q("brow_raise") + q("brow_tilt")
    glab = q("glabella").clamp(0, 1)
    for s in (-1.0, 1.0):
        c = _capsule(fx, fy, s * 0.035, inner_y - 0.04, s * 0.045, inner_y + 0.09, 0.012, aa)
        paint(c * glab, line_col)
    wr = q("nose_wrinkle").clamp(0, 1)
    for k in range(3):
        yk = q("eye_y") + 0.01 + 0.05 * k
        c = _stroke(fx, fy, torch.zeros_like(yk), 0.075, lambda t, yk=yk: (yk - 0.02 * t * t, -0.04 * t), 0.011, aa)
        paint(c * wr, line_col)
    # Eyes: white, iris, pupil, upper lid line.
    for s in (-1.0, 1.0):
        eye = _Eye(q, s)
        white = _band(fx, fy, eye.cx, eye.hw, eye.top, eye.bottom, aa)
        paint(white, torch.tensor([0.92, 0.9, 0.88]).expand(b, 3) * 0.95)
        icx = eye.cx + q("gaze") * eye.hw * 0.4
        icy = eye.centre(torch.zeros_like(icx))
        iris = _ellipse(fx, fy, icx, icy, eye.base_h * 1.05, eye.base_h * 1.05, aa) * white
        paint(iris, col("iris"))
        paint(_ellipse(fx, fy, icx, icy, eye.base_h * 0.5, eye.base_h * 0.5, aa) * white, dark)
        paint(_stroke(fx, fy, eye.cx, eye.hw, eye.top_curve, 0.014 + 0.1 * eye.base_h * 0.2, aa), dark)
    # Nose: side line (stronger when turned), tip highlight, nostrils.
    nw, ny = q("nose_w"), q("nose_y")
    turn = torch.sin(yaw)
    side = torch.where(turn >= 0, -1.0, 1.0)
    c = _capsule(fxn, fyn, side * nw * 0.7, q("eye_y") + 0.04, side * nw * 1.05, ny - 0.03, 0.012, aa)
    paint(c * (0.25 + 2.0 * turn.abs()).clamp(0, 1), skin * 0.6)
    paint(_ellipse(fxn, fyn, 0.0, ny - 0.03, nw * 0.9, 0.045, aa) * 0.35, (skin * 1.15).clamp(0, 1))
    for s in (-1.0, 1.0):
        paint(_ellipse(fxn, fyn, s * nw * 0.6, ny + 0.005, 0.03, 0.016, aa), skin * 0.35)
    # Smile lines from the nose wings to the mouth corners.
    mouth = _Mouth(q)
    sl = q("smile_lines").clamp(0, 1)
    for s in (-1.0, 1.0):
        corner_y = mouth.centre(torch.full_like(ny, s))[0]
        c = _capsule(fx, fy, s * (nw + 0.06), ny - 0.03, s * (mouth.hw + 0.06), corner_y + 0.02, 0.013, aa)
        paint(c * sl, line_col)
    # Mouth: lips, the dark opening, teeth, the line between the lips.
    lip_col = skin * torch.tensor([0.82, 0.5, 0.5])
    paint(_band(fx, fy, 0.0, mouth.hw * 1.04, mouth.lip_top, mouth.lip_bottom, aa), lip_col)
    opening = _band(fx, fy, 0.0, mouth.hw, mouth.top, mouth.bottom, aa)
    paint(opening, torch.tensor([0.18, 0.06, 0.06]).expand(b, 3))
    t_in = fx / mouth.hw
    top_in, bot_in = mouth.top(t_in), mouth.bottom(t_in)
    teeth_edge = top_in + q("teeth") * (bot_in - top_in)
    teeth = opening * _cov(fy - teeth_edge, aa) * (q("teeth") > 0.05).float()
    paint(teeth, torch.tensor([0.93, 0.92, 0.86]).expand(b, 3))
    clench = q("clench").clamp(0, 1)
    paint(_stroke(fx, fy, 0.0, mouth.hw * 0.95, mouth.centre, 0.008, aa) * opening * clench, dark)
    closed = (1.0 - q("mouth_open") / 0.03).clamp(0, 1)
    paint(_stroke(fx, fy, 0.0, mouth.hw, mouth.centre, 0.014, aa) * closed, skin * 0.3)

    _draw_occluders(img, p, hx, hy, aa_h, size, g)
    if bool(p["nonface"].any()):
        nf = p["nonface"].reshape(b, 1, 1, 1)
        img = torch.where(nf, _nonface(p, gx, gy, aa_h, size, g), img)
    # Camera: contrast, brightness, sensor noise.
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * q("contrast").unsqueeze(1) + mean + q("brightness").unsqueeze(1)
    img = img + q("noise").unsqueeze(1) * torch.randn(img.shape, generator=g)
    return img.clamp_(0.0, 1.0)


def _draw_occluders(img, p, hx, hy, aa, size, g):  # type: ignore[no-untyped-def]
    """Occluders drawn over the face in head coordinates, placed from the turned facial points."""
    b = img.shape[0]
    kinds = p["occlusion"]
    if not bool((kinds > 0).any()):
        return
    lm = _landmarks_head(p)  # (B, 68, 2)

    def q(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, 1, 1)

    oa, ob, oc = q(p["occ_a"]), q(p["occ_b"]), q(p["occ_c"])
    tex = _lowfreq(b, 1, size, 6, g)[:, 0]
    base = p["occ_col"]
    eye_l, eye_r = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    brow_y = q(lm[:, 17:27, 1].mean(1))
    mouth_top = q(lm[:, 48:60, 1].min(1).values)
    nose_tip = lm[:, 30]
    hw, hh, hcy = q(p["head_w"]), q(p["head_h"]), q(p["head_cy"])
    textured = 1.0 + q(p["occ_tex"]) * tex
    cover = torch.zeros_like(hx)
    shading = torch.ones_like(hx)
    # upper: a hat brim / band / hand over the forehead and brows.
    edge = brow_y + 0.05 + 0.12 * oa + (ob - 0.5) * 0.25 * hx
    upper = _cov(hy - edge, aa) * _cov(hx.abs() - hw * (1.1 + 0.3 * oc), aa)
    # bottom: a hand, scarf or object over the mouth and chin.
    edge = mouth_top - 0.03 - 0.12 * oa + (ob - 0.5) * 0.3 * hx
    half = 0.55 + 0.5 * oc
    bottom = _cov(edge - hy, aa) * _cov(hx.abs() - half, aa)
    # left / right: a hand-like blob over one side with finger stripes.
    cy = -0.05 + 0.35 * ob
    rxb, ryb = 0.33 + 0.15 * oa, 0.5 + 0.25 * oc
    left = _ellipse(hx, hy, -(0.3 + 0.2 * oa), cy, rxb, ryb, aa)
    right = _ellipse(hx, hy, 0.3 + 0.2 * oa, cy, rxb, ryb, aa)
    fingers = 1.0 - 0.25 * (torch.sin(hy * (30.0 + 10 * ob)) > 0.6).float()
    # glasses: dark lenses over both eyes, a bridge and the arms.
    glasses = torch.zeros_like(hx)
    for e in (eye_l, eye_r):
        lens = _box(hx, hy, q(e[:, 0]), q(e[:, 1]), q(p["eye_w"]) * 1.45, 0.1 + 0.03 * oa, 0.05, aa)
        glasses = torch.maximum(glasses, lens)
    bridge = _capsule(hx, hy, q(eye_l[:, 0]), q(eye_l[:, 1]) - 0.05, q(eye_r[:, 0]), q(eye_r[:, 1]) - 0.05, 0.02, aa)
    arms = torch.maximum(
        _capsule(hx, hy, q(eye_l[:, 0]) - 0.15, q(eye_l[:, 1]) - 0.04, -hw * 1.05, q(eye_l[:, 1]) - 0.02, 0.02, aa),
        _capsule(hx, hy, q(eye_r[:, 0]) + 0.15, q(eye_r[:, 1]) - 0.04, hw * 1.05, q(eye_r[:, 1]) - 0.02, 0.02, aa),
    )
    glasses = torch.maximum(glasses, torch.maximum(bridge, arms))
    # mask: over the nose tip, mouth and chin, with pleats and straps.
    top = q(nose_tip[:, 1]) - 0.03 + 0.06 * oa
    mask = _ellipse(hx, hy, 0.0, hcy + 0.1, hw * 0.98, hh * 0.98, aa) * _cov(top - hy, aa)
    straps = torch.maximum(
        _capsule(hx, hy, -hw * 0.9, top + 0.05, -hw * 1.1, top - 0.15, 0.015, aa),
        _capsule(hx, hy, hw * 0.9, top + 0.05, hw * 1.1, top - 0.15, 0.015, aa),
    )
    pleats = 1.0 - 0.12 * (torch.sin((hy - top) * 45.0) > 0.7).float()
    kind = q(kinds)
    for code, cov, sh in (
        (1, upper, None),
        (2, bottom, None),
        (3, left, fingers),
        (4, right, fingers),
        (5, glasses, None),
        (6, torch.maximum(mask, straps), pleats),
    ):
        sel = (kind == code).float()
        cover = torch.maximum(cover, cov * sel)
        if sh is not None:
            shading = torch.where(kind == code, sh, shading)
    colour = base.clone()
    is_glasses = (kinds == 5).reshape(b, 1)
    colour = torch.where(is_glasses, colour * 0.18, colour)
    is_hand = ((kinds == 3) | (kinds == 4)).reshape(b, 1)
    colour = torch.where(is_hand & (p["occ_b"] < 0.5).reshape(b, 1), p["skin"] * 0.9, colour)
    fill = colour[:, :, None, None] * (textured * shading).unsqueeze(1)
    _paint(img, cover, fill.clamp(0, 1))


def _nonface(p, gx, gy, aa, size, g):  # type: ignore[no-untyped-def]
    """Images with no face: blobs and texture over a gradient background (the FERPlus NF case)."""
    b = p["label"].numel()
    img = p["bg1"][:, :, None, None] * torch.ones(1, 1, size, size)
    img = img + 0.3 * _lowfreq(b, 3, size, 4, g)
    for _ in range(3):
        cx, cy = torch.rand(b, 1, 1, generator=g) * 2 - 1, torch.rand(b, 1, 1, generator=g) * 2 - 1
        rx, ry = 0.2 + 0.6 * torch.rand(b, 1, 1, generator=g), 0.2 + 0.6 * torch.rand(b, 1, 1, generator=g)
        _paint(img, _ellipse(gx, gy, cx, cy, rx, ry, aa), torch.rand(b, 3, generator=g))
    return img.clamp(0, 1)


def render_batch(
    params: dict[str, torch.Tensor],
    size: int = 48,
    *,
    channels: int = 1,
    generator: torch.Generator | None = None,
    chunk: int = 256,
    num_threads: int | None = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render faces drawn by :func:`sample_faces`.

    Returns:
        ``(images, landmarks)``: ``uint8`` images ``(N, channels, size, size)`` (1 = grey, 3 = RGB) and float32
        landmarks ``(N, 68, 2)`` in continuous pixel coordinates (iBUG order; the jaw points follow the head
        outline).

    Rendering is thousands of small element-wise operations; with ``num_threads=1`` (the default, restored
    afterwards) it runs at a steady speed even when other processes keep the cores busy, where OpenMP threads
    that wait for each other can make it ten times slower. ``None`` keeps torch's setting.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n = params["label"].numel()
    out = torch.empty(n, channels, size, size, dtype=torch.uint8)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        for start in range(0, n, chunk):
            part = {k: v[start : start + chunk] for k, v in params.items()}
            img = _render_chunk(part, size, g)
            if channels == 1:
                img = (img * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
            out[start : start + chunk] = (img * 255.0).round_().to(torch.uint8)
        lm = _head_to_image(params, _landmarks_head(params)) if n else torch.zeros(0, 68, 2)
    finally:
        torch.set_num_threads(threads)
    return out, (lm + 1.0) * (size / 2.0)


def render_faces(
    labels: Sequence[int] | torch.Tensor,
    *,
    size: int = 48,
    channels: int = 1,
    occlusion: Sequence[str | int] | torch.Tensor | None = None,
    yaw: Sequence[float] | torch.Tensor | None = None,
    blend_labels: Sequence[int] | torch.Tensor | None = None,
    blend_weights: Sequence[float] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Render one face per FERPlus label (0-7) as a ``uint8`` tensor ``(N, channels, size, size)``.

    Example:
        >>> import torch
        >>> imgs = render_faces([1, 2], occlusion=["none", "glasses"], generator=torch.Generator().manual_seed(0))
        >>> imgs.shape, imgs.dtype
        (torch.Size([2, 1, 48, 48]), torch.uint8)
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p = sample_faces(
        labels, generator=g, blend_labels=blend_labels, blend_weights=blend_weights, occlusion=occlusion, yaw=yaw
    )
    return render_batch(p, size, channels=channels, generator=g)[0]


# ----------------------------------------------------------------------------------------------------------------
# Annotation: votes, kinds of rows, occlusion and pose assignment
# ----------------------------------------------------------------------------------------------------------------


def majority_label(votes: Sequence[int]) -> int:
    """The FERPlus majority label (0-7) of 10 vote counts under the provider's rule, or -1 when dropped.

    Single votes are zeroed first; the top entry (first on ties) must hold more than half of what remains and
    must not be ``unknown`` or ``NF``.

    Example:
        >>> majority_label([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]), majority_label([0, 6, 0, 0, 0, 0, 0, 0, 4, 0])
        (-1, 1)
    """
    kept = [0 if v <= 1 else v for v in votes]
    total = sum(kept)
    if total <= 0:
        return -1
    top = max(kept)
    idx = kept.index(top)
    return idx if top > 0.5 * total and idx < 8 else -1


def _exact_counts(n: int, weights: Sequence[float], *, at_least_one: bool = False) -> list[int]:
    """Split ``n`` in proportion to ``weights`` exactly (largest remainders); optionally give every entry with a
    positive weight at least one, taken from the largest counts."""
    total = float(sum(weights))
    raw = [n * w / total for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(weights)), key=lambda k: raw[k] - counts[k], reverse=True)
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    if at_least_one and n >= sum(w > 0 for w in weights):
        for k, w in enumerate(weights):
            if w > 0 and counts[k] == 0:
                counts[max(range(len(counts)), key=lambda j: counts[j])] -= 1
                counts[k] = 1
    return counts


def _shuffled(n: int, mix: Mapping[str, float], rng: random.Random, *, at_least_one: bool) -> list[str]:
    """Exactly proportional numbers of each key of ``mix`` (see :func:`_exact_counts`), in random order."""
    counts = _exact_counts(n, list(mix.values()), at_least_one=at_least_one)
    out = [k for k, c in zip(mix, counts, strict=True) for _ in range(c)]
    rng.shuffle(out)
    return out


_KIND_MIX = {"clean": 0.76, "ambiguous": 0.12, "no_majority": 0.05, "unknown": 0.04, "nonface": 0.03}


def _votes_for(kind: str, c: int, c2: int, w: float, rng: random.Random) -> list[int]:
    votes = [0] * 10

    def stray(k: int) -> None:
        for _ in range(k):
            r = rng.random()
            if r < 0.14:
                votes[8] += 1
            elif r < 0.17:
                votes[9] += 1
            elif r < 0.6:
                votes[_CONFUSABLE[c][rng.random() < 0.5]] += 1
            else:
                votes[rng.randrange(8)] += 1

    if kind == "clean":
        n_c = rng.choices((10, 9, 8, 7, 6), weights=(35, 25, 20, 12, 8))[0]
        votes[c] += n_c
        stray(10 - n_c)
    elif kind == "ambiguous":
        n_2 = max(2, min(5, round(10 * w) + rng.choice((-1, 0, 0, 1))))
        n_c = min(10 - n_2, rng.choice((5, 6, 6, 7)))
        votes[c] += n_c
        votes[c2] += n_2
        stray(10 - n_c - n_2)
    elif kind == "no_majority":
        others = [k for k in range(8) if k not in (c, c2)]
        split = rng.choice(((4, 3, 3), (4, 4, 2), (3, 3, 2, 2), (4, 2, 2, 2)))
        targets = [c, c2, *rng.sample(others, len(split) - 2)]
        for k, v in zip(targets, split, strict=True):
            votes[k] += v
    elif kind == "unknown":
        n_u = rng.choice((5, 6, 7))
        votes[8] += n_u
        votes[c] += 10 - n_u - 1
        stray(1)
    else:  # nonface
        n_nf = rng.choice((6, 8, 9, 10))
        votes[9] += n_nf
        votes[8] += 10 - n_nf
    return votes


def _split_probs(value: float | Mapping[str, float] | None, defaults: Mapping[str, float], name: str):  # type: ignore[no-untyped-def]
    if value is None:
        return dict(defaults)
    if isinstance(value, Mapping):
        unknown = set(value) - set(defaults)
        if unknown:
            raise ValueError(f"{name}: unknown split(s) {sorted(unknown)}; expected {sorted(defaults)}")
        out = dict(defaults)
        out.update({k: float(v) for k, v in value.items()})
    else:
        out = {k: float(value) for k in defaults}
    for k, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}[{k!r}] must be a probability in [0, 1], got {v}")
    return out


def _plan_split(
    n: int,
    classes: list[int],
    *,
    kind_mix: Mapping[str, float],
    occlusion_p: float,
    occlusion_mix: Mapping[str, float],
    pose_p: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Per-row plan: kind, class, blend class and weight, occlusion, yaw (quotas are exact, then shuffled)."""
    kinds = _shuffled(n, kind_mix, rng, at_least_one=n >= 40)
    n_occ = round(occlusion_p * n)
    occ = _shuffled(n_occ, occlusion_mix, rng, at_least_one=n_occ >= 12) + ["none"] * (n - n_occ)
    rng.shuffle(occ)
    n_pose = round(pose_p * n)
    large = [True] * n_pose + [False] * (n - n_pose)
    rng.shuffle(large)
    rows = []
    for i in range(n):
        c = classes[i]
        c2 = _CONFUSABLE[c][rng.random() < 0.5]
        kind = kinds[i]
        w = rng.uniform(0.25, 0.45) if kind == "ambiguous" else rng.uniform(0.35, 0.5) if kind == "no_majority" else 0.0
        yaw = rng.uniform(30.5, 62.0) if large[i] else rng.uniform(0.0, 27.0)
        yaw *= rng.choice((-1.0, 1.0))
        o = occ[i]
        if kind == "nonface":
            o, yaw = "none", 0.0
        rows.append({"kind": kind, "label": c, "blend": c2, "weight": w, "occlusion": o, "yaw": yaw})
    return rows


def _render_plan(
    rows: list[dict[str, Any]], size: int, channels: int, g: torch.Generator, **sample_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    p = sample_faces(
        [r["label"] for r in rows],
        generator=g,
        blend_labels=[r["blend"] for r in rows],
        blend_weights=[r["weight"] for r in rows],
        occlusion=[r["occlusion"] for r in rows],
        yaw=[r["yaw"] for r in rows],
        degraded=[r["kind"] == "unknown" for r in rows],
        nonface=[r["kind"] == "nonface" for r in rows],
        **sample_kwargs,
    )
    images, landmarks = render_batch(p, size, channels=channels, generator=g)
    return images, landmarks, p


def _split_generator(seed: int, split: str) -> tuple[torch.Generator, random.Random]:
    digest = hashlib.sha256(f"{seed}/{split}".encode()).digest()
    s = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    return torch.Generator().manual_seed(s), random.Random(s)


def _class_list(n: int, probs: Sequence[float], rng: random.Random) -> list[int]:
    """Classes in exact proportion to ``probs`` (largest remainders), shuffled."""
    out = [k for k, c in enumerate(_exact_counts(n, probs)) for _ in range(c)]
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------------------------

_STR = [str(v) for v in range(256)]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    try:
        return t.numpy().tobytes()
    except (ImportError, RuntimeError):  # torch without numpy
        return bytes(t.reshape(-1).tolist())


def _to_pil(img: torch.Tensor) -> Image.Image:
    """(C, H, W) uint8 -> PIL image."""
    c, h, w = img.shape
    if c == 1:
        return Image.frombytes("L", (w, h), _tensor_bytes(img[0]))
    return Image.frombytes("RGB", (w, h), _tensor_bytes(img.permute(1, 2, 0)))


def _save_png(img: torch.Tensor, path: Path) -> None:
    _to_pil(img).save(path, format="PNG", optimize=False)


def _save_jpeg(img: torch.Tensor, path: Path) -> None:
    _to_pil(img).save(path, format="JPEG", quality=92)


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
    """Write a synthetic FERPlus in the provider's formats (see the module docstring).

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

    Rows are Training, then PublicTest, then PrivateTest; ``Image name`` is ``fer%07d`` of the 0-based row index
    (empty for about ``empty_name_frac`` of the rows, which readers drop).

    Args:
        n_train / n_valid / n_test: rows per split (Training / PublicTest / PrivateTest).
        seed: the same seed gives byte-identical files; each split draws from its own stream, so changing one
            split's size leaves the other splits' images unchanged.
        occlusion: probability that a face is occluded, one number for all splits or per split
            (``{"train", "valid", "test"}``); default 0.08 / 0.08 / 0.35. Kinds follow Table I's mix. The
            occluders here are bigger and starker than most real ones; with rare occlusion in training a
            whole-face CNN loses clearly more on occluded test faces than a region-crop model (see the module
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
        images, _, params = _render_plan(plan, 48, 1, g)
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
    files.update(occlusion_list=str(p_occ), pose_30_list=str(p_30), pose_45_list=str(p_45), meta=str(p_meta))
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


def _write_meta(path: Path, rows: list[dict[str, Any]], key: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(
            [
                "row",
                "split",
                key,
                "drawn_class",
                "blend_class",
                "blend_weight",
                "kind",
                "label",
                "occlusion",
                "occlusion_type",
                "yaw",
                "pitch",
                "roll",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r["row"],
                    r["split"],
                    r[key],
                    FERPLUS_CLASSES[r["label"]],
                    FERPLUS_CLASSES[r["blend"]],
                    f"{r['weight']:.3f}",
                    r["kind"],
                    r["list_label"] if "list_label" in r else r["majority"],
                    r["occlusion"],
                    OCCLUSION_LIST_TYPE.get(r["occlusion"], -1),
                    f"{r['yaw']:.2f}",
                    f"{r['pitch']:.2f}",
                    f"{r['roll']:.2f}",
                ]
            )


_AFFECTNET_DEFAULT_OCC = {"train": 0.08, "val": 0.35}
_AFFECTNET_DEFAULT_POSE = {"train": 0.35, "val": 0.45}
_AFFECTNET_EXTRA_MIX = {8: 0.01, 9: 0.01, 10: 0.01}


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
        images, landmarks, params = _render_plan(plan, size, 3, g, face_scale=scale, max_shift=shift)
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
    files.update(occlusion_list=str(p_occ), pose_30_list=str(p_30), pose_45_list=str(p_45), meta=str(p_meta))
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


# ----------------------------------------------------------------------------------------------------------------
# Contact sheet and command line
# ----------------------------------------------------------------------------------------------------------------


def contact_sheet(
    path: str | Path,
    *,
    per_class: int = 8,
    size: int = 48,
    channels: int = 1,
    seed: int = 0,
    zoom: int = 2,
) -> Path:
    """Save a PNG grid: one row per class (``per_class`` faces), then a row per occlusion kind and two rows of
    large yaw (30-45 and 45-62 degrees), each row cycling through the 8 classes."""
    g = torch.Generator().manual_seed(seed)
    cols = max(per_class, 8)
    rows_imgs = []
    for c in range(8):
        rows_imgs.append(render_faces([c] * per_class, size=size, channels=channels, generator=g))
    cyc = [k % 8 for k in range(cols)]
    for occ in OCCLUSIONS[1:]:
        rows_imgs.append(render_faces(cyc, size=size, channels=channels, occlusion=[occ] * cols, generator=g))
    for lo, hi in ((30.5, 45.0), (45.5, 62.0)):
        yaws = [(lo + (hi - lo) * k / max(cols - 1, 1)) * (1 if k % 2 else -1) for k in range(cols)]
        rows_imgs.append(render_faces(cyc, size=size, channels=channels, yaw=yaws, generator=g))
    sheet = Image.new("RGB", (cols * size, len(rows_imgs) * size), (255, 255, 255))
    for r, imgs in enumerate(rows_imgs):
        for c in range(imgs.shape[0]):
            sheet.paste(_to_pil(imgs[c]).convert("RGB"), (c * size, r * size))
    if zoom != 1:
        sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


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


if __name__ == "__main__":
    if not __package__:  # run as a file: make ``examples`` importable like ``python -m`` does
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
