"""RegionAttentionNetwork: composition, batching modes, the authors' forward pass, compile, masks, loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from region_attention import (
    RegionAttentionLoss,
    RegionAttentionNetwork,
    RegionCropper,
    RegionCrops,
)
from region_attention.functional import region_biased_loss


def tiny_backbone(dim: int = 12) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, dim, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),  # (N, dim, 1, 1): the trailing (1, 1) is accepted
    )


def make_model(**kwargs) -> RegionAttentionNetwork:
    torch.manual_seed(0)
    kwargs.setdefault("cropper", RegionCropper(16))
    return RegionAttentionNetwork(tiny_backbone(), 12, 5, **kwargs)


def test_shapes_and_gradients_reach_every_parameter(device):
    model = make_model().to(device)
    images = torch.rand(3, 3, 40, 40, device=device)
    out = model(images)
    assert out.logits.shape == (3, 5)
    assert out.self_attention.pooled.shape == (3, 12) and out.self_attention.weights.shape == (3, 6)
    assert out.relation_attention.pooled.shape == (3, 24)
    assert out.regions.crops.shape == (3, 6, 3, 16, 16)
    loss = RegionAttentionLoss(whole_index=model.whole_index)(out, torch.tensor([0, 1, 4], device=device))
    loss.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_default_cropper_is_the_paper_layout():
    model = RegionAttentionNetwork(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 3, 7)
    assert model.cropper.output_size == (224, 224)
    assert model.whole_index == 0
    out = model(torch.rand(1, 3, 100, 100))
    assert out.regions.crops.shape == (1, 6, 3, 224, 224)
    assert model.classifier.in_features == 6 and model.self_pool.query.bias is None


def test_joint_and_per_region_agree_in_eval_mode():
    joint = make_model(region_batching="joint")
    images = torch.rand(4, 3, 32, 32)
    joint(images)  # one training-mode pass, so BatchNorm running statistics are not the defaults
    per_region = make_model(region_batching="per_region")
    per_region.load_state_dict(joint.state_dict())
    joint.eval()
    per_region.eval()
    with torch.no_grad():
        a, b = joint(images), per_region(images)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.relation_attention.weights, b.relation_attention.weights, atol=1e-6, rtol=1e-5)


def test_per_region_eval_equals_a_loop_of_backbone_calls():
    """Eval takes the single joint call; it must equal calling the backbone once per region index."""
    model = make_model(region_batching="per_region")
    images = torch.rand(3, 3, 32, 32)
    model(images)  # update the running statistics
    model.eval()
    with torch.no_grad():
        out = model(images)
        loop = torch.stack([model.backbone(out.regions.crops[:, i]).flatten(1) for i in range(6)], 1)
    torch.testing.assert_close(model.embed(out.regions), loop, atol=1e-5, rtol=1e-5)


def test_training_mode_batchnorm_statistics_differ_between_batching_modes():
    joint = make_model(region_batching="joint")
    per_region = make_model(region_batching="per_region")
    per_region.load_state_dict(joint.state_dict())
    images = torch.rand(4, 3, 32, 32)
    a, b = joint(images), per_region(images)
    assert not torch.allclose(a.logits, b.logits)


def authors_forward(x5: torch.Tensor, backbone, alpha, beta, fc) -> torch.Tensor:
    """An independent re-implementation of the released attention_rank_loss.py forward pass.

    Input (B, 3, h, w, K) with the whole face last; every region goes through the backbone in its own call;
    alpha/beta are Linear + Sigmoid; softmax over regions of the sigmoid outputs; fc on the 1024-d output.
    """
    feats = [backbone(x5[..., i]).flatten(1) for i in range(x5.shape[-1])]
    alphas = torch.cat([torch.sigmoid(alpha(f)) for f in feats], dim=1)  # (B, K)
    alphas = torch.softmax(alphas, dim=1)
    stacked = torch.stack(feats, dim=2)  # (B, D, K)
    fm = (stacked * alphas.unsqueeze(1)).sum(2) / alphas.sum(1, keepdim=True)
    betas = torch.cat([torch.sigmoid(beta(torch.cat([f, fm], 1))) for f in feats], dim=1)
    betas = torch.softmax(betas, dim=1)
    cat = torch.stack([torch.cat([f, fm], 1) for f in feats], dim=2)  # (B, 2D, K)
    w = alphas * betas
    out = (cat * w.unsqueeze(1)).sum(2) / w.sum(1, keepdim=True)
    return fc(out)


def test_authors_variant_reproduces_their_forward_pass():
    torch.manual_seed(0)
    cropper = RegionCropper(16, strategy="fixed", boxes="authors-affectnet", whole_position="last")
    model = RegionAttentionNetwork(tiny_backbone(), 12, 8, cropper=cropper, variant="authors").eval()
    assert model.whole_index == -1
    assert model.self_pool.query.bias is not None and model.relation_pool.query.bias is not None
    alpha = nn.Linear(12, 1)
    beta = nn.Linear(24, 1)
    fc = nn.Linear(24, 8)
    with torch.no_grad():  # share weights, scaled up so the attention is far from uniform
        for lin in (alpha, beta):
            lin.weight.mul_(20)
        model.self_pool.query.load_state_dict(alpha.state_dict())
        model.relation_pool.query.load_state_dict(beta.state_dict())
        model.classifier.load_state_dict(fc.state_dict())
    images = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        out = model(images)
        x5 = out.regions.crops.permute(0, 2, 3, 4, 1)  # their [B, 3, h, w, K] layout
        expected = authors_forward(x5, model.backbone, alpha, beta, fc)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    # their loss: margin_ranking_loss(max crop mu, whole mu) with margin 0.1 on the softmaxed gates
    gates = out.self_attention.gates
    rb = RegionAttentionLoss(0.1, whole_index=-1)(out, torch.zeros(3, dtype=torch.long)).region_biased
    ref = torch.nn.functional.margin_ranking_loss(gates[:, :-1].max(1).values, gates[:, -1], torch.ones(3), margin=0.1)
    torch.testing.assert_close(rb, ref)


def test_landmark_masks_flow_to_pools_and_loss():
    cropper = RegionCropper(16, strategy="landmarks")
    model = make_model(cropper=cropper)
    images = torch.rand(2, 3, 64, 64)
    landmarks = torch.tensor(
        [
            [[20.0, 24.0], [44.0, 24.0], [32.0, 36.0], [24.0, 48.0], [40.0, 48.0]],
            [[20.0, 24.0], [float("nan"), float("nan")], [32.0, 36.0], [-50.0, 48.0], [40.0, 48.0]],
        ]
    )
    out = model(images, landmarks)
    mask = out.regions.mask
    assert mask[0].all() and not mask[1].all()
    assert (out.self_attention.weights[~mask] == 0).all()
    assert (out.relation_attention.weights[~mask] == 0).all()
    criterion = RegionAttentionLoss(margin=1.0, whole_index=model.whole_index)
    loss = criterion(out, torch.tensor([0, 1]))
    expected_rb = region_biased_loss(out.self_attention.gates, mask, margin=1.0, whole_index=model.whole_index)
    torch.testing.assert_close(loss.region_biased, expected_rb)
    # a masked region's gate can never be the best crop
    gates = out.self_attention.gates.detach().clone()
    gates[~mask] = 5.0
    torch.testing.assert_close(region_biased_loss(gates, mask, margin=1.0), expected_rb)


def test_forward_regions_on_precropped_images():
    model = make_model().eval()
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        out = model(images)
        again = model.forward_regions(RegionCrops(out.regions.crops, out.regions.boxes, out.regions.mask))
    torch.testing.assert_close(out.logits, again.logits)


@pytest.mark.slow
def test_compile_whole_model():
    model = make_model(region_batching="joint").eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images).logits, model(images).logits)


def test_loss_with_label_distributions_and_class_weights():
    model = make_model()
    out = model(torch.rand(2, 3, 40, 40))
    probs = torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0, 1.0, 0, 0]])
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0])
    got = RegionAttentionLoss(rb_weight=0.5, class_weight=weights)(out, probs)
    ce = torch.nn.functional.cross_entropy(out.logits, probs, weight=weights)
    torch.testing.assert_close(got.classification, ce)
    torch.testing.assert_close(got.total, ce + 0.5 * got.region_biased)
    zero = RegionAttentionLoss(rb_weight=0)(out, torch.tensor([1, 2]))
    assert zero.region_biased == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"variant": "x"}, ValueError, "expected variant to be one of"),
        ({"region_batching": "all"}, ValueError, "expected region_batching to be one of 'joint', 'per_region'"),
        ({"dropout": 1.5}, ValueError, r"expected dropout in \[0, 1\], got 1.5"),
        ({"cropper": "paper"}, TypeError, "expected cropper to be a RegionCropper or None, got str"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        RegionAttentionNetwork(tiny_backbone(), 12, 5, **kwargs)


def test_backbone_with_wrong_feature_size_is_reported():
    model = RegionAttentionNetwork(tiny_backbone(12), 10, 5, cropper=RegionCropper(16))
    with pytest.raises(ValueError, match=r"expected the backbone to return \(N, 10\) features .* got \(12, 12\)"):
        model(torch.rand(2, 3, 32, 32))


def test_state_dict_keys_are_unchanged():
    """Checkpoints of earlier versions must load: the head's parameters keep their top-level names."""
    model = make_model(variant="authors")
    keys = [k for k in model.state_dict() if not k.startswith("backbone.")]
    assert keys == [
        "self_pool.query.weight",
        "self_pool.query.bias",
        "relation_pool.query.weight",
        "relation_pool.query.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert [name for name, _ in model.named_children()] == [
        "cropper",
        "backbone",
        "self_pool",
        "relation_pool",
        "dropout",
        "classifier",
    ]
    assert model.extra_repr() == "feature_dim=12, num_classes=5, variant='authors', region_batching='joint'"
