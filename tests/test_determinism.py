"""Determinism: every layer, both networks and the gated pool run forward and backward under
``torch.use_deterministic_algorithms(True)`` and give bitwise-equal outputs and gradients on two seeded runs
(on CUDA too when a device is present, where torchvision's RoIAlign backward uses atomic adds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from region_attention import (
    FeatureRegionAttentionNetwork,
    GatedAttentionPool,
    RegionAlign,
    RegionAttentionLoss,
    RegionAttentionNetwork,
    RegionCropper,
    RelationAttentionPool,
    SelfAttentionPool,
)

LANDMARKS = [[12.0, 14.0], [26.0, 14.0], [19.0, 21.0], [13.0, 27.0], [25.0, 27.0]]


def _backbone(dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, dim),
    )


def _cropper_step(device: str, strategy: str) -> Callable[[], list[torch.Tensor]]:
    def run() -> list[torch.Tensor]:
        images = torch.rand(3, 3, 32, 32, device=device, requires_grad=True)
        cropper = RegionCropper(12, strategy=strategy).train()
        gen = torch.Generator(device=device).manual_seed(1) if strategy == "random" else None
        landmarks = torch.tensor([LANDMARKS] * 3, device=device) if strategy == "landmarks" else None
        out = cropper(images, landmarks, gen)
        out.crops.square().sum().backward()
        return [out.crops, out.boxes, images.grad]

    return run


def _align_step(device: str) -> list[torch.Tensor]:
    fmap = torch.randn(2, 5, 9, 7, device=device, requires_grad=True)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 30.0], [0.0, 0.0, 28.0, 36.0]], device=device).expand(2, -1, -1)
    out = RegionAlign(3, 2)(fmap, boxes, (36, 28))
    out.square().sum().backward()
    return [out, fmap.grad]


def _pools_step(device: str) -> list[torch.Tensor]:
    x = torch.randn(4, 6, 8, device=device, requires_grad=True)
    mask = torch.rand(4, 6, device=device) > 0.3
    sp, rp = SelfAttentionPool(8).to(device), RelationAttentionPool(8).to(device)
    gp = GatedAttentionPool(8, 5, heads=2).to(device)
    s = sp(x, mask)
    r = rp(x, s.pooled, s.gates, mask)
    g = gp(x, mask)
    (r.pooled.square().sum() + g.pooled.square().sum()).backward()
    params = [p.grad for m in (sp, rp, gp) for p in m.parameters()]
    return [s.pooled, r.pooled, g.pooled, g.weights, x.grad, *params]


def _network_step(device: str, one_pass: bool) -> list[torch.Tensor]:
    if one_pass:
        trunk = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        head = nn.Sequential(nn.Conv2d(6, 10, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        model: nn.Module = FeatureRegionAttentionNetwork(trunk, head, 10, 4, cropper=RegionCropper(12), roi_size=3)
    else:
        model = RegionAttentionNetwork(_backbone(10), 10, 4, cropper=RegionCropper(12), dropout=0.3)
    model = model.to(device).train()
    images = torch.rand(3, 3, 32, 32, device=device)
    out = model(images)
    loss = RegionAttentionLoss(0.1)(out, torch.tensor([0, 3, 1], device=device))
    loss.total.backward()
    return [out.logits, loss.total, *(p.grad for p in model.parameters())]


STEPS: dict[str, Callable[[str], list[torch.Tensor]]] = {
    "cropper fixed": lambda d: _cropper_step(d, "fixed")(),
    "cropper random": lambda d: _cropper_step(d, "random")(),
    "cropper landmarks": lambda d: _cropper_step(d, "landmarks")(),
    "region align": _align_step,
    "pools (self, relation, gated)": _pools_step,
    "RegionAttentionNetwork": lambda d: _network_step(d, False),
    "FeatureRegionAttentionNetwork": lambda d: _network_step(d, True),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_bitwise_equal_on_two_seeded_runs_under_deterministic_algorithms(device, name, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(0)
            if device.startswith("cuda"):
                torch.cuda.manual_seed_all(0)
            runs.append(STEPS[name](device))
    finally:
        torch.use_deterministic_algorithms(previous)
    for i, (a, b) in enumerate(zip(*runs, strict=True)):
        assert a is not None and b is not None, i
        assert torch.equal(a, b), f"{name}: tensor {i} differs between two seeded runs"
