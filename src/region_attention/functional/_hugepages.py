"""Large CPU buffers advised to transparent huge pages, for the crop op's outputs and workspaces.

Why this exists: the CPU crop paths write a fresh output of hundreds of megabytes per batch (64 faces x 6
regions x 3 x 224 x 224 float32 is 462 MB). Faulting that in 4 KiB page by page costs about as much as
the resampling itself; asking the kernel for 2 MiB pages (``MADV_HUGEPAGE``, what PyTorch's
``THP_MEM_ALLOC_ENABLE=1`` does for every allocation) makes the first write cheaper. Only the advice
changes: where the kernel has transparent huge pages off, or set to ``always``, nothing does.

Measured (kernel THP mode ``madvise``, 32 faces of 224 x 224, K = 6, one thread, CPU time per call, 25
paired rounds on a shared 2-core machine): fixed boxes (the banded path) 165 ms with the advice against
237 ms without for float32 images (faster in 19 of 25 rounds; minor page faults per call 0.8k against
28k), 201 against 258 ms for uint8. The two-tap path (random and landmark boxes) was faster with it in
isolation (303 against 511 ms) but slower and erratic when interleaved with the fixed-box calls, so
rerun ``python benchmarks/crop_throughput.py --parts 1`` (its "without huge-page advice" rows) on an idle
machine before relying on either figure.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

__all__ = ["empty_cpu"]

_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14

#: Switched off by ``benchmarks/crop_throughput.py`` to measure what the advice buys.
ADVISE = True


@functools.lru_cache(maxsize=1)
def _madvise() -> Callable[[int, int, int], int] | None:
    """libc's ``madvise`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int], int], fn)


def empty_cpu(*shape: int, dtype: torch.dtype) -> Tensor:
    """``torch.empty`` on the CPU, with the whole 2 MiB pages of a buffer of 16 MiB or more advised huge."""
    out = torch.empty(*shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    madvise = _madvise() if ADVISE and nbytes >= 8 * _HUGE_PAGE else None
    if madvise is not None:
        start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        end = (out.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        madvise(start, end - start, _MADV_HUGEPAGE)
    return out
