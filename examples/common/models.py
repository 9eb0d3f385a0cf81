"""Models of the examples, built only from region_attention's public API: RAN and the whole-face baseline."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from region_attention import FeatureRegionAttentionNetwork, RegionAttentionNetwork, RegionCropper
from region_attention.backbones import classifier_prefixes, load_checkpoint, resnet18, resnet18_split, timm_split, vgg16

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


#: ``--backbone timm:NAME``: any timm model (``timm:convnext_tiny``, ``timm:vit_small_patch16_224``), created with
#: ``pretrained=False`` and no classifier; ``--pretrained PATH`` loads its weights from a local file.
TIMM_PREFIX = "timm:"


def timm_name(backbone: str) -> str | None:
    """The timm model name of ``--backbone timm:NAME``, or ``None`` for a built-in backbone."""
    return backbone[len(TIMM_PREFIX) :] if backbone.startswith(TIMM_PREFIX) else None


def default_split(backbone: str) -> str:
    """``--split-at`` when not given: ``layer3`` for the built-in backbones, the last index (``-1``: the last
    stage of a CNN, the last block of a ViT, as ``timm_split(model, None)``) for a timm model."""
    return "-1" if timm_name(backbone) is not None else "layer3"


def timm_model(name: str, image_size: int, checkpoint: str | None = None) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)`` (vision transformers at ``image_size``),
    with the weights of ``checkpoint`` (``.safetensors`` or ``.pth``) loaded by ``load_checkpoint``; a
    classifier in the file is dropped (the model has none). Nothing downloads."""
    import timm

    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if _is_token_model(name):
        kwargs["img_size"] = image_size
    model: nn.Module = timm.create_model(name, **kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, drop_prefixes=classifier_prefixes(model))
    return model


@functools.cache
def _meta_model(name: str) -> nn.Module:
    """The model built on the meta device (no memory, no weights): enough to check a name and a split index."""
    import timm

    with torch.device("meta"):
        model: nn.Module = timm.create_model(name, pretrained=False, num_classes=0)
    return model


def _is_token_model(name: str) -> bool:
    model = _meta_model(name)
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))


def backbone_problem(backbone: str, split_at: str) -> str | None:
    """What is wrong with ``--backbone`` and ``--split-at`` (one line for the command line), or ``None``."""
    name = timm_name(backbone)
    if name is None:
        if backbone not in BACKBONES:
            return (f"--backbone must be one of {', '.join(sorted(BACKBONES))} or timm:NAME (a timm model), "
                    f"got {backbone!r}")
        if split_at not in SPLIT_POINTS:
            return f"--split-at must be one of {', '.join(SPLIT_POINTS)} for --backbone {backbone}, got {split_at!r}"
        return None
    try:
        import timm
    except ImportError:
        return f"--backbone {backbone} needs timm: pip install 'region-attention[timm]'"
    if not timm.is_model(name):
        return f"--backbone: timm has no model {name!r} (see timm.list_models())"
    try:
        at = int(split_at)
    except ValueError:
        return (f"--split-at must be an index of timm's forward_intermediates (an int; -1: the last) for --backbone "
                f"{backbone}, got {split_at!r}")
    try:
        timm_split(_meta_model(name), at)
    except (TypeError, ValueError) as err:
        return f"--backbone {backbone} --split-at {split_at}: {err}"
    return None


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
    name = timm_name(cfg.backbone)
    if name is not None:
        return _build_timm(cfg, name, num_classes)
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


def _build_timm(cfg: RunConfig, name: str, num_classes: int) -> nn.Module:
    """:func:`build_model` for ``--backbone timm:NAME``; the feature size is the model's own."""
    model = timm_model(name, cfg.image_size, cfg.pretrained)
    if cfg.model == "ran" and cfg.regions_on == "features":
        trunk, head = timm_split(model, int(cfg.split_at))
        return FeatureRegionAttentionNetwork(
            trunk, head, num_classes=num_classes, cropper=build_cropper(cfg), roi_size=cfg.roi_size,
            variant=cfg.variant, dropout=cfg.dropout, channels_last=cfg.channels_last,
        )
    size: Any = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    dim = int(size)
    if cfg.model == "baseline":
        return WholeFaceBaseline(model, dim, num_classes, dropout=cfg.dropout)
    return RegionAttentionNetwork(
        model, dim, num_classes, cropper=build_cropper(cfg), variant=cfg.variant, dropout=cfg.dropout,
        region_batching=cfg.region_batching, channels_last=cfg.channels_last,
    )


__all__ = [
    "BACKBONES",
    "SPLIT_BACKBONES",
    "SPLIT_POINTS",
    "TIMM_PREFIX",
    "WholeFaceBaseline",
    "backbone_problem",
    "build_cropper",
    "build_model",
    "default_split",
    "is_ran_output",
    "small_cnn",
    "small_cnn_split",
    "timm_model",
    "timm_name",
    "uses_landmarks",
]
