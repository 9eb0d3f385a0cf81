"""The examples' backbones: the small CNN of CPU runs and the demo, and the tables of every backbone the scripts
offer (``--backbone``), whole or split for the one-pass model (``--regions-on features``).

A leaf module: the engine's configuration takes the backbone names from here and :mod:`examples.common.models`
builds the networks from it.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

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
    "timm_size_problem",
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

    model: nn.Module = timm.create_model(name, **_timm_kwargs(name, image_size))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, drop_prefixes=classifier_prefixes(model))
    return model


def _timm_kwargs(name: str, image_size: int) -> dict[str, Any]:
    """What :func:`timm_model` passes to ``timm.create_model``: no weights, no classifier, and a vision
    transformer's ``img_size`` (its position embedding has one entry per patch)."""
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if _is_token_model(name):
        kwargs["img_size"] = image_size
    return kwargs


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


# --- the image and region sizes a timm backbone takes ------------------------------------------------------------

#: What a timm model raises for an input it cannot take: torch's shape errors, and timm's own input checks
#: (``timm.layers.trace_utils._assert``: a fixed input size, a size not divisible by the patch size) are assertions.
_SHAPE_ERRORS = (RuntimeError, ValueError, AssertionError)


@functools.lru_cache(maxsize=2)
def _probe_model(name: str, image_size: int) -> nn.Module:
    """The model :func:`timm_model` builds, with zero weights (built on the meta device, so no initialisation
    runs) in eval mode: enough to learn which sizes it takes. A CNN is one model for every size (``image_size``
    is ignored: pass 0), a vision transformer one per ``img_size``."""
    import timm

    with torch.device("meta"):
        model: nn.Module = timm.create_model(name, **_timm_kwargs(name, image_size))
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()
    return model


class _Probe(NamedTuple):
    shape: torch.Size | None  # the output shape; None: the module cannot take the input
    seen: bool  # every row and column of the input reaches the output
    error: str  # why it cannot take it


def _probe(module: nn.Module, channels: int, side: int) -> _Probe:
    """``module`` on two ``side x side`` inputs, zero but for NaN in the last row of the first and the last column
    of the second: a NaN reaches the output (a convolution with zero weights still spreads it) exactly when that
    row or column takes part in the output, so a layer that drops the edge of its input (a stride that does not
    divide the size, a patch embedding's remainder) leaves the output finite."""
    x = torch.zeros(2, channels, side, side)
    x[0, :, -1, :] = float("nan")
    x[1, :, :, -1] = float("nan")
    try:
        with torch.no_grad():
            out = module(x)
    except _SHAPE_ERRORS as err:
        return _Probe(None, False, next(iter(str(err).strip().splitlines()), type(err).__name__))
    return _Probe(out.shape, bool(out[0].isnan().any() and out[1].isnan().any()), "")


def _image_probe(trunk: nn.Module, head: nn.Module | None, side: int) -> _Probe:
    """The trunk (the whole model when not split) on ``side``-pixel images; with a split, the head must also
    take the whole map (the whole-image region at the map's own size)."""
    found = _probe(trunk, 3, side)
    if head is not None and found.shape is not None:
        whole = _probe(head, found.shape[1], min(found.shape[-2:]))
        if whole.shape is None:
            return _Probe(None, False, whole.error)
    return found


def _nearest(ok: Callable[[int], bool], below: Iterable[int], above: Iterable[int]) -> list[int]:
    """The first usable size of ``below`` (tried in order, nearest first) and of ``above``, those that exist."""
    pick = [next((s for s in below if ok(s)), None), next((s for s in above if ok(s)), None)]
    return [s for s in pick if s is not None]


def _fixed_size(model: nn.Module, size: int) -> int | None:
    """The one image side a model takes (a patch embedding with a strict ``img_size``, or timm's
    ``fixed_input_size``) when it is not ``size``; None when it has none."""
    embed = getattr(model, "patch_embed", None)
    img_size = getattr(embed, "img_size", None)
    if img_size is not None and getattr(embed, "strict_img_size", False) and tuple(img_size) != (size, size):
        return int(img_size[0]) if img_size[0] == img_size[1] else None
    cfg: Any = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("fixed_input_size") and cfg.get("input_size") and tuple(cfg["input_size"][-2:]) != (size, size):
        return int(cfg["input_size"][-1])
    return None


def timm_size_problem(backbone: str, size: int, split_at: str | None, roi_size: int | None) -> str | None:
    """Why ``--backbone timm:NAME`` cannot take ``--image-size size`` or, split at ``split_at`` for the one-pass
    model, ``--roi-size roi_size`` (one line, with the nearest usable sizes), or None. The model is built as
    :func:`timm_model` builds it (a vision transformer at ``img_size=size``), without initialising its weights,
    and run on two images; no file is read. Refused: an image too small for the model (or for the head to take
    the whole map), a model with a fixed input size given another, an image whose last rows and columns never
    reach the features (a vision transformer's size not a multiple of its patch size: timm drops the remainder),
    a region larger than the map, too small for the rest of the model, or whose last row and column never reach
    its output."""
    name = timm_name(backbone)
    if name is None:
        raise ValueError(f"timm_size_problem expected a timm:NAME backbone, got {backbone!r}")
    token = _is_token_model(name)
    try:
        model = _probe_model(name, size if token else 0)
        trunk, head = (model, None) if split_at is None else timm_split(model, int(split_at))
    except (*_SHAPE_ERRORS, TypeError) as err:
        reason = next(iter(str(err).strip().splitlines()), type(err).__name__)
        return f"--backbone {backbone} cannot be built for --image-size {size}: {reason}"
    problem = _timm_image_problem(backbone, model, trunk, head, size, token)
    if problem is not None or head is None or roi_size is None:
        return problem
    return _timm_roi_problem(backbone, trunk, head, size, split_at, roi_size)


def _timm_image_problem(
    backbone: str, model: nn.Module, trunk: nn.Module, head: nn.Module | None, size: int, token: bool
) -> str | None:
    found = _image_probe(trunk, head, size)
    if found.shape is not None and found.seen:
        return None
    fixed = None if token else _fixed_size(model, size)
    if fixed is not None:
        return (
            f"--backbone {backbone} takes {fixed} x {fixed} images only (a fixed input size); give --image-size {fixed}"
        )
    patch: Any = getattr(getattr(model, "patch_embed", None), "patch_size", None) if token else None
    if patch is not None:  # a vision transformer is built per size: its sizes are the multiples of its patch
        step = int(patch[0])
        too_small, ragged = size < step, size % step != 0

        def ok(s: int) -> bool:
            return s >= step and s % step == 0

        if not too_small and not ragged:  # a multiple of the patch size, refused for another reason
            return f"--backbone {backbone} cannot take --image-size {size}: {found.error or 'the image edge is lost'}"
        why = f"it is not a multiple of the {step}-pixel patches, and timm drops the remainder"
    else:  # one model for every size: try them
        info: Any = getattr(model, "feature_info", None) or [{}]
        step = int(info[-1].get("reduction", 32)) if isinstance(info[-1], dict) else 32
        too_small = found.shape is None

        def ok(s: int) -> bool:
            probe = _image_probe(trunk, head, s)
            return probe.shape is not None and probe.seen

        why = "a strided layer drops them"
    if too_small:
        # every size up to 64 above, then the multiples of the stride up to 1024: a bounded number of probes
        larger = [*range(size + 1, size + 65), *range((size + 64) // step * step + step, 1025, step)]
        smallest = next((s for s in larger if ok(s)), None)
        return f"--image-size {size} is too small for --backbone {backbone}" + (
            f"; give at least {smallest}" if smallest else ""
        )
    below = range((size // step) * step, 0, -step)[:4]
    nearest = _nearest(ok, below, range((size // step + 1) * step, 1025, step)[:4])
    return (
        f"--image-size {size}: the last rows and columns of the image never reach the features of --backbone "
        f"{backbone} ({why})" + (f"; give --image-size {' or '.join(map(str, nearest))}" if nearest else "")
    )


def _timm_roi_problem(
    backbone: str, trunk: nn.Module, head: nn.Module, size: int, split_at: str | None, roi_size: int
) -> str | None:
    fmap = _probe(trunk, 3, size).shape
    if fmap is None:  # not so: _timm_image_problem ran the trunk at this size
        return None
    channels, side = fmap[1], min(fmap[-2:])
    if roi_size > side:
        return (
            f"--roi-size {roi_size} exceeds the {fmap[-2]} x {fmap[-1]} feature map of a {size}-pixel "
            f"face at --split-at {split_at} (a region covers part of it); give --roi-size <= {side}"
        )

    def ok(r: int) -> bool:
        probe = _probe(head, channels, r)
        return probe.shape is not None and probe.seen

    found = _probe(head, channels, roi_size)
    rest = f"the part of --backbone {backbone} after --split-at {split_at}"
    if found.shape is None:
        smallest = next((r for r in range(roi_size + 1, side + 1) if ok(r)), None)
        return f"--roi-size {roi_size} is too small for {rest}; " + (
            f"give at least {smallest}" if smallest else "give a larger --image-size"
        )
    if found.seen:
        return None
    nearest = _nearest(ok, range(roi_size - 1, 0, -1), range(roi_size + 1, side + 1))
    return (
        f"--roi-size {roi_size}: the last row and column of a {roi_size} x {roi_size} region never reach the output "
        f"of {rest} (a strided layer drops them)"
        + (f"; give --roi-size {' or '.join(map(str, nearest))}" if nearest else "")
    )
