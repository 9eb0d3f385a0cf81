"""Models of the examples, built only from region_attention's public API: RAN and the whole-face baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor, nn

from region_attention import RegionAttentionNetwork, RegionCropper
from region_attention.backbones import load_checkpoint, resnet18, vgg16


def small_cnn(checkpoint: str | None = None, widths: tuple[int, ...] = (16, 32, 64, 128)) -> nn.Module:
    """A small, fast CNN for CPU runs and the demo: 3x3 conv-BN-ReLU blocks with 2x2 max pooling between them,
    global average pooling at the end (``widths[-1]``-d features, about 0.1 M parameters, ~9 MMAC at 48 px)."""
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate(widths):
        if i:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


#: name -> (constructor taking an optional checkpoint path, feature size)
BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (resnet18, 512),
    "vgg16": (vgg16, 4096),
    "small": (small_cnn, 128),
}


class BaselineOutput(NamedTuple):
    logits: Tensor


class WholeFaceBaseline(nn.Module):
    """The paper's baseline: the backbone on the whole face alone and a linear classifier."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, images: Tensor, landmarks: Tensor | None = None) -> BaselineOutput:
        feats = self.backbone(images)
        return BaselineOutput(self.classifier(self.dropout(feats.flatten(1))))


def is_ran_output(out: Any) -> bool:
    return hasattr(out, "self_attention")


def build_cropper(cfg: dict[str, Any]) -> RegionCropper:
    """The region layout of a run: ``regions`` is fixed (paper), authors (the authors' seven AffectNet
    regions), landmarks or random; ``whole_position`` first (paper) or last (authors' code)."""
    regions = cfg.get("regions") or "fixed"
    size = cfg["image_size"]
    whole = cfg.get("whole_position") or "first"
    if regions == "fixed":
        return RegionCropper(size, strategy="fixed", boxes="paper", whole_position=whole)
    if regions == "authors":
        return RegionCropper(size, strategy="fixed", boxes="authors-affectnet", whole_position=whole)
    if regions == "landmarks":
        return RegionCropper(size, strategy="landmarks", radius=cfg.get("radius") or 0.4, whole_position=whole)
    if regions == "random":
        return RegionCropper(size, strategy="random", num_regions=cfg.get("num_regions") or 5, whole_position=whole)
    raise ValueError(f"unknown region strategy {regions!r}; expected fixed, authors, landmarks or random")


def build_model(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    make, dim = BACKBONES[cfg["backbone"]]
    backbone = make(cfg.get("pretrained"))
    if cfg["model"] == "baseline":
        return WholeFaceBaseline(backbone, dim, num_classes, dropout=cfg.get("dropout") or 0.0)
    return RegionAttentionNetwork(
        backbone, dim, num_classes, cropper=build_cropper(cfg), variant=cfg["variant"],
        dropout=cfg.get("dropout") or 0.0, region_batching=cfg.get("region_batching") or "joint",
        channels_last=bool(cfg.get("channels_last")),
    )


__all__ = ["BACKBONES", "WholeFaceBaseline", "build_cropper", "build_model", "is_ran_output", "small_cnn"]
