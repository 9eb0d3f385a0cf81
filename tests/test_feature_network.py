"""FeatureRegionAttentionNetwork: boxes like the cropper's, a hand-computed forward pass, the shared head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from region_attention import (
    FeatureRegionAttentionNetwork,
    RegionAttentionLoss,
    RegionAttentionNetwork,
    RegionCropper,
    RegionCrops,
)
from region_attention.functional import region_align, region_biased_loss

LANDMARKS = torch.tensor(
    [
        [[20.0, 24.0], [44.0, 24.0], [32.0, 36.0], [24.0, 48.0], [40.0, 48.0]],
        [[20.0, 24.0], [float("nan"), float("nan")], [32.0, 36.0], [-50.0, 48.0], [60.0, 62.0]],
    ]
)


def tiny_trunk() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1)
    )


def tiny_head(dim: int = 12) -> nn.Module:
    # (N, dim, 1, 1): the trailing (1, 1) is accepted
    return nn.Sequential(nn.Conv2d(16, dim, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))


def make_model(**kwargs) -> FeatureRegionAttentionNetwork:
    torch.manual_seed(0)
    kwargs.setdefault("cropper", RegionCropper(16))
    kwargs.setdefault("roi_size", 3)
    return FeatureRegionAttentionNetwork(tiny_trunk(), tiny_head(), 12, 5, **kwargs)


def test_shapes_and_gradients_reach_every_parameter(device):
    model = make_model().to(device)
    images = torch.rand(3, 3, 40, 40, device=device)
    out = model(images)
    assert out.logits.shape == (3, 5)
    assert out.self_attention.pooled.shape == (3, 12) and out.self_attention.weights.shape == (3, 6)
    assert out.relation_attention.pooled.shape == (3, 24)
    assert out.regions.crops is None
    assert out.regions.boxes.shape == (3, 6, 4) and out.regions.mask.shape == (3, 6)
    loss = RegionAttentionLoss(whole_index=model.whole_index)(out, torch.tensor([0, 1, 4], device=device))
    loss.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


CROPPERS = {
    "fixed": RegionCropper(16),
    "fixed last": RegionCropper(16, whole_position="last"),
    "authors boxes": RegionCropper(16, boxes="authors-affectnet", whole_position="last"),
    "custom boxes": RegionCropper(16, boxes=[(0.1, 0.2, 0.5, 0.9), (0.3, 0.3, 1.0, 0.6)]),
    "no whole": RegionCropper(16, include_whole=False),
    "random": RegionCropper(16, strategy="random", num_regions=4),
    "random last": RegionCropper(16, strategy="random", whole_position="last"),
    "landmarks": RegionCropper(16, strategy="landmarks"),
    "landmarks drop last": RegionCropper(16, strategy="landmarks", border="drop", whole_position="last"),
    "landmarks clip": RegionCropper(16, strategy="landmarks", border="clip", radius=0.2),
}


@pytest.mark.parametrize("name", list(CROPPERS))
@pytest.mark.parametrize("training", [True, False])
def test_boxes_and_mask_are_the_croppers(name, training):
    cropper = CROPPERS[name]
    model = make_model(cropper=cropper).train(training)
    images = torch.rand(2, 3, 64, 48)
    landmarks = LANDMARKS if cropper.strategy == "landmarks" else None
    # random: the same generator state for both; in eval mode without one, both use the cropper's eval_seed
    random = cropper.strategy == "random"
    gen = torch.Generator().manual_seed(3) if training and random else None
    boxes, mask, whole_index = model.boxes(images, landmarks, gen)
    gen = torch.Generator().manual_seed(3) if training and random else None
    regions = cropper(images, landmarks=landmarks, generator=gen)
    torch.testing.assert_close(boxes, regions.boxes, rtol=1e-6, atol=1e-5)
    assert boxes.dtype == regions.boxes.dtype
    assert torch.equal(mask, regions.mask)
    assert whole_index == regions.whole_index == cropper.whole_index
    out = model(images, landmarks, generator=torch.Generator().manual_seed(3) if random else None)
    assert out.regions.whole_index == cropper.whole_index
    assert out.logits.shape == (2, 5) and out.self_attention.weights.shape == (2, cropper.K)


def test_landmark_masks_flow_to_pools_and_loss():
    model = make_model(cropper=RegionCropper(16, strategy="landmarks"))
    out = model(torch.rand(2, 3, 64, 64), LANDMARKS)
    mask = out.regions.mask
    assert mask[0].all() and mask[1].tolist() == [True, True, False, True, False, True]
    assert (out.self_attention.weights[~mask] == 0).all()
    assert (out.relation_attention.weights[~mask] == 0).all()
    criterion = RegionAttentionLoss(margin=1.0, whole_index=model.whole_index)
    loss = criterion(out, torch.tensor([0, 1]))
    expected = region_biased_loss(out.self_attention.gates, mask, margin=1.0, whole_index=model.whole_index)
    torch.testing.assert_close(loss.region_biased, expected)
    loss.total.backward()


@pytest.mark.parametrize("whole_position", ["first", "last"])
def test_identity_trunk_and_mean_head_by_hand(whole_position):
    """Identity trunk, mean-pooling head: the region features are RoIAlign + mean; check every step by hand."""
    torch.manual_seed(1)
    cropper = RegionCropper(8, whole_position=whole_position)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = FeatureRegionAttentionNetwork(
        nn.Identity(), head, 3, 4, cropper=cropper, roi_size=4, sampling_ratio=3
    ).double()
    with torch.no_grad():
        model.self_pool.query.weight.mul_(10)
        model.relation_pool.query.weight.mul_(10)
    images = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    out = model(images)

    tv = pytest.importorskip("torchvision")
    boxes = cropper(images.float()).boxes.double()  # the paper's boxes, from the image cropper
    pooled = tv.ops.roi_align(images, list(boxes), (4, 4), spatial_scale=1.0, sampling_ratio=3, aligned=True)
    x = pooled.mean((-2, -1)).reshape(2, 6, 3)  # F_i
    mu = torch.sigmoid(x @ model.self_pool.query.weight.T).squeeze(-1)  # Eq. 2
    f_m = (mu.unsqueeze(-1) * x).sum(1) / mu.sum(1, keepdim=True)  # Eq. 3
    pairs = torch.cat([x, f_m.unsqueeze(1).expand_as(x)], -1)
    nu = torch.sigmoid(pairs @ model.relation_pool.query.weight.T).squeeze(-1)  # Eq. 4
    w = mu * nu
    p_ran = (w.unsqueeze(-1) * pairs).sum(1) / w.sum(1, keepdim=True)  # Eq. 5
    logits = p_ran @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(out.self_attention.gates, mu)
    torch.testing.assert_close(out.relation_attention.pooled, p_ran)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.regions.boxes, boxes)
    # the whole face's feature is the image mean only up to RoIAlign's border weights; check its place
    whole = 0 if whole_position == "first" else -1
    torch.testing.assert_close(out.regions.boxes[:, whole], torch.tensor([[0.0, 0, 20, 20]] * 2, dtype=torch.float64))


def test_embed_is_region_align_then_head():
    model = make_model().eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model.feature_map(images)
        boxes = model.boxes(images).boxes
        feats = model.embed(model.boxes(images), images)
        pooled = region_align(fmap, boxes, (32, 32), output_size=3, sampling_ratio=2)
        expected = model.head(pooled.flatten(0, 1)).flatten(1).reshape(2, 6, 12)
    torch.testing.assert_close(feats, expected)


def test_the_post_feature_head_is_shared():
    """One implementation after the region features: the same method, classes and parameter names."""
    assert FeatureRegionAttentionNetwork.forward_features is RegionAttentionNetwork.forward_features
    image_level = RegionAttentionNetwork(
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 12, 5, cropper=RegionCropper(16)
    )
    one_pass = make_model()
    for name in ("self_pool", "relation_pool", "dropout", "classifier"):
        assert type(getattr(image_level, name)) is type(getattr(one_pass, name)), name
    head_keys = {k for k in one_pass.state_dict() if not k.startswith(("trunk.", "head."))}
    assert head_keys == {k for k in image_level.state_dict() if not k.startswith("backbone.")}
    # the same features through either network's head give the same output
    image_level.load_state_dict({**image_level.state_dict(), **{k: one_pass.state_dict()[k] for k in head_keys}})
    feats = torch.randn(3, 6, 12)
    regions = RegionCrops(torch.zeros(3, 6, 3, 1, 1), torch.zeros(3, 6, 4), torch.rand(3, 6) > 0.3)
    a, b = one_pass.forward_features(feats, regions), image_level.forward_features(feats, regions)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.relation_attention.weights, b.relation_attention.weights, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["paper", "authors"])
def test_variants(variant):
    model = make_model(variant=variant)
    assert (model.self_pool.query.bias is not None) == (variant == "authors")
    assert model.self_pool.variant == variant and model.relation_pool.variant == variant
    out = model(torch.rand(2, 3, 32, 32))
    if variant == "authors":  # softmax over the sigmoid gates
        torch.testing.assert_close(out.self_attention.gates.sum(1), torch.ones(2))


def test_default_cropper_repr_and_properties():
    model = FeatureRegionAttentionNetwork(tiny_trunk(), tiny_head(), 12, 5, roi_size=(3, 2), dropout=0.25)
    assert model.cropper.output_size == (224, 224) and model.whole_index == 0
    assert model.roi_size == (3, 2) and model.sampling_ratio == 2
    assert model.extra_repr() == ("feature_dim=12, num_classes=5, variant='paper', roi_size=(3, 2), sampling_ratio=2")
    assert "(align): RegionAlign(output_size=(3, 2), sampling_ratio=2)" in repr(model)
    assert model.dropout.p == 0.25


def test_uint8_images_and_channels_last():
    model = make_model().eval()
    images = (torch.rand(2, 3, 32, 32) * 255).round()
    with torch.no_grad():
        a = model(images.to(torch.uint8)).logits
        b = model(images / 255).logits
        model.channels_last = True
        c = model(images / 255).logits
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(c, b, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_resnet18_split_end_to_end():
    pytest.importorskip("torchvision")
    from region_attention.backbones import resnet18_split

    for at, roi in (("layer3", 7), ("layer4", 3)):
        trunk, head = resnet18_split(at)
        model = FeatureRegionAttentionNetwork(trunk, head, 512, 8, roi_size=roi).eval()
        with torch.no_grad():
            out = model(torch.rand(1, 3, 112, 112))
        assert out.logits.shape == (1, 8) and torch.isfinite(out.logits).all()


@pytest.mark.slow
def test_compile_whole_model():
    model = make_model().eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        for bsz in (2, 3):
            images = torch.rand(bsz, 3, 40, 40)
            torch.testing.assert_close(compiled(images).logits, model(images).logits)


@pytest.mark.slow
def test_export_dynamic_batch():
    model = make_model().eval()

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images):
            out = self.model(images)
            return out.logits, out.relation_attention.weights

    program = torch.export.export(
        Logits(), (torch.rand(3, 3, 40, 40),), dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}}
    )
    for bsz in (1, 5):
        images = torch.rand(bsz, 3, 40, 40)
        with torch.no_grad():
            for a, b in zip(program.module()(images), Logits()(images), strict=True):
                torch.testing.assert_close(a, b)


def test_no_host_sync(device):
    if device != "cuda":
        pytest.skip("host synchronisation is only observable on CUDA")
    model = make_model().to(device)
    images = torch.rand(2, 3, 40, 40, device=device)
    model(images)  # warm-up: lazy initialisation may synchronise once
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(images)
        RegionAttentionLoss()(out, torch.zeros(2, dtype=torch.long, device=device)).total.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"variant": "x"}, ValueError, "expected variant to be one of"),
        ({"dropout": 1.5}, ValueError, r"expected dropout in \[0, 1\], got 1.5"),
        ({"cropper": "paper"}, TypeError, "expected cropper to be a RegionCropper or None, got str"),
        ({"roi_size": 0}, ValueError, r"RegionAlign expected output_size > 0, got 0"),
        ({"sampling_ratio": 0}, ValueError, r"expected sampling_ratio >= 1, got 0: torchvision's adaptive"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make_model(**kwargs)


def test_bad_modules_and_inputs_are_reported():
    with pytest.raises(TypeError, match=r"expected trunk to be an nn\.Module, got function"):
        FeatureRegionAttentionNetwork(lambda x: x, tiny_head(), 12, 5)
    with pytest.raises(TypeError, match=r"expected head to be an nn\.Module, got str"):
        FeatureRegionAttentionNetwork(tiny_trunk(), "mean", 12, 5)
    wrong_dim = FeatureRegionAttentionNetwork(tiny_trunk(), tiny_head(12), 10, 5, cropper=RegionCropper(16))
    with pytest.raises(ValueError, match=r"expected the head to return \(N, 10\) features .* got \(12, 12\)"):
        wrong_dim(torch.rand(2, 3, 32, 32))
    flat_trunk = FeatureRegionAttentionNetwork(nn.Flatten(), tiny_head(), 12, 5, cropper=RegionCropper(16))
    with pytest.raises(ValueError, match=r"expected the trunk to return a \(B, C, h, w\) feature map"):
        flat_trunk(torch.rand(2, 3, 32, 32))
    landmark_model = make_model(cropper=RegionCropper(16, strategy="landmarks"))
    with pytest.raises(ValueError, match=r"landmarks of shape \(B, 5, 2\) or \(B, 68, 2\) in pixels, got None"):
        landmark_model(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"expected landmarks of shape \(2, 5, 2\) or \(2, 68, 2\)"):
        landmark_model(torch.rand(2, 3, 64, 64), LANDMARKS[:, :4])
    with pytest.raises(ValueError, match=r"expected images of shape \(B, C, H, W\), got 3-D shape \(3, 64, 64\)"):
        make_model()(torch.rand(3, 64, 64))
