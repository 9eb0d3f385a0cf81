"""``--regions-on features`` (the one-pass model) in the example scripts: the options, the model they build,
a tiny run that trains, resumes and is read back by predict.py."""

from __future__ import annotations

import argparse

import pytest
import torch
from examples.affectnet.train import build_parser as affectnet_parser
from examples.common.engine import load_checkpoint_file, resolve_config
from examples.common.models import build_model, small_cnn, small_cnn_split
from examples.common.synthetic import Splits, generate_ferplus
from examples.ferplus.train import build_parser as ferplus_parser
from examples.ferplus.train import main as ferplus_main
from examples.predict import main as predict
from examples.rafdb.train import build_parser as rafdb_parser
from examples.sfew.train import build_parser as sfew_parser
from PIL import Image

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork

from ._runs import fast_options

FAST = fast_options(32)
PARSERS = {"ferplus": ferplus_parser, "affectnet": affectnet_parser, "rafdb": rafdb_parser, "sfew": sfew_parser}


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_every_script_takes_the_one_pass_options(script, tmp_path):
    parser = PARSERS[script]()
    base = ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    cfg = resolve_config(
        parser.parse_args([*base, "--regions-on", "features", "--roi-size", "5", "--split-at", "layer4"])
    )
    assert (cfg.regions_on, cfg.roi_size, cfg.split_at) == ("features", 5, "layer4")
    default = resolve_config(parser.parse_args(base))
    assert (default.regions_on, default.roi_size, default.split_at) == ("image", None, None)  # the paper
    features = resolve_config(parser.parse_args([*base, "--regions-on", "features"]))
    assert (features.roi_size, features.split_at) == (7, "layer3")  # the one-pass defaults
    help_text = parser.format_help()
    assert "--regions-on" in help_text and "--roi-size" in help_text and "--split-at" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--regions-on", "pixels"])
    with pytest.raises(ValueError, match=r"--roi-size must be >= 1, got 0"):
        resolve_config(parser.parse_args([*base, "--regions-on", "features", "--roi-size", "0"]))
    with pytest.raises(ValueError, match=r"--roi-size applies to the one-pass model only"):
        resolve_config(parser.parse_args([*base, "--roi-size", "5"]))


@pytest.mark.parametrize("at", ["layer3", "layer4"])
def test_small_cnn_split_is_the_small_cnn_cut_in_two(at):
    torch.manual_seed(0)
    trunk, head = small_cnn_split(at)
    whole = small_cnn()
    whole.load_state_dict({**trunk.state_dict(), **head.state_dict()})  # the same names, every one of them
    x = torch.rand(3, 3, 48, 48)
    for m in (trunk, head, whole):
        m.eval()
    fmap = trunk(x)
    assert fmap.shape == ((3, 64, 12, 12) if at == "layer3" else (3, 128, 6, 6))
    torch.testing.assert_close(head(fmap), whole(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"small_cnn_split expected at to be one of layer3, layer4, got 'x'"):
        small_cnn_split("x")


def test_build_model_follows_regions_on():
    def cfg(**kw):
        return resolve_config(argparse.Namespace(backbone="small", image_size=32, **kw))

    assert isinstance(build_model(cfg(), 8), RegionAttentionNetwork)
    one_pass = build_model(cfg(regions_on="features", roi_size=5, split_at="layer4"), 8)
    assert isinstance(one_pass, FeatureRegionAttentionNetwork)
    out = one_pass(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 8) and out.relation_attention.weights.shape == (2, 6)
    assert out.regions.crops is None
    resnet = build_model(resolve_config(argparse.Namespace(regions_on="features", image_size=64)), 8)
    assert isinstance(resnet, FeatureRegionAttentionNetwork)
    with pytest.raises(ValueError, match=r"--regions-on features needs a backbone that can be split .*vgg16"):
        build_model(resolve_config(argparse.Namespace(regions_on="features", backbone="vgg16")), 8)
    # the baseline has no regions: --regions-on features is refused for it, not ignored
    with pytest.raises(ValueError, match=r"the baseline has no regions"):
        cfg(model="baseline", regions_on="features")


@pytest.mark.slow
def test_one_pass_run_trains_resumes_and_predicts(tmp_path):
    data = tmp_path / "data"
    generate_ferplus(data, Splits(train=64, valid=24, test=24), seed=5)
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--output-dir", str(out), *FAST, "--regions-on", "features", "--roi-size", "4"]
    ferplus_main([*common, "--epochs", "1"])
    ferplus_main([*common, "--epochs", "2", "--resume"])
    ckpt = load_checkpoint_file(out / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1  # 0-based: the second epoch, trained after the resume
    assert (ckpt["config"]["regions_on"], ckpt["config"]["roi_size"]) == ("features", 4)
    assert any(k.startswith("trunk.") for k in ckpt["model"])  # the one-pass model's weights
    # the model identity includes where the regions come from: no resume as an image-level RAN
    with pytest.raises(SystemExit) as info:
        ferplus_main(["--data-dir", str(data), "--output-dir", str(out), *FAST, "--epochs", "3", "--resume"])
    assert info.value.code == 2
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.frombytes("L", (48, 48), bytes((torch.rand(48 * 48) * 255).byte().tolist())).save(faces / "a.png")
    figure = tmp_path / "attention.png"
    results = predict(
        ["--checkpoint", str(out / "checkpoints" / "last.pt"), str(faces / "a.png"), "--attention-figure", str(figure)]
    )
    assert len(results) == 1 and figure.stat().st_size > 0
    probs = [p for _, p in results[0]["top"]]
    assert probs == sorted(probs, reverse=True)
