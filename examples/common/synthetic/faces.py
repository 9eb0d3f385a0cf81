r"""Face sampling: the expression model and the identity, pose, camera and occluder parameters of each face.

:func:`sample_faces` draws one parameter set per face; :func:`examples.common.synthetic.render.render` draws it.
Class indices are FERPlus's (:data:`examples.ferplus.formats.FERPLUS_CLASSES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from examples.ferplus.formats import FERPLUS_CLASSES

__all__ = ["OCCLUSIONS", "sample_faces"]

#: Occlusion codes used by the renderer (index = code).
OCCLUSIONS = ("none", "upper", "bottom", "left", "right", "glasses", "mask")

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
    # The draws happen in this order (the same seed gives the same faces): expression, pose, identity, look,
    # camera, occluder, then the degraded faces' camera.
    p = _expression(labels_t, blend_labels, blend_weights, g)
    p.update(_pose(n, g, face_scale, max_shift, yaw))
    p.update(_identity(n, g))
    p.update(_look(n, g))
    p.update(_camera(n, g))
    p["occlusion"] = _occlusion_codes(occlusion, n)
    p.update(_occluder_look(n, g))
    p["degraded"] = _flags(degraded, n)
    p["nonface"] = _flags(nonface, n)
    deg = p["degraded"]
    p["aa"] = torch.where(deg, _uniform(n, 3.5, 6.0, g), p["aa"])
    p["noise"] = torch.where(deg, _uniform(n, 0.08, 0.14, g), p["noise"])
    p["contrast"] = torch.where(deg, _uniform(n, 0.3, 0.5, g), p["contrast"])
    return p


def _flags(values: Sequence[bool] | torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.bool) if values is None else torch.as_tensor(values, dtype=torch.bool)


_JITTER = (0.015, 0.01, 0.06, 0.01, 0.1, 0.01, 0.015, 0.015, 0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
_NONNEGATIVE = (
    "mouth_open",
    "teeth",
    "lip_raise",
    "mouth_asym",
    "brow_asym",
    "nose_wrinkle",
    "glabella",
    "smile_lines",
    "clench",
)


def _expression(
    labels: torch.Tensor,
    blend_labels: Sequence[int] | torch.Tensor | None,
    blend_weights: Sequence[float] | torch.Tensor | None,
    g: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The expression parameters of each face (its class's, blended, at a random intensity, jittered), its
    label and which mouth corner / brow side an asymmetric expression lifts."""
    n = labels.numel()
    expr = _EXPR_TABLE[labels]
    if blend_labels is not None:
        other = _EXPR_TABLE[torch.as_tensor(blend_labels, dtype=torch.long).reshape(-1)]
        w = torch.as_tensor(blend_weights if blend_weights is not None else [0.5] * n, dtype=torch.float32)
        expr = expr + w.reshape(-1, 1) * (other - expr)
    neutral = _EXPR_TABLE[0]
    intensity = _uniform(n, 0.7, 1.2, g).reshape(-1, 1)
    expr = neutral + intensity * (expr - neutral)
    expr = expr + torch.tensor(_JITTER) * torch.randn(n, len(_EXPR), generator=g)
    nonnegative = [_E[k] for k in _NONNEGATIVE]
    expr[:, nonnegative] = expr[:, nonnegative].clamp_min(0.0)
    expr[:, _E["teeth"]] = expr[:, _E["teeth"]].clamp_max(1.0)
    expr[:, _E["eye_open"]] = expr[:, _E["eye_open"]].clamp(0.3, 2.0)
    p: dict[str, torch.Tensor] = {name: expr[:, i].contiguous() for i, name in enumerate(_EXPR)}
    p["label"] = labels.clone()
    p["side"] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)  # which corner/brow/lip side
    p["brow_side"] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return p


def _pose(
    n: int,
    g: torch.Generator,
    face_scale: tuple[float, float],
    max_shift: float,
    yaw: Sequence[float] | torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The face's place, size and in-plane rotation, and the yaw/pitch-like turn (radians)."""
    p = {
        "scale": _uniform(n, *face_scale, g),
        "tx": _uniform(n, -max_shift, max_shift, g),
        "ty": _uniform(n, -max_shift, max_shift, g),
        "roll": torch.deg2rad(_uniform(n, -10.0, 10.0, g)),
    }
    yaw_deg = _uniform(n, -25.0, 25.0, g) if yaw is None else torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    p["yaw"] = torch.deg2rad(yaw_deg)
    p["pitch"] = torch.deg2rad(_uniform(n, -10.0, 10.0, g))
    return p


#: Identity parameters drawn uniformly, in drawing order: (name, low, high).
_IDENTITY = (
    ("head_w", 0.70, 0.82),
    ("head_h", 0.93, 1.02),
    ("head_cy", 0.0, 0.06),
    ("eye_dx", 0.26, 0.32),
    ("eye_y", -0.2, -0.12),
    ("eye_w", 0.11, 0.14),
    ("eye_h", 0.055, 0.07),
    ("gaze", -0.25, 0.25),
    ("brow_gap", 0.16, 0.21),
    ("brow_len", 0.13, 0.17),
    ("brow_th", 0.028, 0.042),
    ("nose_y", 0.12, 0.2),
    ("nose_w", 0.05, 0.075),
    ("nose_depth", 0.12, 0.2),
)


def _identity(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Head shape and the place and size of the facial parts."""
    p = {name: _uniform(n, lo, hi, g) for name, lo, hi in _IDENTITY}
    p["mouth_y"] = p["nose_y"] + _uniform(n, 0.28, 0.34, g)
    p["mouth_w"] = _uniform(n, 0.19, 0.24, g)
    p["lip_th"] = _uniform(n, 0.022, 0.036, g)
    return p


_HAIR_PALETTE = (
    (0.08, 0.06, 0.05),
    (0.25, 0.16, 0.09),
    (0.55, 0.38, 0.2),
    (0.85, 0.72, 0.45),
    (0.6, 0.6, 0.6),
    (0.45, 0.15, 0.08),
)
_IRIS_PALETTE = ((0.25, 0.15, 0.08), (0.2, 0.35, 0.55), (0.25, 0.35, 0.2))


def _look(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Skin, hair, eyes, clothes, background and light."""
    tone = torch.rand(n, generator=g)
    light, dark = torch.tensor([0.97, 0.82, 0.71]), torch.tensor([0.42, 0.27, 0.18])
    skin = light + tone.reshape(-1, 1) * (dark - light) + 0.03 * torch.randn(n, 3, generator=g)
    p = {"skin": skin.clamp(0.05, 1.0)}
    hair = torch.tensor(_HAIR_PALETTE)[_choice(n, (5, 4, 2, 1.5, 1, 1), g)] * _uniform(n, 0.8, 1.15, g).reshape(-1, 1)
    p["hair"] = hair.clamp(0.0, 1.0)
    p["hairline"] = torch.where(torch.rand(n, generator=g) < 0.08, torch.full((n,), -1.3), _uniform(n, -0.85, -0.58, g))
    p["hair_long"] = (torch.rand(n, generator=g) < 0.45).float()
    p["iris"] = torch.tensor(_IRIS_PALETTE)[_choice(n, (6, 2, 1), g)]
    p["clothes"] = torch.rand(n, 3, generator=g)
    p["bg1"] = torch.rand(n, 3, generator=g)
    p["bg2"] = (p["bg1"] + 0.35 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    p["bg_angle"] = _uniform(n, 0.0, 2 * math.pi, g)
    p["bg_tex"] = _uniform(n, 0.0, 0.25, g)
    p["light_x"] = _uniform(n, -0.3, 0.3, g)
    p["light_y"] = _uniform(n, -0.2, 0.15, g)
    return p


def _camera(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Blur (edge width in pixels), noise, contrast, brightness."""
    return {
        "aa": _uniform(n, 0.9, 1.7, g),
        "noise": _uniform(n, 0.0, 0.035, g),
        "contrast": _uniform(n, 0.75, 1.15, g),
        "brightness": _uniform(n, -0.08, 0.08, g),
    }


def _occluder_look(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Occluder geometry and look (used only where an occluder is drawn)."""
    p = {"occ_a": torch.rand(n, generator=g), "occ_b": torch.rand(n, generator=g), "occ_c": torch.rand(n, generator=g)}
    p["occ_col"] = torch.where(
        (torch.rand(n, generator=g) < 0.3).reshape(-1, 1),
        _uniform(n, 0.05, 0.95, g).reshape(-1, 1).expand(n, 3),
        torch.rand(n, 3, generator=g),
    ).contiguous()
    p["occ_tex"] = _uniform(n, 0.1, 0.45, g)
    return p
