"""Feature-extractor backbones for RAN and a loader for the FER community's pretrained checkpoints.

The torchvision backbones need ``torchvision`` (``pip install 'region-attention[examples]'``); :func:`timm_split`
needs ``timm`` (``pip install 'region-attention[timm]'``). Each is imported only when a backbone is built.
Nothing here downloads anything: pretrained weights are a path you supply.
"""

from __future__ import annotations

import copy
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "LoadResult",
    "TokenRegionHead",
    "TokenTrunk",
    "classifier_prefixes",
    "load_checkpoint",
    "resnet18",
    "resnet18_split",
    "timm_split",
    "vgg16",
]

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
            "region_attention.backbones needs torchvision; install it with `pip install 'region-attention[examples]'`"
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
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
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
    return _checked_state_dict(obj, path)


def _read_safetensors(path: str) -> Mapping[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as err:  # pragma: no cover - safetensors comes with timm
        raise ImportError(f"load_checkpoint: reading {path!r} needs safetensors (`pip install safetensors`)") from err
    try:
        obj = load_file(path, device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
        raise ValueError(f"load_checkpoint: {path!r} is not a readable safetensors file ({err})") from err
    return _checked_state_dict(obj, path)


def _unprefixed(key: str) -> str:
    """A state-dict key without the ``module.`` prefix that ``DataParallel`` adds."""
    return key[len("module.") :] if key.startswith("module.") else key


def _all_finite(value: Tensor) -> bool:
    """No NaN and no infinity in ``value``; a complex value counts when either part is one; integers always are."""
    if value.is_complex():
        value = torch.view_as_real(value)
    return not value.is_floating_point() or bool(torch.isfinite(value).all())


def _checked_state_dict(obj: Mapping[Any, Tensor], path: str) -> Mapping[str, Tensor]:
    bad_keys = [key for key in obj if not isinstance(key, str)]
    if bad_keys:
        raise TypeError(
            f"load_checkpoint: {path!r} holds a state dict with {len(bad_keys)} non-string key(s), e.g. "
            f"{bad_keys[0]!r} ({type(bad_keys[0]).__name__}); expected parameter names (str)"
        )
    seen: dict[str, str] = {}
    for key in obj:
        name = _unprefixed(key)
        if name in seen:
            raise ValueError(
                f"load_checkpoint: {path!r} holds the weight {name!r} twice, as {seen[name]!r} and as {key!r} (with "
                "and without the 'module.' prefix of DataParallel); which one is meant is ambiguous, so nothing "
                "was loaded: keep one of each pair and save the file again"
            )
        seen[name] = key
    not_finite = [key for key, value in obj.items() if not _all_finite(value)]
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
    ``fc.*`` heads) and the unprefixed variant, with ``torch.load(weights_only=True)``, and ``.safetensors``
    files (timm's weight format; for a timm model pass ``drop_prefixes=classifier_prefixes(model)`` to drop a
    classifier the model was built without). The
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
        ValueError: not a checkpoint, NaN or infinite values (real or complex; the keys are named), a weight
            stored both with and without the ``module.`` prefix (both keys named; nothing is loaded), shape
            mismatches, or (with ``strict``) missing/unexpected keys.
    """
    raw = _read_state_dict(path)
    own = module.state_dict()
    drop_prefixes = tuple(drop_prefixes)
    state: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        name = _unprefixed(key)
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
        raise ValueError(
            f"load_checkpoint: shape mismatch for {len(mismatched)} key(s) in {os.fspath(path)!r}: "
            + "; ".join(mismatched[:10])
        )
    if strict and (missing or unexpected):
        raise ValueError(
            f"load_checkpoint: {os.fspath(path)!r} does not match {type(module).__name__}: "
            f"{len(missing)} missing key(s) {missing[:10]}, {len(unexpected)} unexpected key(s) {unexpected[:10]}"
            " (pass strict=False to load the rest and inspect the result)"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return LoadResult(missing, unexpected, dropped)


# --- timm --------------------------------------------------------------------------------------------------------


def _timm_model_types() -> dict[str, type]:
    try:
        from timm.models.convnext import ConvNeXt
        from timm.models.efficientnet import EfficientNet
        from timm.models.resnet import ResNet
    except ImportError as err:  # pragma: no cover - exercised only without timm
        raise ImportError(
            "region_attention.backbones.timm_split needs timm; install it with `pip install 'region-attention[timm]'`"
        ) from err
    return {"resnet": ResNet, "convnext": ConvNeXt, "efficientnet": EfficientNet}


def _is_token_model(model: nn.Module) -> bool:
    """A timm vision transformer: patch embedding, a ``blocks`` sequence, prefix tokens, timm's intermediates."""
    return all(hasattr(model, name) for name in ("patch_embed", "blocks", "num_prefix_tokens", "forward_intermediates"))


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes of a timm model's classifier (``("head.fc.",)`` for ConvNeXt, ``("fc.",)`` for a
    ResNet, ...): the weights that :func:`timm_split` leaves out and that :func:`load_checkpoint` may drop
    (``drop_prefixes=classifier_prefixes(model)``) when a pretrained file has a classifier the model lacks."""
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        return ()
    classifier = get_classifier()
    names = [name for name, module in model.named_modules() if module is classifier and name]
    if isinstance(classifier, nn.Module) and not names:  # the classifier may be an attribute alias
        names = [name for name, module in model.named_modules() if module is classifier]
    return tuple(f"{name}." for name in names)


def _split_index(at: object, count: int, owner: str, what: str) -> int:
    if at is None:
        return count - 1
    if isinstance(at, bool) or not isinstance(at, int):
        raise TypeError(
            f"{owner} expected at to be an int index of timm's forward_intermediates or None, got {type(at).__name__}"
        )
    if not -count <= at < count:
        raise ValueError(f"{owner} expected at in [{-count}, {count - 1}] ({count} {what} of this model), got {at}")
    return at % count


def _own_dicts(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` that shares every parameter, buffer and submodule but has its own registries,
    so replacing a submodule in the copy leaves ``module`` alone (no tensor is copied)."""
    clone = copy.copy(module)
    for key, value in vars(module).items():
        if isinstance(value, (dict, set, list)):
            clone.__dict__[key] = copy.copy(value)
    return clone


class _PreLogits(nn.Module):
    """Pooling of a CNN's pre-logits features as its own ``forward_head(x, pre_logits=True)`` does it: global
    pooling (flattened) and the model's dropout, ``(N, C, h, w) -> (N, C)``."""

    def __init__(self, global_pool: nn.Module, drop_rate: float) -> None:
        super().__init__()
        self.global_pool = global_pool
        self.head_drop = nn.Dropout(drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return out


def _headless(head: nn.Module) -> nn.Module:
    """A timm classifier head (``ClassifierHead``, ``NormMlpClassifierHead``, ...) without its last linear layer:
    a shallow copy whose ``fc`` is an identity, so its ``forward(x)`` is the original's ``forward(x, pre_logits=True)``
    (pooling, norm, pre-logits MLP, dropout) and the classifier's weights are not part of the region head."""
    clone = _own_dicts(head)
    if "fc" in clone._modules:
        clone._modules["fc"] = nn.Identity()
    return clone


def _cnn_split(model: nn.Module, at: object, family: str) -> tuple[nn.Sequential, nn.Sequential, int]:
    owner = "timm_split"
    steps: list[tuple[str, nn.Module]]
    if family == "resnet":
        index = _split_index(at, 5, owner, "feature stages (0: the stem before max pooling, 1-4: layer1-layer4)")
        steps = [(name, model.get_submodule(name)) for name in ("conv1", "bn1", "act1")]
        steps += [("maxpool", model.get_submodule("maxpool"))]
        steps += [(f"layer{i}", model.get_submodule(f"layer{i}")) for i in range(1, 5)]
        cut = 3 if index == 0 else 4 + index
        tail: nn.Module = _PreLogits(model.get_submodule("global_pool"), float(getattr(model, "drop_rate", 0.0)))
    elif family == "convnext":
        stages: nn.Sequential = model.get_submodule("stages")  # type: ignore[assignment]
        index = _split_index(at, len(stages), owner, "stages")
        steps = [("stem", model.get_submodule("stem"))]
        steps += [("stages", stages[: index + 1]), ("stages_rest", stages[index + 1 :])]
        steps += [("norm_pre", model.get_submodule("norm_pre"))]
        cut = 2
        tail = _headless(model.get_submodule("head"))
    else:  # efficientnet
        ends: list[int] = list(model.stage_ends)  # type: ignore[arg-type]
        index = _split_index(at, len(ends), owner, "feature stages")
        blocks: nn.Sequential = model.get_submodule("blocks")  # type: ignore[assignment]
        steps = [("conv_stem", model.get_submodule("conv_stem")), ("bn1", model.get_submodule("bn1"))]
        steps += [("blocks", blocks[: ends[index]]), ("blocks_rest", blocks[ends[index] :])]
        steps += [("conv_head", model.get_submodule("conv_head")), ("bn2", model.get_submodule("bn2"))]
        cut = 3
        tail = _PreLogits(model.get_submodule("global_pool"), float(getattr(model, "drop_rate", 0.0)))
    trunk, head = nn.Sequential(), nn.Sequential()
    for name, module in steps[:cut]:
        if not (isinstance(module, nn.Sequential) and len(module) == 0):
            trunk.add_module(name, module)
    for name, module in steps[cut:]:
        if not (isinstance(module, nn.Sequential) and len(module) == 0):
            # a Sequential slice keeps the model's indices ("stages.3"); the name says it is the rest
            head.add_module(name.removesuffix("_rest"), module)
    head.add_module("head" if family == "convnext" else "pool", tail)
    return trunk, head, index


class TokenTrunk(nn.Module):
    """The trunk :func:`timm_split` makes for a timm vision transformer: images ``(N, 3, H, W)`` to the patch tokens
    of one block laid out as their ``(N, C, h, w)`` grid, prefix tokens (class, register, distillation) dropped.

    ``forward`` is the model's own ``forward_intermediates(x, indices=[split_index], norm=False, stop_early=True,
    output_fmt="NCHW")``, run on a shallow copy of the model that shares every module, parameter and buffer with it
    and ends at that block (its final norm, pooling and classifier are identities). The trunk's submodules,
    parameters and buffers are that copy's, under the model's names (``patch_embed.proj.weight``, ``blocks.0...``,
    ``pos_embed``, ``cls_token``), so its state dict loads as the model's does. A plain module of this library:
    ``pickle``, ``copy.deepcopy`` and ``torch.save(model)`` work on a network that holds it.
    """

    _model: nn.Module

    def __init__(self, model: nn.Module, split_index: int) -> None:
        super().__init__()
        blocks: nn.Sequential | nn.ModuleList = model.get_submodule("blocks")  # type: ignore[assignment]
        pruned = _own_dicts(model)
        pruned._modules["blocks"] = blocks[: split_index + 1]
        for name in ("norm", "fc_norm", "head_drop", "head"):
            if name in pruned._modules:
                pruned._modules[name] = nn.Identity()
        if "attn_pool" in pruned._modules:
            pruned._modules["attn_pool"] = None
        # The copy runs forward_intermediates but is not a submodule: the trunk's own registries are the copy's
        # (the same dict objects), so the trunk lists, moves, loads and saves exactly the copy's tensors under the
        # model's names, and whatever replaces one (.to(), load_state_dict(assign=True), torch.export's
        # reparametrisation) is seen by the copy.
        self.__dict__["_model"] = pruned
        self.__dict__["_parameters"] = pruned._parameters
        self.__dict__["_buffers"] = pruned._buffers
        self.__dict__["_non_persistent_buffers_set"] = pruned._non_persistent_buffers_set
        self.__dict__["_modules"] = pruned._modules
        self.split_index = split_index

    def forward(self, x: Tensor) -> Tensor:
        model: Any = self._model
        out: list[Tensor] = model.forward_intermediates(
            x, indices=[self.split_index], norm=False, stop_early=True, output_fmt="NCHW", intermediates_only=True
        )
        return out[0]

    def train(self, mode: bool = True) -> TokenTrunk:
        super().train(mode)
        self._model.training = mode  # the copy's own flag (its submodules are the trunk's, set above)
        return self

    def _replicate_for_data_parallel(self) -> TokenTrunk:
        # DataParallel's replica gets registries of its own: its copy of the model must run on those
        replica: TokenTrunk = super()._replicate_for_data_parallel()  # type: ignore[no-untyped-call]
        pruned = copy.copy(self._model)
        for name in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            pruned.__dict__[name] = replica.__dict__[name]
        replica.__dict__["_model"] = pruned
        return replica

    def extra_repr(self) -> str:
        return f"model={type(self._model).__name__}, split_index={self.split_index}"


#: Pooling types of timm's ``global_pool_nlc`` that read the patch tokens alone; others (``token``: the class
#: token) become ``avg`` in the region head (a region has no class token of its own).
_TOKEN_POOLS = ("avg", "max", "avgmax")


class TokenRegionHead(nn.Module):
    """The region head :func:`timm_split` makes for a timm vision transformer.

    A pooled region ``(N, C, r, r)`` becomes ``r * r`` tokens (row-major, as the trunk laid them out); they go
    through the model's blocks after the split (none when the split is the last block), its final ``norm``, its
    pooling over the tokens and its ``fc_norm`` and ``head_drop``: ``(N, D)``. The region's tokens are pooled on
    their own; the model's class and register tokens take no part (they summarise the whole image, not a region).
    The pooling is the model's when it reads the patch tokens (``avg``, ``max``, ``avgmax``, or an attention pool
    ``attn_pool``); a model that reads its class token (``global_pool="token"``) gets the average of the region's
    tokens instead. For a model without prefix tokens and ``global_pool="avg"`` this is exactly the model's own
    ``forward_head(forward_features(x), pre_logits=True)`` on a region that covers the whole map.
    """

    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        blocks: nn.Sequential | nn.ModuleList = model.get_submodule("blocks")  # type: ignore[assignment]
        self.blocks = blocks[index + 1 :]  # a Sequential keeps the model's indices, a ModuleList (EVA) starts at 0
        self.norm = model.get_submodule("norm")
        self.attn_pool = getattr(model, "attn_pool", None)
        self.fc_norm = getattr(model, "fc_norm", None) or nn.Identity()
        self.head_drop = getattr(model, "head_drop", None) or nn.Identity()
        pool = str(getattr(model, "global_pool", "avg"))
        self.pool_type = pool if pool in _TOKEN_POOLS else "avg"
        self.num_features = int(getattr(model, "head_hidden_size", getattr(model, "num_features", 0)))

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (N, r * r, C), row-major as the trunk laid the grid out
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        if self.attn_pool is not None:
            pooled: Tensor = self.attn_pool(tokens)
        elif self.pool_type == "avg":
            pooled = tokens.mean(1)
        elif self.pool_type == "max":
            pooled = tokens.amax(1)
        else:
            pooled = 0.5 * (tokens.amax(1) + tokens.mean(1))
        out: Tensor = self.head_drop(self.fc_norm(pooled))
        return out

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}" if self.attn_pool is None else "pool_type='attn_pool'"


def _token_split(model: nn.Module, at: object) -> tuple[nn.Module, nn.Module, int]:
    blocks: nn.Sequential | nn.ModuleList = model.get_submodule("blocks")  # type: ignore[assignment]
    index = _split_index(at, len(blocks), "timm_split", "blocks")
    if index < len(blocks) - 1 and getattr(model, "rope", None) is not None:
        raise ValueError(
            f"timm_split cannot split {type(model).__name__} before its last block (at={at!r}): its blocks take "
            "rotary position embeddings of the whole image grid, which a pooled region does not have; split at the "
            "last block (at=None)"
        )
    trunk = TokenTrunk(model, index)
    return trunk, TokenRegionHead(model, index), index


def timm_split(model: nn.Module, at: int | None = None) -> tuple[nn.Module, nn.Module]:
    """A timm model cut in two for :class:`~region_attention.FeatureRegionAttentionNetwork`: trunk and region head.

    Like :func:`resnet18_split`, without copying: the two parts hold the model's own modules (a later
    ``load_state_dict`` into the model is seen by both), under the model's names where they can. Together they hold
    every weight of the model but its classifier, which the head never uses (so no parameter goes unused in
    training).

    - The **trunk** maps images ``(N, 3, H, W)`` to the feature map ``(N, C, h, w)`` that timm's
      ``model.forward_intermediates(x, indices=[at], norm=False)`` returns. For a vision transformer that is the
      patch tokens of block ``at`` laid out as their ``h x w`` grid, with the prefix tokens (class, register,
      distillation) dropped: a :class:`TokenTrunk`, which runs the model's own ``forward_intermediates`` on a copy
      of the model that shares its modules and ends at that block.
    - The **head** maps pooled regions ``(N, C, r, r)`` to ``(N, D)`` features, ``D = head.num_features`` (the
      model's ``head_hidden_size``): the rest of the model, then its own final norm and pooling. For a CNN
      (ResNet, ConvNeXt, EfficientNet) that is the later stages and ``forward_head(x, pre_logits=True)``
      without the classifier. For a vision transformer it is a :class:`TokenRegionHead`: the later blocks on the
      region's ``r * r`` tokens, the final norm, and the model's pooling of patch tokens; the class and register
      tokens take no part, and a model that pools its class token (``global_pool="token"``) averages the region's
      tokens instead.

    The defining property: the whole-image box pooled at the map's own size (``roi_size=(h, w)``,
    ``sampling_ratio=1``) is the map itself, so ``head(trunk(x))`` equals
    ``model.forward_head(model.forward_features(x), pre_logits=True)`` for the CNNs, and for the vision
    transformers without prefix tokens pooled by ``avg``. For one with a class token, split at the last block,
    it equals ``fc_norm`` of the average of the final patch tokens.

    Args:
        model: a timm model (``timm.create_model(name, pretrained=False)``, weights loaded with
            :func:`load_checkpoint` if wanted) of a supported family: ResNet, ConvNeXt, EfficientNet, or a vision
            transformer with ``patch_embed``, ``blocks`` and ``forward_intermediates`` (ViT, DeiT, EVA, ...).
        at: the index timm's ``forward_intermediates(indices=[at])`` takes: a feature stage for a CNN (ResNet
            0-4, 0 being the stem; ConvNeXt 0-3; EfficientNet 0-4), a block for a vision transformer; negative
            counts from the end; ``None`` (default) is the last one.

    Every piece is an instance of a class defined in a module (``nn.Sequential``, timm's own classes,
    :class:`TokenTrunk`, :class:`TokenRegionHead`), so a network holding them pickles, ``copy.deepcopy`` gives an
    independent copy, and ``torch.save(network)`` loads back with ``torch.load(..., weights_only=False)``.

    Returns:
        ``(trunk, head)``; ``head.num_features`` is the size ``D`` of the head's features, which
        :class:`~region_attention.FeatureRegionAttentionNetwork` reads when ``feature_dim`` is left out.

    Raises:
        TypeError: ``model`` is no timm model of a supported family, or ``at`` is not an int.
        ValueError: ``at`` is out of range, or a rotary-embedding transformer (EVA-02) is split before its last
            block.

    Example:
        >>> import timm, torch
        >>> from region_attention.backbones import timm_split
        >>> model = timm.create_model("convnext_atto", pretrained=False).eval()
        >>> trunk, head = timm_split(model, at=2)   # after the third stage, at 1/16 of the image
        >>> fmap = trunk(torch.rand(1, 3, 64, 64))
        >>> fmap.shape, head(torch.rand(6, 160, 7, 7)).shape, head.num_features
        (torch.Size([1, 160, 4, 4]), torch.Size([6, 320]), 320)
    """
    types = _timm_model_types()
    if not isinstance(model, nn.Module):
        raise TypeError(f"timm_split expected model to be a timm nn.Module, got {type(model).__name__}")
    for family, cls in types.items():
        if isinstance(model, cls):
            trunk, head, _ = _cnn_split(model, at, family)
            dim: Any = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", 0)
            object.__setattr__(head, "num_features", int(dim))
            return trunk, head
    if _is_token_model(model):
        trunk_t, head_t, _ = _token_split(model, at)
        return trunk_t, head_t
    raise TypeError(
        f"timm_split supports timm's ResNet, ConvNeXt and EfficientNet and its vision transformers (patch_embed, "
        f"blocks, forward_intermediates: ViT, DeiT, EVA, ...), got {type(model).__module__}.{type(model).__name__}"
    )
