"""How the networks find ``feature_dim`` when it is left out: the module says it, or one probe pass measures it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._validation import shape_str


def declared_dim(module: nn.Module) -> int | None:
    """The feature size a module declares, timm's convention: ``head_hidden_size`` (the pre-logits size, which
    differs from ``num_features`` for heads with a pre-logits MLP) or else ``num_features``. ``None`` when it
    declares none, or when it has a classifier (``num_classes > 0``: its output is logits, not those features)."""
    if isinstance(getattr(module, "num_classes", 0), int) and getattr(module, "num_classes", 0) > 0:
        return None
    for name in ("head_hidden_size", "num_features"):
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _probe_tensor(module: nn.Module, shape: tuple[int, ...]) -> Tensor:
    """Zeros of ``shape`` on the module's device, in its floating dtype (float32 for a module without tensors)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return torch.zeros(shape, device=tensor.device, dtype=tensor.dtype)
    return torch.zeros(shape)


def image_channels(module: nn.Module) -> int:
    """Input channels of a backbone: those of its first convolution, or 3."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.conv._ConvNd):
            return int(sub.in_channels)
    return 3


def probe(module: nn.Module, shape: tuple[int, ...]) -> Tensor:
    """``module`` on zeros of ``shape``, in eval mode and without gradients, leaving every parameter and buffer
    (BatchNorm's running statistics and batch count included) and every module's train/eval mode as they were."""
    modes = [(sub, sub.training) for sub in module.modules()]
    saved = {name: buf.detach().clone() for name, buf in module.named_buffers()}
    try:
        module.eval()
        with torch.no_grad():
            out: Tensor = module(_probe_tensor(module, shape))
    finally:
        for sub, mode in modes:
            sub.training = mode
        with torch.no_grad():
            for name, buf in module.named_buffers():
                if name in saved:
                    buf.copy_(saved[name])
    return out


def feature_dim_of(module: nn.Module, shape: tuple[int, ...], owner: str, what: str) -> int:
    """The size ``D`` of the ``(N, D)`` features ``module`` returns for inputs of ``shape``: declared
    (:func:`declared_dim`), or measured by one :func:`probe` pass."""
    dim = declared_dim(module)
    if dim is not None:
        return dim
    try:
        out = probe(module, shape)
    except Exception as err:
        raise ValueError(
            f"{owner} could not find feature_dim: the {what} failed on a probe input of shape {shape_str(shape)} "
            f"({type(err).__name__}: {err}); pass feature_dim"
        ) from err
    if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-2:] == (1, 1):
        out = out.flatten(1)
    if not isinstance(out, Tensor) or out.dim() != 2:
        got = shape_str(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"{owner} could not find feature_dim: the {what} returned {got} for a probe input of shape "
            f"{shape_str(shape)}, expected (N, D) features"
        )
    return int(out.shape[1])


def head_feature_dim(
    trunk: nn.Module, head: nn.Module, image_size: tuple[int, int], roi_size: tuple[int, int], owner: str
) -> int:
    """``D`` of a one-pass network's head: declared, or measured on a pooled region of the trunk's channels (the
    trunk probed on one ``image_size`` image)."""
    dim = declared_dim(head)
    if dim is not None:
        return dim
    shape = (1, image_channels(trunk), *image_size)
    try:
        fmap = probe(trunk, shape)
    except Exception as err:
        raise ValueError(
            f"{owner} could not find feature_dim: the trunk failed on a probe input of shape {shape_str(shape)} "
            f"({type(err).__name__}: {err}); pass feature_dim"
        ) from err
    if not isinstance(fmap, Tensor) or fmap.dim() != 4:
        got = shape_str(fmap.shape) if isinstance(fmap, Tensor) else type(fmap).__name__
        raise ValueError(
            f"{owner} could not find feature_dim: the trunk returned {got} for a probe input of shape "
            f"{shape_str(shape)}, expected a (B, C, h, w) feature map"
        )
    return feature_dim_of(head, (2, fmap.shape[1], *roi_size), owner, "head")
