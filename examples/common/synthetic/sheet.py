r"""A contact sheet of generated faces: every class, every occluder kind, large yaws."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .faces import OCCLUSIONS
from .render import _to_pil, render_faces

__all__ = ["contact_sheet"]


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
        sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
