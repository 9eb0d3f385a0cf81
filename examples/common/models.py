"""Models of the examples, built only from region_attention's public API: RAN and the whole-face baseline."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeVar

from torch import Tensor, nn

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork, RegionCropper
from region_attention.backbones import timm_split

from .backbones import BACKBONES, SPLIT_BACKBONES, SPLIT_POINTS, small_cnn, small_cnn_split, timm_model, timm_name

_T = TypeVar("_T")


class ModelConfig(Protocol):
    """What the model builders read of a run's configuration (the engine's ``RunConfig`` has all of it; a
    checkpoint's ``config`` dict becomes one with ``RunConfig.from_dict``)."""

    @property
    def model(self) -> str: ...
    @property
    def backbone(self) -> str: ...
    @property
    def pretrained(self) -> str | None: ...
    @property
    def image_size(self) -> int: ...
    @property
    def regions(self) -> str: ...
    @property
    def radius(self) -> float: ...
    @property
    def num_regions(self) -> int: ...
    @property
    def whole_position(self) -> str: ...
    @property
    def variant(self) -> str: ...
    @property
    def dropout(self) -> float: ...
    @property
    def regions_on(self) -> str: ...
    @property
    def split_at(self) -> str | None: ...
    @property
    def roi_size(self) -> int | None: ...
    @property
    def region_batching(self) -> str: ...
    @property
    def channels_last(self) -> bool: ...


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


def build_cropper(cfg: ModelConfig) -> RegionCropper:
    """The region layout of a run: ``regions`` is fixed (paper), authors (the authors' seven AffectNet
    regions), landmarks (``radius``) or random (``num_regions``); ``whole_position`` first (paper) or last
    (authors' code)."""
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


def uses_landmarks(cfg: ModelConfig) -> bool:
    """Does a model of this configuration need landmarks at inference (``--regions landmarks``)?"""
    return cfg.model == "ran" and cfg.regions == "landmarks"


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """RAN, the one-pass RAN (``regions_on="features"``: :class:`FeatureRegionAttentionNetwork` on the backbone
    split at ``split_at``, regions pooled to ``roi_size``) or the whole-face baseline of a run's configuration
    (a ``RunConfig``; a checkpoint's ``config`` dict becomes one with ``RunConfig.from_dict``, and one written
    before ``--regions-on`` existed is an image-level RAN)."""
    name = timm_name(cfg.backbone)
    if name is not None:
        return _build_timm(cfg, name, num_classes)
    make, dim = BACKBONES[cfg.backbone]
    if cfg.model == "ran" and cfg.regions_on == "features":
        if cfg.backbone not in SPLIT_BACKBONES:
            raise ValueError(
                f"--regions-on features needs a backbone that can be split ("
                f"{', '.join(sorted(SPLIT_BACKBONES))}), got --backbone {cfg.backbone}"
            )
        trunk, head = SPLIT_BACKBONES[cfg.backbone](_one_pass(cfg.split_at, "split_at"), cfg.pretrained)
        return _one_pass_network(cfg, trunk, head, dim, num_classes)
    return _image_level(cfg, make(cfg.pretrained), dim, num_classes)


def _one_pass(value: _T | None, name: str) -> _T:
    """A one-pass option of a ``regions_on="features"`` configuration (the engine fills in their defaults)."""
    if value is None:
        raise ValueError(f"regions_on='features' needs {name} (the run configuration gives it)")
    return value


def _one_pass_network(
    cfg: ModelConfig, trunk: nn.Module, head: nn.Module, dim: int | None, num_classes: int
) -> FeatureRegionAttentionNetwork:
    """The one-pass RAN on ``(trunk, head)``; ``dim`` None: the head's feature size, found by the network."""
    return FeatureRegionAttentionNetwork(
        trunk,
        head,
        dim,
        num_classes,
        cropper=build_cropper(cfg),
        roi_size=_one_pass(cfg.roi_size, "roi_size"),
        variant=cfg.variant,
        dropout=cfg.dropout,
        channels_last=cfg.channels_last,
    )


def _image_level(cfg: ModelConfig, backbone: nn.Module, dim: int, num_classes: int) -> nn.Module:
    """The whole-face baseline or the image-level RAN on ``backbone`` (``dim``-d features)."""
    if cfg.model == "baseline":
        return WholeFaceBaseline(backbone, dim, num_classes, dropout=cfg.dropout)
    return RegionAttentionNetwork(
        backbone,
        dim,
        num_classes,
        cropper=build_cropper(cfg),
        variant=cfg.variant,
        dropout=cfg.dropout,
        region_batching=cfg.region_batching,
        channels_last=cfg.channels_last,
    )


def _build_timm(cfg: ModelConfig, name: str, num_classes: int) -> nn.Module:
    """:func:`build_model` for ``--backbone timm:NAME``; the feature size is the model's own."""
    model = timm_model(name, cfg.image_size, cfg.pretrained)
    if cfg.model == "ran" and cfg.regions_on == "features":
        trunk, head = timm_split(model, int(_one_pass(cfg.split_at, "split_at")))
        return _one_pass_network(cfg, trunk, head, None, num_classes)
    size: Any = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    return _image_level(cfg, model, int(size), num_classes)


__all__ = [
    "BACKBONES",
    "SPLIT_BACKBONES",
    "SPLIT_POINTS",
    "ModelConfig",
    "WholeFaceBaseline",
    "build_cropper",
    "build_model",
    "is_ran_output",
    "small_cnn",
    "small_cnn_split",
    "uses_landmarks",
]
