r"""Faces as PIL pictures for the image-folder writers (RAF-DB, SFEW): a face with its 5 landmarks, and the same
face pasted into a larger "original" picture."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from PIL import Image

from examples.ferplus.formats import FERPLUS_CLASSES
from region_attention.functional import reduce_landmarks

from .faces import sample_faces
from .render import _to_pil, render_batch

__all__ = ["place_on_canvas", "render_with_synthetic"]


def render_with_synthetic(
    expressions: Sequence[str],
    size: int,
    seed: int,
    *,
    occlusion: Sequence[str] | None = None,
    yaw: Sequence[float] | None = None,
) -> tuple[list[Image.Image], list[list[tuple[float, float]]]]:
    """One RGB ``size x size`` face per expression name (FERPlus class names) and its 5 landmarks (eye centres,
    nose tip, mouth corners; :func:`region_attention.functional.reduce_landmarks`) in pixels. ``occlusion``
    names and ``yaw`` degrees per face are passed to the renderer."""
    labels = [FERPLUS_CLASSES.index(e) for e in expressions]
    g = torch.Generator().manual_seed(seed)
    params = sample_faces(
        labels,
        generator=g,
        occlusion=list(occlusion) if occlusion is not None else None,
        yaw=list(yaw) if yaw is not None else None,
    )
    images, lm68 = render_batch(params, size, channels=3, generator=g)
    five = reduce_landmarks(lm68) if len(labels) else torch.zeros(0, 5, 2)
    out = [_to_pil(img) for img in images]
    marks = [[(float(x), float(y)) for x, y in points.tolist()] for points in five]
    return out, marks


def place_on_canvas(
    face: Image.Image, marks: Sequence[tuple[float, float]], canvas: tuple[int, int], rng: random.Random
) -> tuple[Image.Image, tuple[float, float, float, float], list[tuple[float, float]]]:
    """Paste ``face`` scaled into a larger noisy ``canvas`` (W, H) at a random place: the "original" image,
    its face box ``(x1, y1, x2, y2)`` and the landmarks in canvas pixels."""
    cw, ch = canvas
    side = round(min(cw, ch) * rng.uniform(0.45, 0.7))
    x0, y0 = rng.randint(0, cw - side), rng.randint(0, ch - side)
    img = Image.effect_noise((cw, ch), 40).convert("RGB")
    tint = Image.new("RGB", (cw, ch), tuple(rng.randint(30, 220) for _ in range(3)))
    img = Image.blend(img, tint, 0.7)
    img.paste(face.resize((side, side), Image.Resampling.BILINEAR), (x0, y0))
    k = side / face.size[0]
    return img, (float(x0), float(y0), float(x0 + side), float(y0 + side)), [(x0 + x * k, y0 + y * k) for x, y in marks]
