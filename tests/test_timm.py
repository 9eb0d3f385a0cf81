"""timm backbones: ``timm_split`` against the model's own forward, and ``feature_dim`` found without side effects.

Tiny timm configurations, created with ``pretrained=False`` (nothing downloads), in float64 where values are
compared. The reference is always timm's own code path (``forward_features`` + ``forward_head(pre_logits=True)``,
``forward_intermediates``), never our split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm", reason="timm_split needs timm: pip install 'region-attention[timm]'")

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork, RegionCropper  # noqa: E402
from region_attention.backbones import classifier_prefixes, load_checkpoint, timm_split  # noqa: E402
from region_attention.functional import region_align  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a busy machine the thread pool of a float64 convolution crawls (50x measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: (timm name, create kwargs, image side, the forward_intermediates indices to split at)
CNNS = [
    ("resnet10t", {}, 32, [None, 0, 3]),
    ("convnext_atto", {}, 32, [None, 1]),
    ("efficientnet_b0", {}, 32, [None, 2]),
]
#: a ViT without prefix tokens, pooled by averaging: the case where the head is the model's own head exactly
VIT_AVG = {"img_size": 32, "class_token": False, "global_pool": "avg", "depth": 4}


def make(name: str, seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    for module in model.modules():  # BatchNorm with statistics of its own, so eval mode is not the identity
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.double().eval()


def whole_image_through_head(trunk: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The whole-image box pooled at the map's own size with one sample per cell, through the head."""
    fmap = trunk(x)
    h, w = fmap.shape[-2:]
    side = float(x.shape[-1])
    boxes = torch.tensor([0.0, 0.0, side, float(x.shape[-2])], dtype=x.dtype).expand(x.shape[0], 1, 4)
    pooled = region_align(fmap, boxes, x.shape[-2:], (h, w), sampling_ratio=1)[:, 0]
    torch.testing.assert_close(pooled, fmap, rtol=0, atol=0)  # the whole box at its own size is the map
    out: torch.Tensor = head(pooled)
    return out


def model_pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = model.forward_head(model.forward_features(x), pre_logits=True)
    return out


@pytest.mark.parametrize(("name", "kwargs", "side", "indices"), CNNS, ids=[c[0] for c in CNNS])
def test_cnn_head_of_whole_box_is_the_models_pre_logits(name, kwargs, side, indices):
    model = make(name, **kwargs)
    x = torch.rand(2, 3, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model_pre_logits(model, x)
        for at in indices:
            trunk, head = timm_split(model, at)
            if at is not None:  # the trunk is timm's own intermediate at that index
                (ref_map,) = model.forward_intermediates(x, indices=[at], intermediates_only=True)
                torch.testing.assert_close(trunk(x), ref_map, rtol=0, atol=0)
            got = whole_image_through_head(trunk, head, x)
            assert got.shape == (2, head.num_features)
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=f"{name} at={at}")


@pytest.mark.parametrize("at", [None, 0, 2, -2])
def test_vit_without_prefix_tokens_head_is_the_models_head(at):
    model = make("vit_tiny_patch16_224", **VIT_AVG)
    assert model.num_prefix_tokens == 0
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    trunk, head = timm_split(model, at)
    with torch.no_grad():
        fmap = trunk(x)
        assert fmap.shape == (2, 192, 2, 2)  # the 2 x 2 token grid of a 32 px image in 16 px patches
        got = whole_image_through_head(trunk, head, x)
        torch.testing.assert_close(got, model_pre_logits(model, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_vit_with_prefix_tokens(name):
    """Class (and distillation) tokens are dropped from the grid; the head averages the region's own tokens.

    Split at the last block, the whole-image region gives ``fc_norm`` of the mean of the model's final patch
    tokens; split earlier, the later blocks run on the region's tokens alone (no class token), then the norm and
    the mean: a float64 loop over the model's blocks, from timm's own intermediate."""
    model = make(name, img_size=32, depth=3)
    npt = model.num_prefix_tokens
    assert npt >= 1 and model.global_pool == "token"
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        trunk, head = timm_split(model)
        final = model.forward_features(x)  # (B, prefix + 4, C), after the final norm
        torch.testing.assert_close(
            trunk(x).flatten(2).transpose(1, 2),
            model.forward_intermediates(x, indices=[2], norm=False, output_fmt="NLC", intermediates_only=True)[0],
            rtol=0,
            atol=0,
        )
        expected = model.fc_norm(final[:, npt:].mean(1))
        torch.testing.assert_close(whole_image_through_head(trunk, head, x), expected, rtol=1e-12, atol=1e-12)
        # the class token's answer is another thing: the head does not pretend to give it
        assert not torch.allclose(expected, model_pre_logits(model, x))

        trunk, head = timm_split(model, at=0)
        (tokens,) = model.forward_intermediates(x, indices=[0], norm=False, output_fmt="NLC", intermediates_only=True)
        for block in list(model.blocks)[1:]:
            tokens = block(tokens)
        expected = model.fc_norm(model.norm(tokens).mean(1))
        torch.testing.assert_close(whole_image_through_head(trunk, head, x), expected, rtol=1e-12, atol=1e-12)


def test_eva_splits_at_its_last_block_only():
    model = make("eva02_tiny_patch14_224", img_size=28)
    x = torch.rand(1, 3, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        trunk, head = timm_split(model)
        got = whole_image_through_head(trunk, head, x)
        torch.testing.assert_close(got, model_pre_logits(model, x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"rotary position embeddings.*at=None"):
        timm_split(model, at=0)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("resnet10t", {}), ("convnext_atto", {}), ("efficientnet_b0", {}), ("vit_tiny_patch16_224", {"img_size": 32})],
)
def test_pieces_hold_the_models_own_modules(name, kwargs):
    """No copies: every tensor of the pieces is the model's, under its name; together they are the model but
    the classifier; a later load into the model is seen by the pieces."""
    model = make(name, **kwargs)
    trunk, head = timm_split(model, 1)
    own = dict(model.named_parameters())
    pieces = {**dict(trunk.named_parameters()), **dict(head.named_parameters())}
    classifier = classifier_prefixes(model)
    assert classifier and all(k.startswith(classifier) for k in own.keys() - pieces.keys())
    assert pieces.keys() == {k for k in own if not k.startswith(classifier)}
    for key, param in pieces.items():
        assert param is own[key], key
    buffers = {**dict(trunk.named_buffers()), **dict(head.named_buffers())}
    for key, buf in buffers.items():
        assert buf is dict(model.named_buffers())[key], key
    with torch.no_grad():
        first = next(iter(trunk.parameters()))
        first.add_(1.0)
    assert first is next(iter(model.parameters()))


def test_split_leaves_the_model_whole():
    model = make("vit_tiny_patch16_224", img_size=32, depth=3)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        timm_split(model, 0)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    assert len(model.blocks) == 3 and not isinstance(model.head, nn.Identity)


#: (timm name, create kwargs, split index, roi size): CNNs and ViTs with and without class and register tokens
PICKLED = [
    ("resnet10t", {}, 2, 2),
    ("convnext_atto", {}, 2, 2),
    ("vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, 0, 2),
    ("vit_tiny_patch16_224", {"img_size": 32, "depth": 2, "class_token": False, "global_pool": "avg"}, None, 2),
    ("vit_tiny_patch16_224", {"img_size": 32, "depth": 2, "reg_tokens": 2}, 0, 2),
]
PICKLED_IDS = ["resnet10t", "convnext_atto", "vit", "vit-no-class-token", "vit-registers"]


def _network(name: str, kwargs: dict[str, object], at: int | None, roi: int) -> FeatureRegionAttentionNetwork:
    model = make(name, **kwargs).float()
    trunk, head = timm_split(model, at)
    net = FeatureRegionAttentionNetwork(trunk, head, num_classes=3, cropper=RegionCropper(32), roi_size=roi)
    return net.eval()


@pytest.mark.parametrize(("name", "kwargs", "at", "roi"), PICKLED, ids=PICKLED_IDS)
def test_a_network_on_a_split_pickles_and_saves_whole(name, kwargs, at, roi, tmp_path):
    """pickle and torch.save(model) round trips give the same outputs; the pieces are classes of a module (no
    class made at run time), and the trunk still holds the model's own tensors after the round trip."""
    import pickle

    net = _network(name, kwargs, at, roi)
    for piece in (net.trunk, net.head):
        for module in piece.modules():
            cls = type(module)
            assert "<locals>" not in cls.__qualname__ and getattr(
                __import__(cls.__module__, fromlist=["_"]), cls.__qualname__.split(".")[0], None
            ), cls
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = net(x).logits
        restored = pickle.loads(pickle.dumps(net))
        torch.save(net, tmp_path / "net.pt")
        loaded = torch.load(tmp_path / "net.pt", weights_only=False)
        for other in (restored, loaded):
            assert type(other.trunk) is type(net.trunk)
            torch.testing.assert_close(other(x).logits, expected, rtol=0, atol=0)
            # the trunk's tensors are still the ones its forward uses: a change is seen in the output
            next(iter(other.trunk.parameters())).add_(0.5)
            assert not torch.equal(other(x).logits, expected)
    assert set(restored.state_dict()) == set(net.state_dict())


@pytest.mark.parametrize(("name", "kwargs", "at", "roi"), PICKLED, ids=PICKLED_IDS)
def test_a_deep_copy_shares_no_tensor_with_the_original(name, kwargs, at, roi):
    net = _network(name, kwargs, at, roi)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    twin = copy.deepcopy(net)
    originals = {id(t) for t in (*net.parameters(), *net.buffers())}
    assert not originals & {id(t) for t in (*twin.parameters(), *twin.buffers())}
    with torch.no_grad():
        expected = net(x).logits
        torch.testing.assert_close(twin(x).logits, expected, rtol=0, atol=0)
        for param in twin.parameters():  # the copy's forward uses the copy's tensors, the original's is untouched
            param.add_(0.25)
        assert not torch.equal(twin(x).logits, expected)
        torch.testing.assert_close(net(x).logits, expected, rtol=0, atol=0)
    twin.train()
    assert all(m.training for m in twin.modules()) and not any(m.training for m in net.modules())
    if hasattr(twin.trunk, "_model"):  # the copy's own flag follows the trunk's
        assert twin.trunk._model.training and not net.trunk._model.training


def test_a_data_parallel_replica_of_the_vit_trunk_runs_on_its_own_tensors():
    """``torch.nn.parallel.replicate`` (DataParallel) gives each replica registries of its own and fills them with
    that device's copies; the replica's forward must use those, not the original's (emulated on the CPU)."""
    model = make("vit_tiny_patch16_224", img_size=32, depth=2).float()
    trunk, _ = timm_split(model, 0)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    replica = trunk._replicate_for_data_parallel()
    for name, param in trunk.named_parameters():  # what replicate does with the broadcast copies
        owner = replica.get_submodule(name.rpartition(".")[0]) if "." in name else replica
        setattr(owner, name.rpartition(".")[2], nn.Parameter(param.detach() + 1.0))
    with torch.no_grad():
        assert not torch.equal(replica(x), trunk(x))  # the replica's own tensors, not the original's
        for name, param in replica.named_parameters():
            param.copy_(dict(trunk.named_parameters())[name])
        torch.testing.assert_close(replica(x), trunk(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("at", "error", "match"),
    [
        (5, ValueError, r"timm_split expected at in \[-4, 3\] \(4 stages of this model\), got 5"),
        (-5, ValueError, r"got -5"),
        ("layer3", TypeError, r"expected at to be an int index of timm's forward_intermediates or None, got str"),
        (True, TypeError, r"got bool"),
    ],
)
def test_bad_split_index(at, error, match):
    with pytest.raises(error, match=match):
        timm_split(make("convnext_atto"), at)


def test_not_a_supported_model():
    with pytest.raises(TypeError, match=r"timm_split supports .* got torch.nn.modules.container.Sequential"):
        timm_split(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_safetensors_weights_load_under_load_checkpoint_rules(tmp_path):
    from safetensors.torch import save_file

    source = make("convnext_atto", seed=1)
    path = tmp_path / "convnext_atto.safetensors"
    save_file({k: v.float().contiguous() for k, v in source.state_dict().items()}, str(path))
    target = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    result = load_checkpoint(target, path, drop_prefixes=classifier_prefixes(source))
    assert sorted(result.dropped_keys) == ["head.fc.bias", "head.fc.weight"]
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key].float(), rtol=0, atol=0)
    bad = {k: v.float().clone() for k, v in source.state_dict().items()}
    bad["stem.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(bad, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 tensor\(s\): stem.0.weight"):
        load_checkpoint(target, tmp_path / "nan.safetensors", drop_prefixes=classifier_prefixes(source))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"is not a readable safetensors file"):
        load_checkpoint(target, tmp_path / "junk.safetensors")


# --- feature_dim, optional in both networks --------------------------------------------------------------------


def test_one_pass_network_reads_the_heads_feature_size():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    trunk, head = timm_split(model, 0)
    net = FeatureRegionAttentionNetwork(trunk, head, num_classes=5, cropper=RegionCropper(32), roi_size=2)
    assert net.feature_dim == 192
    out = net(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 5)
    out.logits.sum().backward()
    assert model.blocks[1].attn.qkv.weight.grad is not None  # the head's block learns from the regions


def test_image_level_network_reads_num_features():
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    net = RegionAttentionNetwork(backbone, num_classes=4, cropper=RegionCropper(32))
    assert net.feature_dim == 512 == backbone.num_features


def _bn_backbone() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_probe_pass_changes_no_parameter_no_buffer_no_mode():
    """A module without ``num_features`` is measured by one pass; BatchNorm in training mode keeps its running
    statistics and its batch count, and every module keeps its train/eval mode."""
    backbone = _bn_backbone().train()
    backbone[1].eval()  # a mixed-mode module tree stays mixed
    before = _state(backbone)
    net = RegionAttentionNetwork(backbone, num_classes=3, cropper=RegionCropper(16))
    assert net.feature_dim == 6
    after = _state(backbone)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert backbone.training and not backbone[1].training and backbone[0].training
    assert int(backbone[1].num_batches_tracked) == 0

    trunk = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5))
    head = _bn_backbone()
    head[0] = nn.Conv2d(5, 6, 3)
    states = _state(trunk), _state(head)
    net = FeatureRegionAttentionNetwork(trunk, head, num_classes=3, cropper=RegionCropper(16), roi_size=4)
    assert net.feature_dim == 6
    for module, state in zip((trunk, head), states, strict=True):
        for key, value in _state(module).items():
            torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_positional_feature_dim_still_works_and_num_classes_is_required():
    net = RegionAttentionNetwork(_bn_backbone(), 6, 3, cropper=RegionCropper(16))
    assert (net.feature_dim, net.num_classes) == (6, 3)
    trunk = nn.Conv2d(3, 6, 3, padding=1)
    net = FeatureRegionAttentionNetwork(trunk, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 6, 2)
    assert (net.feature_dim, net.num_classes) == (6, 2)
    with pytest.raises(TypeError, match=r"RegionAttentionNetwork missing the required argument num_classes"):
        RegionAttentionNetwork(_bn_backbone())
    with pytest.raises(ValueError, match=r"expected the backbone to return \(N, 7\) features"):
        RegionAttentionNetwork(_bn_backbone(), 7, 3, cropper=RegionCropper(16))(torch.rand(1, 3, 16, 16))


def test_a_backbone_that_cannot_be_measured_says_so():
    with pytest.raises(ValueError, match=r"could not find feature_dim: the backbone returned \(2, 6, 14, 14\)"):
        RegionAttentionNetwork(nn.Conv2d(3, 6, 3), num_classes=3, cropper=RegionCropper(16))


# --- torch.compile and ONNX export of the one-pass network on timm ----------------------------------------------


def _one_pass(name: str, **kwargs: object) -> FeatureRegionAttentionNetwork:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs)
    trunk, head = timm_split(model, 1 if name.startswith("vit") else None)
    return FeatureRegionAttentionNetwork(trunk, head, num_classes=4, cropper=RegionCropper(64), roi_size=2).eval()


SMALL = [("resnet10t", {}), ("vit_tiny_patch16_224", {"img_size": 64, "depth": 2})]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), SMALL, ids=[s[0] for s in SMALL])
def test_compile_fullgraph(name, kwargs):
    net = _one_pass(name, **kwargs)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    with torch.no_grad():
        for bsz in (1, 3):
            images = torch.rand(bsz, 3, 64, 64)
            torch.testing.assert_close(compiled(images).logits, net(images).logits)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), SMALL, ids=[s[0] for s in SMALL])
def test_onnx_export_dynamic_batch(name, kwargs, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    net = _one_pass(name, **kwargs)

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.net(images).logits

    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(
        Logits().eval(),
        (torch.rand(2, 3, 64, 64),),
        dynamo=True,
        verbose=False,
        dynamic_shapes={"images": {0: batch}},
    )
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for bsz in (1, 3):
        images = torch.rand(bsz, 3, 64, 64, generator=torch.Generator().manual_seed(bsz))
        with torch.no_grad():
            expected = net(images).logits.numpy()
        (got,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
        assert got.shape == expected.shape
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)
