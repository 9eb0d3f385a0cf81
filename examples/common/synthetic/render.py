r"""The one face drawer: analytic shapes, face geometry and landmarks, occluders, and the batch renderer.

Every part is an analytic shape (ellipse, band between two curves, stroke, capsule) whose anti-aliased coverage
is computed for a whole batch at once and composited back to front, so no supersampling is needed.
:func:`render` returns the images, the 68 landmarks and the occluder's coverage of every pixel (the occlusion
ground truth, see :mod:`examples.common.synthetic.occluders`); :func:`render_batch` and :func:`render_faces` are
the older entry points. Nothing else in the repository draws faces: the dataset writers, the tests, the demo and
the documentation figures all come here.

Convention:
    Drawing coordinates are normalised image coordinates, ``x`` to the right and ``y`` down, both in
    ``[-1, 1]`` across the image; pixel ``i`` covers ``[i, i + 1)`` in continuous pixel coordinates, so the
    normalised coordinate of its centre is ``(i + 0.5) / size * 2 - 1``. Landmarks are in continuous pixel
    coordinates (``x``, ``y``), the iBUG 68-point order. "Left"/"right" are as seen in the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image

from .faces import sample_faces

__all__ = ["Rendered", "render", "render_batch", "render_faces"]

# ----------------------------------------------------------------------------------------------------------------
# Shapes: anti-aliased coverage in [0, 1] of analytic shapes, for a batch (params broadcast as (B, 1, 1))
# ----------------------------------------------------------------------------------------------------------------


_T = torch.Tensor
_Num = torch.Tensor | float  # a shape parameter: per-face (B, 1, 1) or one number for the whole batch
_Curve = Callable[[torch.Tensor], torch.Tensor]  # y = f(t)
_SlopedCurve = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (y, dy/dt) = f(t)
_Params = Callable[[str], torch.Tensor]  # a face parameter by name, shaped to broadcast


def _cov(d: torch.Tensor, aa: torch.Tensor) -> torch.Tensor:
    """Coverage from a signed distance (negative inside) with an edge of width ``aa``."""
    return (0.5 - d / aa).clamp_(0.0, 1.0)


def _ellipse(x: _T, y: _T, cx: _Num, cy: _Num, rx: _Num, ry: _Num, aa: _T) -> _T:
    nx, ny = (x - cx) / rx, (y - cy) / ry
    r = torch.sqrt(nx * nx + ny * ny + 1e-12)
    grad = torch.sqrt((nx / rx) ** 2 + (ny / ry) ** 2 + 1e-12) / r
    return _cov((r - 1.0) / grad, aa)


def _box(x: _T, y: _T, cx: _Num, cy: _Num, hw: _Num, hh: _Num, radius: float, aa: _T) -> _T:
    qx = (x - cx).abs() - hw + radius
    qy = (y - cy).abs() - hh + radius
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
    inside = torch.maximum(qx, qy).clamp_max(0)
    return _cov(outside + inside - radius, aa)


def _capsule(x: _T, y: _T, x0: _Num, y0: _Num, x1: _Num, y1: _Num, th: _Num, aa: _T) -> _T:
    """A segment from (x0, y0) to (x1, y1) of half thickness ``th``."""
    dx, dy = x1 - x0, y1 - y0
    h = (((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12)).clamp(0.0, 1.0)
    d = torch.sqrt((x - x0 - h * dx) ** 2 + (y - y0 - h * dy) ** 2)
    return _cov(d - th, aa)


def _band(x: _T, y: _T, cx: _Num, hw: _Num, top: _Curve, bottom: _Curve, aa: _T) -> _T:
    """The region between two curves ``top(t) <= y <= bottom(t)`` over ``|t| <= 1``, ``t = (x - cx) / hw``."""
    t = (x - cx) / hw
    d = torch.maximum(torch.maximum(top(t) - y, y - bottom(t)), (t.abs() - 1.0) * hw)
    return _cov(d, aa)


def _stroke(x: _T, y: _T, cx: _Num, hw: _Num, curve: _SlopedCurve, th: _Num, aa: _T) -> _T:
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

    def __init__(self, q: _Params) -> None:
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

    def __init__(self, q: _Params, s: float) -> None:
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
    def __init__(self, q: _Params, s: float) -> None:
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


class _Face(NamedTuple):
    """Where every pixel of a batch lies: image coordinates ``gx`` ``(1, 1, S)`` / ``gy`` ``(1, S, 1)``, head
    coordinates ``hx``, ``hy`` (shift, scale and in-plane rotation undone) with one pixel ``aa_h`` in head units,
    and face-surface coordinates ``fx``, ``fy`` (the yaw and pitch turn undone) with one pixel ``aa`` in face
    units; ``fxn``, ``fyn``: the same for the nose, which sticks out and moves further. All ``(B, S, S)``."""

    q: Callable[[str], torch.Tensor]
    gx: torch.Tensor
    gy: torch.Tensor
    hx: torch.Tensor
    hy: torch.Tensor
    aa_h: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    aa: torch.Tensor
    fxn: torch.Tensor
    fyn: torch.Tensor


def _per_face(p: dict[str, torch.Tensor], b: int) -> Callable[[str], torch.Tensor]:
    """``q(name)``: the parameter ``name`` shaped ``(B, 1, 1)`` to broadcast over the pixels."""

    def q(name: str) -> torch.Tensor:
        return p[name].reshape(b, 1, 1)

    return q


def _face_coordinates(p: dict[str, torch.Tensor], size: int) -> _Face:
    b = p["label"].numel()
    q = _per_face(p, b)
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    gx, gy = lin.reshape(1, 1, size), lin.reshape(1, size, 1)
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
    return _Face(q, gx, gy, hx, hy, aa_h, fx, fy, aa, fxn, fyn)


def _colour(p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return p[name].reshape(-1, 3)


def _background(p: dict[str, torch.Tensor], face: _Face, size: int, g: torch.Generator) -> torch.Tensor:
    """Two-colour gradient with a low-frequency texture: ``(B, 3, S, S)``."""
    q, b = face.q, p["label"].numel()
    ang = q("bg_angle")
    ramp = ((torch.cos(ang) * face.gx + torch.sin(ang) * face.gy) * 0.5 + 0.5).unsqueeze(1)
    img = _colour(p, "bg1")[:, :, None, None] * (1 - ramp) + _colour(p, "bg2")[:, :, None, None] * ramp
    img = img + q("bg_tex").unsqueeze(1) * _lowfreq(b, 3, size, 5, g)
    return img.clamp(0, 1).contiguous()


def _head(img: torch.Tensor, p: dict[str, torch.Tensor], face: _Face) -> torch.Tensor:
    """Paint the clothes, neck, hair and the shaded head; returns the head's coverage."""
    q, hx, hy, aa_h = face.q, face.hx, face.hy, face.aa_h
    skin = _colour(p, "skin")
    hw, hh, hcy = q("head_w"), q("head_h"), q("head_cy")
    # Clothes, neck, hair behind the head.
    _paint(img, _ellipse(hx, hy, 0.0, hcy + hh * 1.75, hw * 1.9, hh * 0.85, aa_h), _colour(p, "clothes"))
    neck = _box(hx, hy, 0.0, hcy + hh * 0.95, hw * 0.55, hh * 0.5, 0.05, aa_h)
    _paint(img, neck, skin * 0.72)
    back_hair = _ellipse(hx, hy, 0.0, hcy - 0.08, hw * 1.14, hh * 1.06, aa_h)
    hair_bottom = torch.where(q("hair_long") > 0, hcy + hh * 0.9, hcy - hh * 0.3)
    back_hair = back_hair * _cov(hy - hair_bottom, 4 * aa_h) * (q("hairline") > -1.0).float()
    _paint(img, back_hair, _colour(p, "hair") * 0.8)
    # Head with soft shading (darker towards the outline, a light direction).
    head = _ellipse(hx, hy, 0.0, hcy, hw, hh, aa_h)
    r2 = (hx / hw) ** 2 + ((hy - hcy) / hh) ** 2
    shade = (1.0 - 0.22 * r2.clamp(0, 1) ** 3 - q("light_x") * hx / hw - q("light_y") * hy / hh).clamp(0.4, 1.2)
    _paint(img, head, skin[:, :, None, None] * shade.unsqueeze(1))
    # Hair on the head: above a hairline that dips at the sides, following the turn of the head.
    hairline = q("hairline") + 0.3 * (face.fx / hw) ** 2
    _paint(img, head * _cov(face.fy - hairline, 2 * face.aa), _colour(p, "hair"))
    return head


_Painter = Callable[[torch.Tensor, torch.Tensor], None]
_DARK = (0.08, 0.06, 0.06)


def _brows_and_lines(paint: _Painter, p: dict[str, torch.Tensor], face: _Face) -> None:
    """Brows, frown lines between them, nose creases."""
    q, fx, fy, aa = face.q, face.fx, face.fy, face.aa
    skin = _colour(p, "skin")
    line_col = skin * 0.55
    brow_col = skin * 0.25 + _colour(p, "hair") * 0.3
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

        def wrinkle(t: torch.Tensor, yk: torch.Tensor = yk) -> tuple[torch.Tensor, torch.Tensor]:
            return yk - 0.02 * t * t, -0.04 * t

        c = _stroke(fx, fy, torch.zeros_like(yk), 0.075, wrinkle, 0.011, aa)
        paint(c * wr, line_col)


def _eyes(paint: _Painter, p: dict[str, torch.Tensor], face: _Face) -> None:
    """Eyes: white, iris, pupil, upper lid line."""
    q, fx, fy, aa = face.q, face.fx, face.fy, face.aa
    b = p["label"].numel()
    dark = torch.tensor(_DARK).expand(b, 3)
    for s in (-1.0, 1.0):
        eye = _Eye(q, s)
        white = _band(fx, fy, eye.cx, eye.hw, eye.top, eye.bottom, aa)
        paint(white, torch.tensor([0.92, 0.9, 0.88]).expand(b, 3) * 0.95)
        icx = eye.cx + q("gaze") * eye.hw * 0.4
        icy = eye.centre(torch.zeros_like(icx))
        iris = _ellipse(fx, fy, icx, icy, eye.base_h * 1.05, eye.base_h * 1.05, aa) * white
        paint(iris, _colour(p, "iris"))
        paint(_ellipse(fx, fy, icx, icy, eye.base_h * 0.5, eye.base_h * 0.5, aa) * white, dark)
        paint(_stroke(fx, fy, eye.cx, eye.hw, eye.top_curve, 0.014 + 0.1 * eye.base_h * 0.2, aa), dark)


def _nose_and_smile_lines(paint: _Painter, p: dict[str, torch.Tensor], face: _Face) -> None:
    """Nose: side line (stronger when turned), tip highlight, nostrils; the lines from its wings to the mouth."""
    q, fxn, fyn, aa = face.q, face.fxn, face.fyn, face.aa
    skin = _colour(p, "skin")
    nw, ny = q("nose_w"), q("nose_y")
    turn = torch.sin(q("yaw"))
    side = torch.where(turn >= 0, -1.0, 1.0)
    c = _capsule(fxn, fyn, side * nw * 0.7, q("eye_y") + 0.04, side * nw * 1.05, ny - 0.03, 0.012, aa)
    paint(c * (0.25 + 2.0 * turn.abs()).clamp(0, 1), skin * 0.6)
    paint(_ellipse(fxn, fyn, 0.0, ny - 0.03, nw * 0.9, 0.045, aa) * 0.35, (skin * 1.15).clamp(0, 1))
    for s in (-1.0, 1.0):
        paint(_ellipse(fxn, fyn, s * nw * 0.6, ny + 0.005, 0.03, 0.016, aa), skin * 0.35)
    mouth = _Mouth(q)
    sl = q("smile_lines").clamp(0, 1)
    for s in (-1.0, 1.0):
        corner_y = mouth.centre(torch.full_like(ny, s))[0]
        c = _capsule(face.fx, face.fy, s * (nw + 0.06), ny - 0.03, s * (mouth.hw + 0.06), corner_y + 0.02, 0.013, aa)
        paint(c * sl, skin * 0.55)


def _mouth(paint: _Painter, p: dict[str, torch.Tensor], face: _Face) -> None:
    """Mouth: lips, the dark opening, teeth, the line between the lips."""
    q, fx, fy, aa = face.q, face.fx, face.fy, face.aa
    b = p["label"].numel()
    skin = _colour(p, "skin")
    mouth = _Mouth(q)
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
    dark = torch.tensor(_DARK).expand(b, 3)
    paint(_stroke(fx, fy, 0.0, mouth.hw * 0.95, mouth.centre, 0.008, aa) * opening * clench, dark)
    closed = (1.0 - q("mouth_open") / 0.03).clamp(0, 1)
    paint(_stroke(fx, fy, 0.0, mouth.hw, mouth.centre, 0.014, aa) * closed, skin * 0.3)


def _camera(img: torch.Tensor, p: dict[str, torch.Tensor], face: _Face, g: torch.Generator) -> torch.Tensor:
    """Contrast, brightness, sensor noise; clamped to [0, 1]."""
    q = face.q
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * q("contrast").unsqueeze(1) + mean + q("brightness").unsqueeze(1)
    img = img + q("noise").unsqueeze(1) * torch.randn(img.shape, generator=g)
    return img.clamp_(0.0, 1.0)


def _render_chunk(p: dict[str, torch.Tensor], size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(B, 3, S, S)`` in [0, 1] and the occluder's alpha ``(B, S, S)`` (see :class:`Rendered`): the
    background, the head, the facial parts back to front, the occluder, then the camera."""
    face = _face_coordinates(p, size)
    img = _background(p, face, size, g)
    head = _head(img, p, face)

    def paint(cov: torch.Tensor, colour: torch.Tensor) -> None:
        # Facial parts exist only on the head: outside it the turned coordinates are clamped and would repeat.
        _paint(img, cov * head, colour)

    _brows_and_lines(paint, p, face)
    _eyes(paint, p, face)
    _nose_and_smile_lines(paint, p, face)
    _mouth(paint, p, face)
    occluder = _draw_occluders(img, p, face.hx, face.hy, face.aa_h, size, g)
    if bool(p["nonface"].any()):
        nf = p["nonface"].reshape(-1, 1, 1, 1)
        img = torch.where(nf, _nonface(p, face.gx, face.gy, face.aa_h, size, g), img)
        occluder = occluder.masked_fill(nf[:, 0], 0.0)  # the whole picture is replaced
    return _camera(img, p, face, g), occluder


def _occluder_shapes(
    p: dict[str, torch.Tensor], hx: torch.Tensor, hy: torch.Tensor, aa: torch.Tensor
) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The coverage of each occluder kind (code -> ``(B, S, S)``, every face drawn with its own parameters),
    placed from the turned facial points, and the hands' finger stripes and the mask's pleats."""
    b = hx.shape[0]
    lm = _landmarks_head(p)  # (B, 68, 2)

    def q(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, 1, 1)

    oa, ob, oc = q(p["occ_a"]), q(p["occ_b"]), q(p["occ_c"])
    eye_l, eye_r = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    hw, hh, hcy = q(p["head_w"]), q(p["head_h"]), q(p["head_cy"])
    # upper: a hat brim / band / hand over the forehead and brows.
    edge = q(lm[:, 17:27, 1].mean(1)) + 0.05 + 0.12 * oa + (ob - 0.5) * 0.25 * hx
    upper = _cov(hy - edge, aa) * _cov(hx.abs() - hw * (1.1 + 0.3 * oc), aa)
    # bottom: a hand, scarf or object over the mouth and chin.
    edge = q(lm[:, 48:60, 1].min(1).values) - 0.03 - 0.12 * oa + (ob - 0.5) * 0.3 * hx
    bottom = _cov(edge - hy, aa) * _cov(hx.abs() - (0.55 + 0.5 * oc), aa)
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
    top = q(lm[:, 30, 1]) - 0.03 + 0.06 * oa
    mask = _ellipse(hx, hy, 0.0, hcy + 0.1, hw * 0.98, hh * 0.98, aa) * _cov(top - hy, aa)
    straps = torch.maximum(
        _capsule(hx, hy, -hw * 0.9, top + 0.05, -hw * 1.1, top - 0.15, 0.015, aa),
        _capsule(hx, hy, hw * 0.9, top + 0.05, hw * 1.1, top - 0.15, 0.015, aa),
    )
    pleats = 1.0 - 0.12 * (torch.sin((hy - top) * 45.0) > 0.7).float()
    shapes = {1: upper, 2: bottom, 3: left, 4: right, 5: glasses, 6: torch.maximum(mask, straps)}
    return shapes, fingers, pleats


def _draw_occluders(img: _T, p: dict[str, _T], hx: _T, hy: _T, aa: _T, size: int, g: torch.Generator) -> _T:
    """Occluders drawn over the face in head coordinates, placed from the turned facial points.

    Returns the alpha ``(B, S, S)`` with which the occluder was composited (zero where there is none).
    """
    b = img.shape[0]
    kinds = p["occlusion"]
    if not bool((kinds > 0).any()):
        return torch.zeros(b, size, size)  # no random draws here: the stream stays as it always was
    tex = _lowfreq(b, 1, size, 6, g)[:, 0]
    textured = 1.0 + p["occ_tex"].reshape(b, 1, 1) * tex
    shapes, fingers, pleats = _occluder_shapes(p, hx, hy, aa)
    cover = torch.zeros_like(hx)
    shading = torch.ones_like(hx)
    kind = kinds.reshape(b, 1, 1)
    for code, sh in ((1, None), (2, None), (3, fingers), (4, fingers), (5, None), (6, pleats)):
        sel = (kind == code).float()
        cover = torch.maximum(cover, shapes[code] * sel)
        if sh is not None:
            shading = torch.where(kind == code, sh, shading)
    colour = p["occ_col"].clone()
    is_glasses = (kinds == 5).reshape(b, 1)
    colour = torch.where(is_glasses, colour * 0.18, colour)
    is_hand = ((kinds == 3) | (kinds == 4)).reshape(b, 1)
    colour = torch.where(is_hand & (p["occ_b"] < 0.5).reshape(b, 1), p["skin"] * 0.9, colour)
    fill = colour[:, :, None, None] * (textured * shading).unsqueeze(1)
    _paint(img, cover, fill.clamp(0, 1))
    return cover.expand(b, size, size)


def _nonface(p: dict[str, _T], gx: _T, gy: _T, aa: _T, size: int, g: torch.Generator) -> _T:
    """Images with no face: blobs and texture over a gradient background (the FERPlus NF case)."""
    b = p["label"].numel()
    img = p["bg1"][:, :, None, None] * torch.ones(1, 1, size, size)
    img = img + 0.3 * _lowfreq(b, 3, size, 4, g)
    for _ in range(3):
        cx, cy = torch.rand(b, 1, 1, generator=g) * 2 - 1, torch.rand(b, 1, 1, generator=g) * 2 - 1
        rx, ry = 0.2 + 0.6 * torch.rand(b, 1, 1, generator=g), 0.2 + 0.6 * torch.rand(b, 1, 1, generator=g)
        _paint(img, _ellipse(gx, gy, cx, cy, rx, ry, aa), torch.rand(b, 3, generator=g))
    return img.clamp(0, 1)


class Rendered(NamedTuple):
    """What :func:`render` returns.

    Attributes:
        images: ``uint8`` ``(N, C, S, S)``, ``C`` = 1 (grey) or 3 (RGB).
        landmarks: float32 ``(N, 68, 2)``, ``(x, y)`` in continuous pixel coordinates (iBUG order; the jaw points
            follow the head outline).
        occluders: float32 ``(N, S, S)`` in ``[0, 1]``: the alpha with which the face's occluder was composited
            over each pixel (the share of the pixel's colour that is the occluder, before the camera's
            contrast, brightness and noise, which act on the whole image); all zero for a face without one.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    occluders: torch.Tensor


def render(
    params: dict[str, torch.Tensor],
    size: int = 48,
    *,
    channels: int = 1,
    generator: torch.Generator | None = None,
    chunk: int = 256,
    num_threads: int | None = 1,
) -> Rendered:
    """Render faces drawn by :func:`~examples.common.synthetic.faces.sample_faces`, with their occluder alpha.

    Rendering is thousands of small element-wise operations; with ``num_threads=1`` (the default, restored
    afterwards) it runs at a steady speed even when other processes keep the cores busy, where OpenMP threads
    that wait for each other can make it ten times slower. ``None`` keeps torch's setting.

    Shapes:
        - params: a dict of ``(N,)`` / ``(N, 3)`` tensors from ``sample_faces``
        - output: see :class:`Rendered`

    Example:
        >>> import torch
        >>> from examples.common.synthetic import sample_faces
        >>> g = torch.Generator().manual_seed(0)
        >>> out = render(sample_faces([1, 4], occlusion=["none", "mask"], generator=g), 48, generator=g)
        >>> out.images.shape, out.occluders.shape, bool(out.occluders[0].any()), bool(out.occluders[1].any())
        (torch.Size([2, 1, 48, 48]), torch.Size([2, 48, 48]), False, True)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n = params["label"].numel()
    out = torch.empty(n, channels, size, size, dtype=torch.uint8)
    occluders = torch.zeros(n, size, size)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        for start in range(0, n, chunk):
            part = {k: v[start : start + chunk] for k, v in params.items()}
            img, occluders[start : start + chunk] = _render_chunk(part, size, g)
            if channels == 1:
                img = (img * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
            out[start : start + chunk] = (img * 255.0).round_().to(torch.uint8)
        lm = _head_to_image(params, _landmarks_head(params)) if n else torch.zeros(0, 68, 2)
    finally:
        torch.set_num_threads(threads)
    return Rendered(out, (lm + 1.0) * (size / 2.0), occluders)


def render_batch(
    params: dict[str, torch.Tensor],
    size: int = 48,
    *,
    channels: int = 1,
    generator: torch.Generator | None = None,
    chunk: int = 256,
    num_threads: int | None = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, landmarks)`` of :func:`render` (same arguments, same pixels)."""
    out = render(params, size, channels=channels, generator=generator, chunk=chunk, num_threads=num_threads)
    return out.images, out.landmarks


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
# Images as files
# ----------------------------------------------------------------------------------------------------------------


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
