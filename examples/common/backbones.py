"""The examples' backbones: the small CNN of CPU runs and the demo, and the tables of every backbone the scripts
offer (``--backbone``), whole or split for the one-pass model (``--regions-on features``).

A leaf module: the engine's configuration takes the backbone names from here and :mod:`examples.common.models`
builds the networks from it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from region_attention.backbones import SPLIT_POINTS, load_checkpoint, resnet18, resnet18_split, vgg16

__all__ = ["BACKBONES", "SPLIT_BACKBONES", "SPLIT_POINTS", "small_cnn", "small_cnn_split"]


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
