"""Inference on photos: ``examples/predict.py --detect`` (MTCNN from facenet-pytorch) and the face alignment of
``examples/common/detect.py``, checked against plain slicing, ``F.interpolate`` and the model called directly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from examples.common.detect import align_face, face_square, read_photo
from examples.predict import main as predict
from PIL import Image

from .test_predict import CLASSES
from .test_predict import checkpoint as predict_checkpoint


def checkpoint(tmp_path: Path, regions: str) -> tuple[Path, torch.nn.Module]:
    return predict_checkpoint(tmp_path, regions, size=48)


# ---------------------------------------------------------------------------------------------------------
# Alignment (no detector needed)
# ---------------------------------------------------------------------------------------------------------


def test_integer_square_box_at_its_own_size_is_slicing():
    photo = (torch.rand(3, 100, 120, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    points = torch.tensor([[30.0, 40], [50, 40], [40, 50], [32, 60], [48, 60]])
    face, face_points = align_face(photo, (20, 30, 60, 70), points, 40, margin=0.0)
    torch.testing.assert_close(face, photo[:, 30:70, 20:60].float() / 255)
    torch.testing.assert_close(face_points, points - torch.tensor([20.0, 30.0]))


def test_margin_and_resize_match_interpolate():
    photo = torch.rand(3, 100, 120, generator=torch.Generator().manual_seed(1))
    # box 40 x 40 at (20, 30); margin 0.25 -> the square (10, 20, 70, 80) of side 60, shrunk to 20
    face, face_points = align_face(photo, (20, 30, 60, 70), torch.tensor([[40.0, 50.0]]), 20, margin=0.25)
    expected = F.interpolate(
        photo[None, :, 20:80, 10:70], size=(20, 20), mode="bilinear", align_corners=False, antialias=True
    )[0]
    # the antialiasing filter spans 3 input pixels: at the crop's edge it reads the photo beyond the slice
    torch.testing.assert_close(face[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(face_points, torch.tensor([[10.0, 10.0]]))  # (40 - 10, 50 - 20) * 20 / 60


def test_non_square_box_becomes_a_centred_square_padded_with_black():
    assert face_square((10, 0, 30, 60), 0.0) == (-10.0, 0.0, 50.0, 60.0)
    assert face_square((0, 0, 10, 10), 0.5) == (-5.0, -5.0, 15.0, 15.0)
    photo = torch.ones(3, 60, 40)
    face, _ = align_face(photo, (10, 0, 30, 60), torch.zeros(5, 2), 60, margin=0.0)
    assert face[:, :, :10].abs().max() == 0  # x in [-10, 0): outside the photo
    assert face[:, :, 10:50].min() == 1
    with pytest.raises(ValueError, match=r"margin must be >= 0, got -0\.1"):
        face_square((0, 0, 10, 10), -0.1)
    with pytest.raises(ValueError, match="x2 > x1"):
        face_square((10, 0, 10, 10), 0.1)


# ---------------------------------------------------------------------------------------------------------
# Command line without a detector
# ---------------------------------------------------------------------------------------------------------


def test_missing_facenet_pytorch_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    ckpt, _ = checkpoint(tmp_path, "fixed")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64)).save(photo)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails
    with pytest.raises(SystemExit) as info:
        predict(["--checkpoint", str(ckpt), "--detect", str(photo)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "pip install" in err[-1] and "facenet-pytorch" in err[-1]


@pytest.mark.parametrize("extra", [["face.png"], ["--landmarks", "points.txt"]])
def test_detect_refuses_positional_faces_and_landmarks(tmp_path, capsys, extra):
    ckpt, _ = checkpoint(tmp_path, "fixed")
    with pytest.raises(SystemExit) as info:
        predict(["--checkpoint", str(ckpt), *extra, "--detect", "photo.png"])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# A real photo: scikit-image's astronaut (Eileen Collins, one face)
# ---------------------------------------------------------------------------------------------------------


def astronaut(tmp_path: Path) -> Path:
    pytest.importorskip(
        "facenet_pytorch", reason="facenet-pytorch not installed (pip install 'region-attention[detect]')"
    )
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed (it ships the photo)")
    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("regions", ["fixed", "landmarks"])
def test_astronaut_one_face_found_and_predicted(tmp_path, capsys, regions):
    photo = astronaut(tmp_path)
    ckpt, model = checkpoint(tmp_path, regions)
    out = tmp_path / "faces.json"
    results = predict(["--checkpoint", str(ckpt), "--detect", str(photo), "--json", str(out)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(photo))]
    assert len(results) == 1 and len(lines) == 1
    records = json.loads(out.read_text())
    assert len(records) == 1
    record = records[0]
    assert set(record) >= {"image", "box", "landmarks", "probabilities"}
    assert record["image"] == str(photo)
    # the astronaut's face lies around x 180-270, y 60-175 of the 512 x 512 photo
    x1, y1, x2, y2 = record["box"]
    assert 160 < x1 < 200 and 40 < y1 < 85 and 250 < x2 < 290 and 150 < y2 < 195
    points = torch.tensor(record["landmarks"])
    assert points.shape == (5, 2)
    assert (points[:, 0] > x1).all() and (points[:, 0] < x2).all()
    assert (points[:, 1] > y1).all() and (points[:, 1] < y2).all()
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # eyes and mouth corners left to right
    assert points[0, 1] < points[2, 1] < points[3, 1]  # eyes above the nose above the mouth
    probs = record["probabilities"]
    assert list(probs) == CLASSES
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    # reference: the model on the face cut out by hand (square of side 1.2 x the longer box side)
    side = max(x2 - x1, y2 - y1) * 1.2
    sx, sy = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
    assert sx > 0 and sy > 0 and sx + side < 512 and sy + side < 512  # the square lies inside the photo
    face, _ = align_face(read_photo(photo), record["box"], points, 48, margin=0.1)
    landmarks = ((points - torch.tensor([sx, sy])) * 48 / side)[None] if regions == "landmarks" else None
    with torch.no_grad():
        expected = torch.softmax(model(face[None], landmarks).logits, -1)[0]
    for name, p in zip(CLASSES, expected.tolist(), strict=True):
        assert probs[name] == pytest.approx(p, abs=1e-5)


def test_photo_without_a_face_says_so(tmp_path, capsys):
    astronaut(tmp_path)
    ckpt, _ = checkpoint(tmp_path, "fixed")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), (128, 128, 128)).save(blank)
    out = tmp_path / "faces.json"
    assert predict(["--checkpoint", str(ckpt), "--detect", str(blank), "--json", str(out)]) == []
    assert f"{blank}: no face found" in capsys.readouterr().out
    assert json.loads(out.read_text()) == []
