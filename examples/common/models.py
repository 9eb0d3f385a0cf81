"""Models of the examples, built only from region_attention's public API: RAN and the whole-face baseline."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import Tensor, nn

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork, RegionCropper
from region_attention.backbones import load_checkpoint, resnet18, resnet18_split, vgg16

if TYPE_CHECKING:
    from .engine.config import RunConfig


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


def small_cnn_split(at: str = "layer3", checkpoint: str | None = None,
                    widths: tuple[int, ...] = (16, 32, 64, 128)) -> tuple[nn.Sequential, nn.Sequential]:
    """:func:`small_cnn` cut in two for the one-pass model, like ``resnet18_split``: ``at="layer3"`` ends the
    trunk after the third conv block (stride 4, ``widths[2]`` channels) and leaves the last block (its max
    pooling, conv-BN-ReLU) and the global pooling to the head; ``at="layer4"`` ends it after the last block
    and the head is the global pooling alone. The two parts hold the very modules of one :func:`small_cnn`
    under its names, so a checkpoint of it loads as into the whole network."""
    if at not in SPLIT_POINTS:
        raise ValueError(f"small_cnn_split expected at to be one of {', '.join(SPLIT_POINTS)}, got {at!r}")
    if len(widths) != 4:
        raise ValueError(f"small_cnn_split expected 4 widths (four blocks), got {len(widths)}")
    model = small_cnn(checkpoint, widths)
    named = list(model.named_children())
    # blocks: 3 modules for the first, 4 (max pooling first) for the others; then pooling and flatten
    cut = 3 + 4 * (2 if at == "layer3" else 3)
    return nn.Sequential(OrderedDict(named[:cut])), nn.Sequential(OrderedDict(named[cut:]))


#: Where the one-pass model may split a backbone (``--split-at``).
SPLIT_POINTS = ("layer3", "layer4")

#: name -> (constructor ``(at, checkpoint) -> (trunk, head)``, the trunk's channels per split point); the
#: backbones that ``--regions-on features`` supports (their feature size is that of :data:`BACKBONES`).
SPLIT_BACKBONES: dict[str, tuple[Callable[..., tuple[nn.Module, nn.Module]], dict[str, int]]] = {
    "resnet18": (resnet18_split, {"layer3": 256, "layer4": 512}),
    "small": (small_cnn_split, {"layer3": 64, "layer4": 128}),
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


def _config(cfg: RunConfig | Mapping[str, Any]) -> RunConfig:
    from .engine.config import RunConfig

    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


def build_cropper(cfg: RunConfig | Mapping[str, Any]) -> RegionCropper:
    """The region layout of a run: ``regions`` is fixed (paper), authors (the authors' seven AffectNet
    regions), landmarks (``radius``) or random (``num_regions``); ``whole_position`` first (paper) or last
    (authors' code)."""
    cfg = _config(cfg)
    size, whole = cfg.image_size, cfg.whole_position
    if cfg.regions == "fixed":
        return RegionCropper(size, strategy="fixed", boxes="paper", whole_position=whole)
    if cfg.regions == "authors":
        return RegionCropper(size, strategy="fixed", boxes="authors-affectnet", whole_position=whole)
    if cfg.regions == "landmarks":
        return RegionCropper(size, strategy="landmarks", radius=cfg.radius, whole_position=whole)
    if cfg.regions == "random":
        return RegionCropper(size, strategy="random", num_regions=cfg.num_regions, whole_position=whole)
    raise ValueError(f"unknown region layout {cfg.regions!r}; expected fixed, authors, landmarks or random")


def uses_landmarks(cfg: RunConfig | Mapping[str, Any]) -> bool:
    """Does a model of this configuration need landmarks at inference (``--regions landmarks``)?"""
    cfg = _config(cfg)
    return cfg.model == "ran" and cfg.regions == "landmarks"


def build_model(cfg: RunConfig | Mapping[str, Any], num_classes: int) -> nn.Module:
    """RAN, the one-pass RAN (``regions_on="features"``: :class:`FeatureRegionAttentionNetwork` on the backbone
    split at ``split_at``, regions pooled to ``roi_size``) or the whole-face baseline of a run's configuration
    (a :class:`RunConfig`, or the ``config`` dict of a checkpoint; one written before ``--regions-on`` existed
    is an image-level RAN)."""
    cfg = _config(cfg)
    make, dim = BACKBONES[cfg.backbone]
    if cfg.model == "ran" and cfg.regions_on == "features":
        if cfg.backbone not in SPLIT_BACKBONES:
            raise ValueError(f"--regions-on features needs a backbone that can be split ("
                             f"{', '.join(sorted(SPLIT_BACKBONES))}), got --backbone {cfg.backbone}")
        trunk, head = SPLIT_BACKBONES[cfg.backbone][0](cfg.split_at, cfg.pretrained)
        return FeatureRegionAttentionNetwork(
            trunk, head, dim, num_classes, cropper=build_cropper(cfg), roi_size=cfg.roi_size, variant=cfg.variant,
            dropout=cfg.dropout, channels_last=cfg.channels_last,
        )
    backbone = make(cfg.pretrained)
    if cfg.model == "baseline":
        return WholeFaceBaseline(backbone, dim, num_classes, dropout=cfg.dropout)
    return RegionAttentionNetwork(
        backbone, dim, num_classes, cropper=build_cropper(cfg), variant=cfg.variant, dropout=cfg.dropout,
        region_batching=cfg.region_batching, channels_last=cfg.channels_last,
    )


__all__ = ["BACKBONES", "SPLIT_BACKBONES", "SPLIT_POINTS", "WholeFaceBaseline", "build_cropper", "build_model",
           "is_ran_output", "small_cnn", "small_cnn_split", "uses_landmarks"]
