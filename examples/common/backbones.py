"""The examples' backbones: the small CNN of CPU runs and the demo, and the tables of every backbone the scripts
offer (``--backbone``), whole or split for the one-pass model (``--regions-on features``).

A leaf module: the engine's configuration takes the backbone names from here and :mod:`examples.common.models`
builds the networks from it.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from region_attention.backbones import (
    SPLIT_POINTS,
    classifier_prefixes,
    load_checkpoint,
    resnet18,
    resnet18_split,
    timm_split,
    vgg16,
)

__all__ = [
    "BACKBONES",
    "SPLIT_BACKBONES",
    "SPLIT_POINTS",
    "TIMM_PREFIX",
    "backbone_problem",
    "default_split",
    "small_cnn",
    "small_cnn_split",
    "timm_model",
    "timm_name",
]


def small_cnn(checkpoint: str | None = None, widths: tuple[int, ...] = (16, 32, 64, 128)) -> nn.Sequential:
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


def small_cnn_split(
    at: str = "layer3", checkpoint: str | None = None, widths: tuple[int, ...] = (16, 32, 64, 128)
) -> tuple[nn.Sequential, nn.Sequential]:
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


#: name -> (constructor taking an optional checkpoint path, feature size)
BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "resnet18": (resnet18, 512),
    "vgg16": (vgg16, 4096),
    "small": (small_cnn, 128),
}

#: name -> constructor ``(at, checkpoint) -> (trunk, head)`` with ``at`` one of :data:`SPLIT_POINTS`: the
#: backbones that ``--regions-on features`` supports (their feature size is that of :data:`BACKBONES`).
SPLIT_BACKBONES: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "resnet18": resnet18_split,
    "small": small_cnn_split,
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


def backbone_problem(backbone: str, split_at: str | None) -> str | None:
    """What is wrong with ``--backbone`` and ``--split-at`` (one line for the command line), or ``None``;
    ``split_at=None``: no split (the image-level model), only the name is checked."""
    name = timm_name(backbone)
    if name is None:
        if backbone not in BACKBONES:
            return (
                f"--backbone must be one of {', '.join(sorted(BACKBONES))} or timm:NAME (a timm model), "
                f"got {backbone!r}"
            )
        if split_at is not None and split_at not in SPLIT_POINTS:
            return f"--split-at must be one of {', '.join(SPLIT_POINTS)} for --backbone {backbone}, got {split_at!r}"
        return None
    try:
        import timm
    except ImportError:
        return f"--backbone {backbone} needs timm: pip install 'region-attention[timm]'"
    if not timm.is_model(name):
        return f"--backbone: timm has no model {name!r} (see timm.list_models())"
    if split_at is None:
        return None
    try:
        at = int(split_at)
    except ValueError:
        return (
            f"--split-at must be an index of timm's forward_intermediates (an int; -1: the last) for --backbone "
            f"{backbone}, got {split_at!r}"
        )
    try:
        timm_split(_meta_model(name), at)
    except (TypeError, ValueError) as err:
        return f"--backbone {backbone} --split-at {split_at}: {err}"
    return None
