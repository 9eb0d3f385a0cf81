"""Backbones and the pretrained-checkpoint loader, on generated checkpoints with the real key layout."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchvision")

from region_attention.backbones import load_checkpoint, resnet18, resnet18_split, vgg16


def ms_celeb_checkpoint(path, prefixed: bool = True):
    """A file laid out like ijba_res18_naive.pth.tar: DataParallel names plus the feature/fc heads."""
    torch.manual_seed(5)
    source = resnet18()
    state = {("module." if prefixed else "") + k: v.clone() for k, v in source.state_dict().items()}
    prefix = "module." if prefixed else ""
    state[prefix + "feature.weight"] = torch.randn(256, 512)
    state[prefix + "feature.bias"] = torch.randn(256)
    state[prefix + "fc.weight"] = torch.randn(10, 256)  # 87020 identities in the real file
    state[prefix + "fc.bias"] = torch.randn(10)
    torch.save({"state_dict": state} if prefixed else state, path)
    return source


def test_resnet18_shapes():
    assert resnet18()(torch.rand(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.slow
def test_vgg16_first_fc_features():
    model = vgg16()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 4096)
    assert "classifier.0.weight" in model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("prefixed", [True, False])
def test_loads_ms_celeb_layout(tmp_path, prefixed):
    path = tmp_path / "ijba_res18_naive.pth.tar"
    source = ms_celeb_checkpoint(path, prefixed)
    model = resnet18(path)
    result = load_checkpoint(resnet18(), path)
    prefix = "module." if prefixed else ""
    assert sorted(result.dropped_keys) == sorted(
        prefix + k for k in ("feature.weight", "feature.bias", "fc.weight", "fc.bias")
    )
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    source.eval()
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), source(x))


@pytest.mark.slow
def test_missing_keys_are_reported_not_hidden(tmp_path):
    path = tmp_path / "partial.pth"
    state = resnet18().state_dict()
    del state["layer4.1.bn2.running_var"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"1 missing key\(s\) \['layer4.1.bn2.running_var'\], 1 unexpected key\(s\) \['extra.weight'\]"
    ):
        resnet18(path)
    result = load_checkpoint(resnet18(), path, strict=False)
    assert result.missing_keys == ["layer4.1.bn2.running_var"] and result.unexpected_keys == ["extra.weight"]


@pytest.mark.slow
def test_wrong_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        resnet18(tmp_path / "absent.pth")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint that loads with weights_only=True"):
        resnet18(text)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="holds no state dict"):
        resnet18(listing)
    shapes = tmp_path / "shapes.pth"
    state = resnet18().state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, shapes)
    with pytest.raises(
        ValueError, match=r"shape mismatch .*conv1.weight: checkpoint \(64, 1, 7, 7\) vs module \(64, 3, 7, 7\)"
    ):
        resnet18(shapes)


def test_unsafe_pickles_are_refused(tmp_path):
    import argparse

    path = tmp_path / "unsafe.pth"  # an arbitrary object: torch.load(weights_only=True) must refuse it
    torch.save({"state_dict": {"x": argparse.Namespace(payload=1)}}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        resnet18(path)


@pytest.mark.slow
@pytest.mark.parametrize("at", ["layer3", "layer4"])
def test_resnet18_split_equals_resnet18(at):
    torch.manual_seed(0)
    trunk, head = resnet18_split(at)
    whole = resnet18()
    state = {**trunk.state_dict(), **head.state_dict()}
    assert sorted(state) == sorted(whole.state_dict())  # the pair is the whole network, under its names
    whole.load_state_dict(state)
    trunk.eval(), head.eval(), whole.eval()
    x = torch.rand(2, 3, 64, 64)
    fmap = trunk(x)
    assert fmap.shape == ((2, 256, 4, 4) if at == "layer3" else (2, 512, 2, 2))
    torch.testing.assert_close(head(fmap), whole(x), rtol=0, atol=0)


def test_resnet18_split_head_shapes():
    _, head3 = resnet18_split("layer3")
    _, head4 = resnet18_split("layer4")
    assert head3(torch.rand(5, 256, 7, 7)).shape == (5, 512)
    assert head4(torch.rand(5, 512, 7, 7)).shape == (5, 512)
    assert [name for name, _ in head4.named_children()] == ["avgpool", "flatten"]


@pytest.mark.slow
@pytest.mark.parametrize("at", ["layer3", "layer4"])
def test_resnet18_split_loads_the_ms_celeb_checkpoint_like_resnet18(tmp_path, at):
    path = tmp_path / "ijba_res18_naive.pth.tar"
    ms_celeb_checkpoint(path)
    reference = resnet18(path).eval()
    trunk, head = resnet18_split(at, path)
    for key, value in {**trunk.state_dict(), **head.state_dict()}.items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=0)
    trunk.eval(), head.eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(head(trunk(x)), reference(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="missing key"):
        bad = tmp_path / "bad.pth"
        state = resnet18().state_dict()
        del state["layer4.0.conv1.weight"]
        torch.save(state, bad)
        resnet18_split(at, bad)  # the load kwargs and checks are resnet18's


def test_resnet18_split_bad_point():
    with pytest.raises(ValueError, match=r"resnet18_split expected at to be one of 'layer3', 'layer4', got 'layer2'"):
        resnet18_split("layer2")


def test_non_string_keys_are_a_type_error(tmp_path):
    state = dict(resnet18().state_dict())
    state[3] = torch.zeros(1)  # an optimizer-state-like integer key
    path = tmp_path / "int_keys.pth"
    torch.save(state, path)
    with pytest.raises(TypeError, match=r"non-string key.*3 \(int\)"):
        load_checkpoint(resnet18(), path)


@pytest.mark.slow
def test_non_finite_weights_are_refused_naming_the_keys(tmp_path):
    state = dict(resnet18().state_dict())
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].clone()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"] = torch.full((10,), float("inf"))  # a dropped head is checked too: the file is bad
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, path)
    model = resnet18()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ValueError,
        match=r"NaN or infinite values in 2 tensor\(s\): layer1\.0\.conv1\.weight, "
        r"fc\.bias",
    ):
        load_checkpoint(model, path)
    for key, value in model.state_dict().items():  # nothing was loaded
        assert torch.equal(value, before[key]), key


class _WithComplex(torch.nn.Module):
    """A module with a complex parameter (e.g. a learned spectral filter)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.filter = torch.nn.Parameter(torch.ones(4, dtype=torch.complex64))


@pytest.mark.parametrize("bad", [complex(float("nan"), 0.0), complex(0.0, float("nan")), complex(float("inf"), 1.0)])
def test_a_complex_nan_or_infinity_is_refused(tmp_path, bad):
    model = _WithComplex()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["filter"][2] = bad
    torch.save(state, tmp_path / "complex.pth")
    before = model.filter.detach().clone()
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 tensor\(s\): filter;"):
        load_checkpoint(model, tmp_path / "complex.pth")
    assert torch.equal(model.filter.detach(), before)
    state["filter"][2] = complex(2.0, -1.0)  # a finite complex value loads
    torch.save(state, tmp_path / "finite.pth")
    load_checkpoint(model, tmp_path / "finite.pth")
    assert torch.equal(model.filter.detach(), state["filter"])


@pytest.mark.parametrize("prefixed_first", [True, False])
def test_a_weight_with_and_without_the_module_prefix_is_refused(tmp_path, prefixed_first):
    """``module.linear.weight`` and ``linear.weight`` in one file: which one would load depends on the order of
    the keys, so neither does; the error names both keys and nothing is loaded."""
    model = _WithComplex()
    own = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = [("module.linear.weight", torch.zeros(2, 3)), ("linear.weight", torch.ones(2, 3))]
    state = dict(pairs if prefixed_first else pairs[::-1])
    state.update({k: v for k, v in own.items() if k != "linear.weight"})
    torch.save({"state_dict": state}, tmp_path / "both.pth")
    first, second = (p[0] for p in (pairs if prefixed_first else pairs[::-1]))
    with pytest.raises(ValueError, match=rf"weight 'linear\.weight' twice, as '{first}' and as '{second}'"):
        load_checkpoint(model, tmp_path / "both.pth", strict=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, own[key]), key
    # one of each is fine, prefixed or not
    torch.save({"module.linear.weight": torch.zeros(2, 3)}, tmp_path / "one.pth")
    result = load_checkpoint(model, tmp_path / "one.pth", strict=False)
    assert torch.equal(model.linear.weight.detach(), torch.zeros(2, 3)) and "filter" in result.missing_keys
