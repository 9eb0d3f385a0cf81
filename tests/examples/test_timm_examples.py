"""``--backbone timm:NAME`` in the example scripts: options, the models they build, timm weights from a local file,
and a tiny run that trains, resumes and is read back by predict.py. Tiny timm models, nothing downloads."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

timm = pytest.importorskip("timm", reason="--backbone timm:NAME needs timm: pip install 'region-attention[timm]'")

from examples.affectnet.train import build_parser as affectnet_parser  # noqa: E402
from examples.common.backbones import timm_model  # noqa: E402
from examples.common.engine import load_checkpoint_file, resolve_config  # noqa: E402
from examples.common.engine.cli import backbone_size_problem  # noqa: E402
from examples.common.models import build_model  # noqa: E402
from examples.common.synthetic import Splits, generate_ferplus  # noqa: E402
from examples.ferplus.train import build_parser as ferplus_parser  # noqa: E402
from examples.ferplus.train import main as ferplus_main  # noqa: E402
from examples.predict import main as predict  # noqa: E402
from examples.rafdb.train import build_parser as rafdb_parser  # noqa: E402
from examples.sfew.train import build_parser as sfew_parser  # noqa: E402
from PIL import Image  # noqa: E402

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork  # noqa: E402
from region_attention.backbones import timm_split  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PARSERS = {"ferplus": ferplus_parser, "affectnet": affectnet_parser, "rafdb": rafdb_parser, "sfew": sfew_parser}


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_every_script_takes_a_timm_backbone_and_its_split_index(script, tmp_path):
    parser = PARSERS[script]()
    base = ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    cfg = resolve_config(
        parser.parse_args([*base, "--backbone", "timm:resnet10t", "--regions-on", "features", "--split-at", "3"])
    )
    assert (cfg.backbone, cfg.regions_on, cfg.split_at) == ("timm:resnet10t", "features", "3")
    one_pass = [*base, "--regions-on", "features"]
    assert resolve_config(parser.parse_args([*one_pass, "--backbone", "timm:resnet10t"])).split_at == "-1"  # last
    assert resolve_config(parser.parse_args(one_pass)).split_at == "layer3"  # the built-in default is unchanged
    assert resolve_config(parser.parse_args(base)).split_at is None  # no split for the image-level model
    assert "timm:NAME" in parser.format_help()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "timm:no_such_net"], r"--backbone: timm has no model 'no_such_net'"),
        (["--backbone", "resnet"], r"--backbone must be one of resnet18, small, vgg16 or timm:NAME .*got 'resnet'"),
        (
            ["--backbone", "timm:resnet10t", "--regions-on", "features", "--split-at", "layer3"],
            r"--split-at must be an index of timm's",
        ),
        (
            ["--backbone", "timm:resnet10t", "--regions-on", "features", "--split-at", "5"],
            r"--split-at 5: timm_split expected at in \[-5, 4\]",
        ),
        (
            ["--regions-on", "features", "--split-at", "2"],
            r"--split-at must be one of layer3, layer4 for --backbone resnet18, got '2'",
        ),
    ],
)
def test_bad_backbone_or_split_is_one_line_and_status_2(args, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        resolve_config(ferplus_parser().parse_args(["--data-dir", str(tmp_path), *args]))
    with pytest.raises(SystemExit) as exit_info:
        ferplus_main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err


#: --image-size / --roi-size a timm backbone cannot take, and the one line that says so (tiny models: timm's test_*)
SIZE_MISTAKES = [
    (
        ["--backbone", "timm:test_vit", "--image-size", "40"],
        r"--image-size 40: the last rows and columns of the image never reach the features of --backbone "
        r"timm:test_vit \(it is not a multiple of the 16-pixel patches.*\); give --image-size 32 or 48",
    ),
    (
        ["--backbone", "timm:test_vit", "--image-size", "8"],
        r"--image-size 8 is too small for --backbone timm:test_vit; give at least 16",
    ),
    (
        ["--backbone", "timm:test_vit", "--image-size", "32", "--regions-on", "features", "--roi-size", "3"],
        r"--roi-size 3 exceeds the 2 x 2 feature map of a 32-pixel face at --split-at -1 .*; give --roi-size <= 2",
    ),
    (
        ["--backbone", "timm:test_maxvit", "--image-size", "96"],
        r"--backbone timm:test_maxvit takes 160 x 160 images only \(a fixed input size\); give --image-size 160",
    ),
    (
        ["--backbone", "timm:test_convnext", "--image-size", "16"],
        r"--image-size 16 is too small for --backbone timm:test_convnext; give at least 32",
    ),
    (
        ["--backbone", "timm:test_convnext", "--image-size", "64", "--regions-on", "features", "--split-at", "2"],
        r"--roi-size 7 exceeds the 4 x 4 feature map .*; give --roi-size <= 4",  # the default --roi-size 7
    ),
    (
        [
            *("--backbone", "timm:test_convnext", "--image-size", "64", "--regions-on", "features", "--split-at", "2"),
            *("--roi-size", "3"),
        ],
        r"--roi-size 3: the last row and column of a 3 x 3 region never reach the output of the part of --backbone "
        r"timm:test_convnext after --split-at 2 \(a strided layer drops them\); give --roi-size 2 or 4",
    ),
    (
        [
            *("--backbone", "timm:test_convnext", "--image-size", "64", "--regions-on", "features", "--split-at", "1"),
            *("--roi-size", "3"),
        ],
        r"--roi-size 3 is too small for the part of --backbone timm:test_convnext after --split-at 1; give at least 4",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), SIZE_MISTAKES, ids=[" ".join(a[1:4]) + f" {i}" for i, (a, _) in enumerate(SIZE_MISTAKES)]
)
def test_an_image_or_region_size_the_timm_backbone_cannot_take_is_one_line_and_status_2(
    args, message, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        ferplus_main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("backbone", "size", "split_at", "roi_size"),
    [
        ("timm:test_vit", 48, None, None),
        ("timm:test_vit", 32, "0", 2),
        ("timm:test_convnext", 48, None, None),  # not a multiple of 32, yet every pixel reaches the features
        ("timm:test_convnext", 64, "2", 4),
        ("timm:test_resnet", 33, "3", 3),  # padded convolutions: any size
    ],
)
def test_sizes_the_timm_backbone_takes_pass(backbone, size, split_at, roi_size):
    assert backbone_size_problem(backbone, size, split_at, roi_size) is None


def _changes_when_the_edge_changes(module: torch.nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``module``'s output (random weights) changes when the last row and column of its input change."""
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[..., -1, :] += 1.0
    y[..., :, -1] += 1.0
    with torch.no_grad():
        return not torch.equal(module(x), module(y))


def test_the_refusals_are_what_the_real_models_do():
    """An independent check of the probe's findings on the models the scripts build (random weights): the edge of
    a refused image or region changes nothing; that of an accepted one does."""
    torch.manual_seed(0)
    # a ViT at a size that is no multiple of its patch: timm drops the remainder (test_vit3: a strict img_size), or
    # refuses the input outright (test_vit: dynamic_img_size)
    assert not _changes_when_the_edge_changes(timm_model("test_vit3", 40).eval(), (3, 40, 40))
    assert _changes_when_the_edge_changes(timm_model("test_vit3", 48).eval(), (3, 48, 48))
    with pytest.raises(AssertionError, match=r"should be divisible by patch size \(16\)"):
        timm_model("test_vit", 40)(torch.rand(1, 3, 40, 40))
    assert backbone_size_problem("timm:test_vit3", 40, None, None) is not None
    convnext = timm_model("test_convnext", 64).eval()
    assert _changes_when_the_edge_changes(convnext, (3, 48, 48))
    _, head = timm_split(convnext, 2)
    channels = convnext.feature_info[2]["num_chs"]
    assert not _changes_when_the_edge_changes(head, (channels, 3, 3))
    assert _changes_when_the_edge_changes(head, (channels, 2, 2)) and _changes_when_the_edge_changes(
        head, (channels, 4, 4)
    )


def _cfg(**kw):
    return resolve_config(argparse.Namespace(image_size=32, **kw))


def test_build_model_with_timm_backbones():
    cnn = build_model(_cfg(backbone="timm:resnet10t", regions_on="features", roi_size=2, split_at="3"), 7)
    assert isinstance(cnn, FeatureRegionAttentionNetwork) and cnn.feature_dim == 512
    vit = build_model(_cfg(backbone="timm:test_vit", regions_on="features", roi_size=2, split_at="0"), 7)
    assert isinstance(vit, FeatureRegionAttentionNetwork) and len(vit.head.blocks) > 0  # blocks run per region
    image_level = build_model(_cfg(backbone="timm:test_vit"), 7)
    assert isinstance(image_level, RegionAttentionNetwork)
    baseline = build_model(_cfg(backbone="timm:convnext_atto", model="baseline"), 7)
    assert type(baseline).__name__ == "WholeFaceBaseline"
    for model in (cnn, vit, image_level, baseline):
        assert model.eval()(torch.rand(2, 3, 32, 32)).logits.shape == (2, 7)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_loads_timm_weights_from_a_local_file(tmp_path, suffix):
    """A timm weight file with its 1000-class classifier loads into the classifier-free backbone of both
    networks, every other weight exactly."""
    torch.manual_seed(3)
    source = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / f"resnet10t{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    image_level = build_model(_cfg(backbone="timm:resnet10t", pretrained=str(path)), 7)
    one_pass = build_model(_cfg(backbone="timm:resnet10t", pretrained=str(path), regions_on="features"), 7)
    got_image = image_level.backbone.state_dict()
    got_split = {**one_pass.trunk.state_dict(), **one_pass.head.state_dict()}
    for key, value in expected.items():
        torch.testing.assert_close(got_image[key], value, rtol=0, atol=0)
        torch.testing.assert_close(got_split[key], value, rtol=0, atol=0)
    torch.save({"conv1.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"shape mismatch"):
        build_model(_cfg(backbone="timm:resnet10t", pretrained=str(tmp_path / "wrong.pth")), 7)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "split", "other"),
    # resnet10t's default split (-1, layer4) is a 1 x 1 map at 32 px, refused for --roi-size 2 before any resume
    [("timm:resnet10t", "3", ["--split-at", "2"]), ("timm:test_vit", "0", [])],
)
def test_timm_one_pass_run_trains_resumes_and_predicts(tmp_path, capsys, backbone, split, other):
    data = tmp_path / "data"
    generate_ferplus(data, Splits(train=32, valid=16, test=16), seed=5)
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--output-dir", str(out), "--backbone", backbone, "--image-size", "32"]
    common += ["--batch-size", "16", "--workers", "0", "--device", "cpu", "--regions-on", "features", "--roi-size", "2"]
    split_args = ["--split-at", split]
    ferplus_main([*common, *split_args, "--epochs", "1"])
    ferplus_main([*common, *split_args, "--epochs", "2", "--resume"])
    ckpt = load_checkpoint_file(out / "checkpoints" / "last.pt")
    assert (ckpt["config"]["backbone"], ckpt["config"]["split_at"]) == (backbone, split)  # the model's identity
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        ferplus_main([*common, *other, "--epochs", "3", "--resume"])  # another split (or the default): refused
    assert refused.value.code == 2
    now = other[1] if other else "-1"
    assert re.search(rf"split_at: checkpoint '{split}' vs now '{now}'", capsys.readouterr().err)
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.frombytes("L", (48, 48), bytes((torch.rand(48 * 48) * 255).byte().tolist())).save(faces / "a.png")
    results = predict(["--checkpoint", str(out / "checkpoints" / "last.pt"), str(faces / "a.png")])
    assert len(results) == 1
    probs = [p for _, p in results[0]["top"]]
    assert (probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4) or len(probs) < 8
