"""Feature-extractor backbones for RAN and a loader for the FER community's pretrained checkpoints.

Needs ``torchvision`` (``pip install 'region-attention[examples]'``); it is imported only when a
backbone is built. Nothing here downloads anything: pretrained weights are a path you supply.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["LoadResult", "load_checkpoint", "resnet18", "resnet18_split", "vgg16"]

#: Heads of the MS-Celeb-1M ResNet-18 checkpoint (a 256-d embedding and an 87,020-identity classifier)
#: that a feature extractor does not have; they are dropped and reported.
DEFAULT_DROP_PREFIXES = ("feature.", "fc.")


class LoadResult(NamedTuple):
    """What :func:`load_checkpoint` did: keys missing from the file, keys it had that the module lacks, and
    keys dropped on purpose (the checkpoint's own heads)."""

    missing_keys: list[str]
    unexpected_keys: list[str]
    dropped_keys: list[str]


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as err:  # pragma: no cover - exercised only without torchvision
        raise ImportError(
            "region_attention.backbones needs torchvision; install it with "
            "`pip install 'region-attention[examples]'`"
        ) from err
    return torchvision


class _Flatten(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(x, 1)


def resnet18(checkpoint: str | os.PathLike[str] | None = None, **load_kwargs: Any) -> nn.Module:
    """ResNet-18 feature extractor: 512-d features from the last pooling layer (as in the paper).

    A torchvision ResNet-18 with its classifier replaced by an identity, so it maps ``(N, 3, h, w)`` to
    ``(N, 512)`` for any input size. Randomly initialised unless ``checkpoint`` names a file, which is
    read with :func:`load_checkpoint` (e.g. the MS-Celeb-1M checkpoint the paper fine-tunes).

    Args:
        checkpoint: optional path of a checkpoint to load; never downloaded.
        **load_kwargs: passed to :func:`load_checkpoint` (``strict``, ``drop_prefixes``).

    Example:
        >>> import torch
        >>> from region_attention.backbones import resnet18
        >>> resnet18()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 512])
    """
    tv = _torchvision()
    model: nn.Module = tv.models.resnet18(weights=None)
    model.fc = nn.Identity()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, **load_kwargs)
    return model


#: Where :func:`resnet18_split` can cut ResNet-18: after ``layer3`` (a 256-channel map at 1/16 of the image)
#: or after ``layer4`` (512 channels at 1/32).
SPLIT_POINTS = ("layer3", "layer4")


def resnet18_split(
    at: str = "layer3", checkpoint: str | os.PathLike[str] | None = None, **load_kwargs: Any
) -> tuple[nn.Sequential, nn.Sequential]:
    """ResNet-18 cut in two for the one-pass model: a trunk to a feature map and a head per region.

    Built from :func:`resnet18` (loading ``checkpoint`` exactly as it does) and split without copying: the
    trunk and the head hold the very modules of that network under their torchvision names, so
    ``head(trunk(x))`` equals ``resnet18(...)(x)`` and the pair's state dicts together are its state dict.

    - ``at="layer3"``: the trunk maps images ``(N, 3, H, W)`` to the ``layer3`` map ``(N, 256, H/16, W/16)``;
      the head maps pooled regions ``(N, 256, r, r)`` to ``(N, 512)`` (``layer4`` and global average pooling).
    - ``at="layer4"``: the trunk ends with ``layer4`` ``(N, 512, H/32, W/32)``; the head is the global average
      pooling alone, ``(N, 512, r, r)`` to ``(N, 512)``.

    Args:
        at: ``"layer3"`` (default) or ``"layer4"``.
        checkpoint: optional path of a checkpoint to load into the whole ResNet-18 before the split (e.g.
            the MS-Celeb-1M checkpoint); never downloaded.
        **load_kwargs: passed to :func:`load_checkpoint`.

    Returns:
        ``(trunk, head)``, two :class:`~torch.nn.Sequential`.

    Example:
        >>> import torch
        >>> from region_attention.backbones import resnet18_split
        >>> trunk, head = resnet18_split("layer3")
        >>> fmap = trunk(torch.rand(2, 3, 224, 224))
        >>> fmap.shape, head(torch.rand(12, 256, 7, 7)).shape
        (torch.Size([2, 256, 14, 14]), torch.Size([12, 512]))
    """
    if not isinstance(at, str) or at not in SPLIT_POINTS:
        options = ", ".join(repr(p) for p in SPLIT_POINTS)
        raise ValueError(f"resnet18_split expected at to be one of {options}, got {at!r}")
    model = resnet18(checkpoint, **load_kwargs)
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"]
    if at == "layer4":
        names.append("layer4")
    trunk = nn.Sequential()
    for name in names:
        trunk.add_module(name, model.get_submodule(name))
    head = nn.Sequential()
    if at == "layer3":
        head.add_module("layer4", model.get_submodule("layer4"))
    head.add_module("avgpool", model.get_submodule("avgpool"))
    head.add_module("flatten", _Flatten())
    return trunk, head


def vgg16(checkpoint: str | os.PathLike[str] | None = None, **load_kwargs: Any) -> nn.Module:
    """VGG16 feature extractor: 4096-d features of the first fully connected layer (after its ReLU).

    Maps ``(N, 3, h, w)`` to ``(N, 4096)``; the adaptive average pool makes any input size work (the
    paper uses 224 x 224). The module keeps torchvision's names (``features``, ``avgpool``,
    ``classifier.0``) so torchvision-layout checkpoints load; the later classifier layers are dropped.

    Args:
        checkpoint: optional path of a checkpoint to load (``classifier.3.*`` and ``classifier.6.*`` are
            dropped by default); never downloaded.
        **load_kwargs: passed to :func:`load_checkpoint`.
    """
    tv = _torchvision()
    base = tv.models.vgg16(weights=None)
    model = nn.Sequential()
    model.add_module("features", base.features)
    model.add_module("avgpool", base.avgpool)
    model.add_module("flatten", _Flatten())
    model.add_module("classifier", nn.Sequential(base.classifier[0], nn.ReLU(inplace=True)))
    if checkpoint is not None:
        load_kwargs.setdefault("drop_prefixes", ("classifier.3.", "classifier.6."))
        load_checkpoint(model, checkpoint, **load_kwargs)
    return model


def _read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Tensor]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {path!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(
            f"load_checkpoint: {path!r} is not a PyTorch checkpoint that loads with weights_only=True ({err})"
        ) from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(
            f"load_checkpoint: {path!r} holds no state dict (expected a mapping of names to tensors, "
            f"or {{'state_dict': ...}}), got {type(obj).__name__}"
        )
    bad_keys = [key for key in obj if not isinstance(key, str)]
    if bad_keys:
        raise TypeError(
            f"load_checkpoint: {path!r} holds a state dict with {len(bad_keys)} non-string key(s), e.g. "
            f"{bad_keys[0]!r} ({type(bad_keys[0]).__name__}); expected parameter names (str)"
        )
    not_finite = [
        key for key, value in obj.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if not_finite:
        raise ValueError(
            f"load_checkpoint: {path!r} holds NaN or infinite values in {len(not_finite)} tensor(s): "
            f"{', '.join(not_finite[:10])}{' ...' if len(not_finite) > 10 else ''}; refusing to load them"
        )
    return obj


def load_checkpoint(
    module: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    drop_prefixes: Iterable[str] = DEFAULT_DROP_PREFIXES,
) -> LoadResult:
    """Load a pretrained backbone checkpoint into ``module``, saying exactly what did and did not load.

    Reads the MS-Celeb-1M ResNet-18 format the FER community uses (``{'state_dict': {...}}`` with
    ``module.``-prefixed torchvision names, as saved from ``DataParallel``, plus ``feature.*`` and
    ``fc.*`` heads) and the unprefixed variant, with ``torch.load(weights_only=True)``. The
    ``module.`` prefix is stripped; keys under ``drop_prefixes`` that the module does not have are
    dropped and reported.

    Args:
        module: the backbone to fill (e.g. :func:`resnet18`).
        path: the checkpoint file.
        strict: raise :class:`ValueError` listing the keys when any module key is missing from the file or
            the file has keys the module lacks (besides the dropped heads). With ``strict=False`` the
            mismatch is only returned.
        drop_prefixes: key prefixes (after stripping ``module.``) to drop when the module lacks them.

    Returns:
        :class:`LoadResult` with ``missing_keys``, ``unexpected_keys`` and ``dropped_keys``.

    Raises:
        FileNotFoundError: no file at ``path``.
        TypeError: the state dict has keys that are not strings.
        ValueError: not a checkpoint, NaN or infinite values (the keys are named), shape mismatches, or (with
            ``strict``) missing/unexpected keys.
    """
    raw = _read_state_dict(path)
    own = module.state_dict()
    drop_prefixes = tuple(drop_prefixes)
    state: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name not in own and name.startswith(drop_prefixes):
            dropped.append(key)
            continue
        state[name] = value
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs module {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"load_checkpoint: shape mismatch for {len(mismatched)} key(s) in {os.fspath(path)!r}: "
                         + "; ".join(mismatched[:10]))
    if strict and (missing or unexpected):
        raise ValueError(
            f"load_checkpoint: {os.fspath(path)!r} does not match {type(module).__name__}: "
            f"{len(missing)} missing key(s) {missing[:10]}, {len(unexpected)} unexpected key(s) {unexpected[:10]}"
            " (pass strict=False to load the rest and inspect the result)"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return LoadResult(missing, unexpected, dropped)
