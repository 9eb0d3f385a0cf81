"""The README's demo path on a tiny size, the pictures it writes, and the inference script."""

from __future__ import annotations

import json

import pytest
import torch
from examples.ferplus.demo import run_demo
from examples.ferplus.train import build_parser
from examples.predict import main as predict
from PIL import Image


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = build_parser().parse_args(["--demo", "--output-dir", str(out)])
    result = run_demo(args, set(), data={"n_train": 96, "n_valid": 32, "n_test": 64}, epochs=1, image_size=32,
                      milestones=[1])
    return out, result


def test_demo_prints_the_table_and_writes_the_pictures(demo):
    out, result = demo
    assert "Baseline" in result["table"] and "RAN" in result["table"]
    for column in ("overall", "occlusion", "pose30", "pose45"):
        assert column in result["table"]
    for path in result["pictures"]:
        with Image.open(path) as image:  # a real, non-trivial PNG
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 150
            histogram = image.convert("L").histogram()
            assert sum(count > 0 for count in histogram) > 10
    assert {"ran", "baseline"} == set(result["summaries"])
    saved = json.loads((out / "demo_summary.json").read_text())
    assert saved["table"] == result["table"]
    ran = json.loads((out / "ran" / "summary.json").read_text())
    assert set(ran["subsets"]) == {"occlusion", "pose30", "pose45"}
    assert all(v["unmatched"] == 0 for v in ran["subsets"].values())


def test_demo_reuses_existing_data(demo, capsys):
    out, _ = demo
    args = build_parser().parse_args(["--demo", "--output-dir", str(out)])
    run_demo(args, set(), epochs=1, image_size=32, milestones=[1])
    assert "using the generated data" in capsys.readouterr().out


def test_predict_prints_probabilities_and_draws_attention(demo, tmp_path, capsys):
    out, _ = demo
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        pixels = bytes((torch.rand(48 * 48) * 255).byte().tolist())
        Image.frombytes("L", (48, 48), pixels).save(faces / f"face{i}.png")
    figure = tmp_path / "attention.png"
    results = predict(["--checkpoint", str(out / "ran" / "checkpoints" / "best.pt"), str(faces),
                       "--attention-figure", str(figure)])
    assert len(results) == 3
    for r in results:
        probs = [p for _, p in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert figure.stat().st_size > 0
    assert "face0.png" in capsys.readouterr().out
    (faces / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        predict(["--checkpoint", str(out / "ran" / "checkpoints" / "best.pt"), str(faces / "broken.png")])
