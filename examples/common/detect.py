"""Faces in photos: MTCNN finds them, and each one is cut out as an example checkpoint expects its input.

``examples/predict.py --detect PHOTO...`` uses this module. The detector is MTCNN from facenet-pytorch (MIT
licence; its three networks' weights ship inside the wheel as ``facenet_pytorch/data/{p,r,o}net.pt``, so nothing
is downloaded at run time). It returns, per face, a box and the five points RAN's landmark regions use, in
the order of :func:`region_attention.functional.reduce_landmarks`: the eye on the image's left, the other eye,
the nose tip, the mouth corners (left, right in the image).

Install it with ``pip install "region-attention[detect]"``: pip then picks facenet-pytorch 2.5.3, whose
requirements leave torch alone. facenet-pytorch 2.6 pins ``torch<2.3`` and ``torchvision<0.18`` (and old numpy
and Pillow), which would replace a newer torch; to use it anyway, install it without its requirements:
``pip install --no-deps facenet-pytorch`` (it needs numpy, Pillow, requests and torchvision, which the examples'
set-up already has).

Alignment (:func:`align_face`): the face box is made square around its centre, grown by ``margin`` of its
side on every side, and resampled to the checkpoint's ``image_size`` with
:func:`region_attention.functional.crop_regions` (bilinear with antialiasing, as PIL's resize of the training
faces; parts of the square outside the photo are black). The landmarks are mapped into that crop, so a
checkpoint trained with landmark regions gets its regions around the detected eyes, nose and mouth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from region_attention.functional import crop_regions

#: Installation hint shown when facenet-pytorch is missing.
INSTALL_HINT = (
    '--detect needs facenet-pytorch: pip install "region-attention[detect]" (or pip install --no-deps '
    "facenet-pytorch, whose 2.6 release pins torch<2.3)"
)


class DetectedFace(NamedTuple):
    """One face found in a photo.

    ``box`` and ``landmarks`` are in pixels of the photo (``(x1, y1, x2, y2)``; ``(5, 2)`` ``(x, y)``);
    ``face`` is the aligned crop, float ``(3, size, size)`` in [0, 1]; ``face_landmarks`` the five points in
    pixels of that crop; ``score`` the detector's confidence.
    """

    image: str
    box: tuple[float, float, float, float]
    landmarks: Tensor
    score: float
    face: Tensor
    face_landmarks: Tensor


def load_detector(device: str | torch.device = "cpu") -> Any:
    """MTCNN keeping every face (not only the largest). Raises ``ImportError`` with the install command when
    facenet-pytorch is absent."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from None
    return MTCNN(keep_all=True, select_largest=False, post_process=False, device=torch.device(device))


def read_photo(path: Path) -> Tensor:
    """The photo as uint8 ``(3, H, W)`` RGB, turned upright by its EXIF orientation (phone photos)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            width, height = image.size
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return data.reshape(height, width, 3).permute(2, 0, 1)


def face_square(box: Sequence[float], margin: float) -> tuple[float, float, float, float]:
    """The square around ``box``'s centre with side ``max(w, h) * (1 + 2 * margin)``."""
    if margin < 0:
        raise ValueError(f"face margin must be >= 0, got {margin}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"expected a face box (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {tuple(box)}")
    half = max(x2 - x1, y2 - y1) * (1 + 2 * margin) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - half, cy - half, cx + half, cy + half


def align_face(
    photo: Tensor, box: Sequence[float], landmarks: Tensor, size: int, margin: float = 0.1
) -> tuple[Tensor, Tensor]:
    """The face of ``box`` as the network input and its landmarks in pixels of that input.

    Args:
        photo: uint8 or float ``(3, H, W)`` (uint8 is scaled to [0, 1]).
        box: ``(x1, y1, x2, y2)`` in photo pixels.
        landmarks: ``(5, 2)`` (or ``(N, 2)``) ``(x, y)`` photo pixels.
        size: side of the output (the checkpoint's ``image_size``).
        margin: the square crop grows by this fraction of its side on every side.

    Returns:
        ``(face, face_landmarks)``: float ``(3, size, size)`` in [0, 1], and ``landmarks`` mapped into it.
    """
    x1, y1, x2, y2 = face_square(box, margin)
    crop_box = torch.tensor([[[x1, y1, x2, y2]]], dtype=torch.float64)
    face = crop_regions(photo.unsqueeze(0), crop_box.float(), size, antialias=True, dtype=torch.float32)[0, 0]
    scale = size / (x2 - x1)
    face_landmarks = (landmarks.to(torch.float64) - torch.tensor([x1, y1], dtype=torch.float64)) * scale
    return face.clamp(0, 1), face_landmarks.float()


def detect_faces(
    detector: Any, path: Path, size: int, *, margin: float = 0.1, min_score: float = 0.9
) -> list[DetectedFace]:
    """Every face of the photo at ``path`` with a detector score of at least ``min_score``, aligned for a
    network with ``size x size`` inputs, left to right."""
    import numpy as np
    from PIL import Image

    photo = read_photo(path)
    boxes, scores, points = detector.detect(Image.fromarray(photo.permute(1, 2, 0).numpy()), landmarks=True)
    if boxes is None:
        return []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    faces = []
    for i in np.argsort(boxes[:, 0], kind="stable"):
        if scores[i] < min_score:
            continue
        landmarks = torch.from_numpy(points[i]).float()
        face, face_landmarks = align_face(photo, boxes[i].tolist(), landmarks, size, margin)
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        faces.append(DetectedFace(str(path), (x1, y1, x2, y2), landmarks, float(scores[i]), face, face_landmarks))
    return faces


__all__ = ["INSTALL_HINT", "DetectedFace", "align_face", "detect_faces", "face_square", "load_detector", "read_photo"]
