"""The README's demo path on a tiny size, the pictures it writes, and the inference script."""

from __future__ import annotations

import json
import re

import pytest
import torch
from examples.common.synthetic import Splits
from examples.ferplus.demo import run_demo
from examples.ferplus.train import build_parser
from examples.predict import main as predict
from PIL import Image


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = build_parser().parse_args(["--demo", "--output-dir", str(out)])
    result = run_demo(args, set(), data=Splits(train=96, valid=32, test=64), epochs=1, image_size=32, milestones=[1])
    return out, result


@pytest.mark.slow
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
    assert {"ran", "baseline", "ran_one_pass"} == set(result["summaries"])
    assert "RAN one-pass" in result["table"] and "most covered" in result["table"]
    saved = json.loads((out / "demo_summary.json").read_text())
    assert saved["table"] == result["table"]
    for name in ("ran", "ran_one_pass"):
        entry = saved["occlusion_attention"][name]
        assert {"most_covered", "least_covered", "spearman", "faces"} <= set(entry)
        assert isinstance(entry["faces"], int) and entry["faces"] + entry["skipped"] > 0
        assert 0 <= entry["most_covered"] <= 1 and 0 <= entry["least_covered"] <= 1
        assert -1 <= entry["spearman"] <= 1
    assert json.loads((out / "ran_one_pass" / "config.json").read_text())["regions_on"] == "features"
    assert json.loads((out / "ran" / "config.json").read_text())["regions_on"] == "image"
    ran = json.loads((out / "ran" / "summary.json").read_text())
    assert set(ran["subsets"]) == {"occlusion", "pose30", "pose45"}
    assert all(v["unmatched"] == 0 for v in ran["subsets"].values())


@pytest.mark.slow
def test_demo_reuses_existing_data(demo, capsys):
    out, _ = demo
    args = build_parser().parse_args(["--demo", "--output-dir", str(out)])
    run_demo(args, set(), epochs=1, image_size=32, milestones=[1])
    assert "using the generated data" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_prints_probabilities_and_draws_attention(demo, tmp_path, capsys):
    out, _ = demo
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        pixels = bytes((torch.rand(48 * 48) * 255).byte().tolist())
        Image.frombytes("L", (48, 48), pixels).save(faces / f"face{i}.png")
    figure = tmp_path / "attention.png"
    results = predict(
        ["--checkpoint", str(out / "ran" / "checkpoints" / "best.pt"), str(faces), "--attention-figure", str(figure)]
    )
    assert len(results) == 3
    for r in results:
        probs = [p for _, p in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert figure.stat().st_size > 0
    assert "face0.png" in capsys.readouterr().out
    (faces / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as info:  # one line, exit status 2
        predict(["--checkpoint", str(out / "ran" / "checkpoints" / "best.pt"), str(faces / "broken.png")])
    assert info.value.code == 2 and re.search(r"cannot read image .*broken\.png", capsys.readouterr().err)


@pytest.mark.slow
def test_occlusion_attention_matches_a_direct_computation(demo):
    """The demo's figures, recomputed here from the checkpoint, the occluder file and plain loops."""
    from examples.common.engine import RunConfig, load_checkpoint_file
    from examples.common.models import build_model
    from examples.common.subsets import parse_subset_list
    from examples.common.synthetic import load_occluders
    from examples.ferplus.data import load_ferplus
    from examples.ferplus.demo import region_coverage

    out, result = demo
    data = out / "data"
    test = load_ferplus(data, "majority", splits=("test",))["test"]
    occluders = load_occluders(data, "test")
    alpha = dict(zip(occluders.keys, occluders.alpha, strict=True))
    keys = [e.key for e in parse_subset_list(data / "jianfei_occlusion_list.txt", dataset="ferplus").entries]
    keys = [k for k in dict.fromkeys(keys) if k in test.key_to_index() and alpha[k].any()]
    for name in ("ran", "ran_one_pass"):
        ckpt = load_checkpoint_file(out / name / "checkpoints" / "best.pt")
        model = build_model(RunConfig.from_dict(ckpt["config"]), len(ckpt["class_names"]))
        model.load_state_dict(ckpt["model"])
        model.eval()
        size = ckpt["config"]["image_size"]
        dataset = test.dataset(size, draw_targets=False)
        # the region prior: each region's mean weight over the clean test faces, one face at a time
        test_keys = test.keys()  # the split's image keys, in order
        clean = [k for k in test_keys if k in alpha and not alpha[k].any()]
        prior = torch.zeros(5, dtype=torch.float64)
        for key in clean:
            with torch.no_grad():
                prior += (
                    model(dataset[test.key_to_index()[key]][0].float()[None] / 255)
                    .relation_attention.weights[0, 1:]
                    .double()
                )
        prior /= len(clean)
        most, least, rel_most, rel_least, compared = [], [], [], [], 0
        for key in keys:
            image = dataset[test.key_to_index()[key]][0].float()[None] / 255
            with torch.no_grad():
                o = model(image)
            w = o.relation_attention.weights[0, 1:].double()  # whole face first
            # coverage by loops over the mask's pixels: the box's overlap with each pixel times its opacity
            a = alpha[key].double()
            scale = a.shape[0] / size
            cov = []
            for x1, y1, x2, y2 in (o.regions.boxes[0, 1:].double() * scale).tolist():
                covered = 0.0
                for i in range(a.shape[0]):
                    oy = max(0.0, min(y2, i + 1) - max(y1, i))
                    for j in range(a.shape[1]):
                        ox = max(0.0, min(x2, j + 1) - max(x1, j))
                        covered += float(a[i, j]) * ox * oy
                cov.append(covered / ((x2 - x1) * (y2 - y1)))
            demo_cov = region_coverage(alpha[key][None], o.regions.boxes[:, 1:], size)[0]
            assert demo_cov.tolist() == pytest.approx(cov, abs=1e-9)
            cov_t = demo_cov  # ties decided on the same numbers as the demo
            if bool((cov_t == cov_t[0]).all()):
                continue
            compared += 1
            most.append(float(w[cov_t == cov_t.max()].mean()))
            least.append(float(w[cov_t == cov_t.min()].mean()))
            rel_most.append(float((w / prior)[cov_t == cov_t.max()].mean()))
            rel_least.append(float((w / prior)[cov_t == cov_t.min()].mean()))
        entry = result["occlusion_attention"][name]
        assert entry["faces"] == compared
        assert entry["most_covered"] == pytest.approx(sum(most) / compared, abs=1e-6)
        assert entry["least_covered"] == pytest.approx(sum(least) / compared, abs=1e-6)
        assert entry["clean_faces"] == len(clean) and entry["clean_weights"] == pytest.approx(prior.tolist(), abs=1e-6)
        assert entry["relative_most"] == pytest.approx(sum(rel_most) / compared, rel=1e-5)
        assert entry["relative_least"] == pytest.approx(sum(rel_least) / compared, rel=1e-5)
        # where the gates look: the image-level crops see their own box (and its bilinear edge taps) only
        assert 0 < entry["field_in_box"] <= 1
        assert 0 <= entry["effective_most"] <= 1 and 0 <= entry["effective_least"] <= 1
        if name == "ran":
            assert entry["field_in_box"] > 0.9


@pytest.mark.slow
def test_predict_reads_a_one_pass_checkpoint_and_draws_attention(demo, tmp_path):
    out, _ = demo
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(2):
        Image.frombytes("L", (48, 48), bytes((torch.rand(48 * 48) * 255).byte().tolist())).save(faces / f"f{i}.png")
    figure = tmp_path / "attention.png"
    results = predict(
        [
            "--checkpoint",
            str(out / "ran_one_pass" / "checkpoints" / "best.pt"),
            str(faces),
            "--attention-figure",
            str(figure),
        ]
    )
    assert len(results) == 2 and figure.stat().st_size > 0
