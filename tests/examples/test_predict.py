"""examples/predict.py with landmark-region checkpoints: landmarks from --landmarks reach the model (checked
against the model called directly with hand-scaled points), and a checkpoint is refused without them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from examples.common.engine import CHECKPOINT_FORMAT, RunConfig, atomic_save, resolve_config
from examples.common.models import build_model
from examples.predict import main as predict
from examples.rafdb.train import build_parser
from PIL import Image

CLASSES = ["a", "b", "c"]


def checkpoint(tmp_path: Path, regions: str, size: int = 32) -> tuple[Path, torch.nn.Module]:
    """An untrained RAF-DB-script checkpoint of the small backbone with ``regions``, and its model."""
    args = build_parser().parse_args(
        [
            "--data-dir",
            "x",
            "--output-dir",
            str(tmp_path),
            "--backbone",
            "small",
            "--image-size",
            str(size),
            "--regions",
            regions,
            "--images",
            "original",
        ]
    )
    cfg: RunConfig = resolve_config(args)
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASSES))
    path = tmp_path / f"{regions}.pt"
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "config": {**cfg.to_dict(), "image_channels": "RGB"},
            "class_names": CLASSES,
            "epoch": 0,
            "best": {"epoch": None, "accuracy": -1.0},
            "history": [{}],
        },
        path,
    )
    return path, model.eval()


def faces(tmp_path: Path) -> list[Path]:
    g = torch.Generator().manual_seed(1)
    paths = []
    for i, (w, h) in enumerate([(64, 64), (80, 40)]):
        pixels = (torch.rand(h, w, 3, generator=g) * 255).byte()
        path = tmp_path / f"face{i}.png"
        Image.frombytes("RGB", (w, h), bytes(pixels.reshape(-1).tolist())).save(path)
        paths.append(path)
    return paths


def test_landmark_checkpoint_gets_the_landmarks(tmp_path, capsys):
    ckpt, model = checkpoint(tmp_path, "landmarks")
    files = faces(tmp_path)
    five = [
        torch.tensor([[20.0, 24], [44, 24], [32, 36], [22, 48], [42, 48]]),
        torch.tensor([[25.0, 15], [55, 15], [40, 22], [28, 30], [52, 30]]),
    ]
    # the first image as 5 points, the second as 68 points whose reduction gives the same 5
    full = torch.zeros(68, 2)
    full[36:42], full[42:48], full[30], full[48], full[54] = five[1][0], five[1][1], five[1][2], five[1][3], five[1][4]
    table = tmp_path / "points.txt"
    table.write_text(
        f"{files[0].name} "
        + " ".join(f"{v:g}" for v in five[0].flatten().tolist())
        + "\n"
        + f"{files[1]},"
        + ",".join(f"{v:g}" for v in full.flatten().tolist())
        + "\n"
    )
    results = predict(["--checkpoint", str(ckpt), "--landmarks", str(table), "--top", "3", *map(str, files)])
    # reference: the model called directly, the points scaled by hand into the 32 x 32 input
    images = torch.stack(
        [
            torch.frombuffer(
                bytearray(Image.open(f).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR).tobytes()),
                dtype=torch.uint8,
            )
            .reshape(32, 32, 3)
            .permute(2, 0, 1)
            .float()
            / 255
            for f in files
        ]
    )
    points = torch.stack([five[0] * torch.tensor([32 / 64, 32 / 64]), five[1] * torch.tensor([32 / 80, 32 / 40])])
    with torch.no_grad():
        expected = torch.softmax(model(images, points).logits, -1)
        without = torch.softmax(model(images, torch.full_like(points, float("nan"))).logits, -1)
    for result, probs, other in zip(results, expected, without, strict=True):
        got = dict(result["top"])
        for name, p in zip(CLASSES, probs.tolist(), strict=True):
            assert got[name] == pytest.approx(p, abs=1e-5)
        assert not torch.allclose(probs, other)  # the landmarks matter: masked regions give another answer


def test_landmark_checkpoint_without_landmarks_is_refused(tmp_path, capsys):
    ckpt, _ = checkpoint(tmp_path, "landmarks")
    with pytest.raises(SystemExit) as info:
        predict(["--checkpoint", str(ckpt), *map(str, faces(tmp_path))])
    assert info.value.code == 2
    assert "landmark regions" in capsys.readouterr().err


def test_landmarks_for_a_fixed_region_checkpoint_are_refused(tmp_path, capsys):
    ckpt, _ = checkpoint(tmp_path, "fixed")
    table = tmp_path / "points.txt"
    table.write_text("face0.png 1 2 3 4 5 6 7 8 9 10\n")
    with pytest.raises(SystemExit) as info:
        predict(["--checkpoint", str(ckpt), "--landmarks", str(table), *map(str, faces(tmp_path))])
    assert info.value.code == 2 and "drop --landmarks" in capsys.readouterr().err


def test_bad_landmark_lines_name_the_line(tmp_path, capsys):
    ckpt, _ = checkpoint(tmp_path, "landmarks")
    table = tmp_path / "points.txt"
    for text, message in (
        ("face0.png 1 2 3\n", r"points\.txt, line 1: expected 10 numbers"),
        ("other.png 1 2 3 4 5 6 7 8 9 10\n", r"no line for .*face0\.png"),
    ):
        table.write_text(text)
        with pytest.raises(SystemExit) as info:
            predict(["--checkpoint", str(ckpt), "--landmarks", str(table), *map(str, faces(tmp_path))])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1 and re.search(message, err[0]), err
