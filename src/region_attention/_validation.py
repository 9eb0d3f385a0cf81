"""Input checks shared by the functional ops and the modules.

Every check raises :class:`TypeError` or :class:`ValueError` with a message that names the
argument and shows what was received against what was expected. None of them reads tensor
*values*, so they cost no host synchronisation and trace cleanly under ``torch.compile`` and
``torch.export`` (shape comparisons become guards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """Format a shape the way the error messages show it: ``(8, 6, 256)``."""
    items = [str(s) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def check_tensor(value: object, name: str, owner: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner} expected {name} to be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(value: Tensor, name: str, owner: str) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{owner} expected {name} to have a floating point dtype, got {value.dtype}")


def check_region_features(x: object, owner: str, dim: int | None = None, name: str = "x") -> Tensor:
    """Check ``x`` is a floating ``(B, K, D)`` tensor with ``K >= 1`` (and ``D == dim`` if given)."""
    x = check_tensor(x, name, owner)
    expected = f"(B, K, {dim if dim is not None else 'D'})"
    if x.dim() != 3:
        raise ValueError(f"{owner} expected {name} of shape {expected}, got {x.dim()}-D shape {shape_str(x.shape)}")
    check_floating(x, name, owner)
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"{owner} expected {name} of shape {expected}, got {shape_str(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{owner} expected {name} with at least one region (K >= 1), got {shape_str(x.shape)}")
    return x


def check_mask(mask: object, reference: Tensor, owner: str, name: str = "mask") -> Tensor | None:
    """Check an optional ``(B, K)`` bool mask against the leading dims of ``reference``."""
    if mask is None:
        return None
    mask = check_tensor(mask, name, owner)
    if mask.dtype != torch.bool:
        raise TypeError(f"{owner} expected {name} to be a bool tensor (True = region present), got dtype {mask.dtype}")
    expected = tuple(reference.shape[:2])
    if mask.dim() != 2 or tuple(mask.shape) != expected:
        raise ValueError(f"{owner} expected {name} of shape {shape_str(expected)} (B, K), got {shape_str(mask.shape)}")
    if mask.device != reference.device:
        raise ValueError(f"{owner} expected {name} on {reference.device} like the features, got {mask.device}")
    return mask


def check_same_device(value: Tensor, name: str, device: torch.device, owner: str, what: str = "the parameters") -> None:
    if value.device != device:
        raise ValueError(f"{owner} expected {name} on {device} like {what}, got {value.device}")


def check_choice(value: object, name: str, choices: Sequence[str], owner: str) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{owner} expected {name} to be one of {options}, got {value!r}")
    return value


def check_positive_int(value: object, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} expected {name} to be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{owner} expected {name} > 0, got {value}")
    return value


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the attention math runs in: at least float32, float64 kept for gradcheck."""
    return torch.promote_types(dtype, torch.float32)
