"""Users' type checkers see the output type of a module call: ``pool(x)`` is a ``SelfAttentionOutput``, not ``Any``.

torch types ``nn.Module.__call__`` as ``Callable[..., Any]``; each public module narrows it with a class-level
annotation ``__call__: Callable[..., Output]`` (no runtime effect: ``nn.Module.__call__`` still runs ``forward``).
The snippet below is checked by mypy with ``typing_extensions.assert_type``, which fails the check when the
type differs (``Any`` included)."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import region_attention as ra

from .background import Background, python

SNIPPET = """
import torch
from torch import Tensor
from typing_extensions import assert_type

import region_attention as ra

x, mask = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
images = torch.rand(2, 3, 32, 32)

self_out = ra.SelfAttentionPool(8)(x, mask)
assert_type(self_out, ra.SelfAttentionOutput)
assert_type(self_out.pooled, Tensor)
relation_out = ra.RelationAttentionPool(8)(x, self_out.pooled, self_out.gates, mask)
assert_type(relation_out, ra.RelationAttentionOutput)
assert_type(ra.GatedAttentionPool(8)(x, mask), ra.GatedAttentionOutput)
regions = ra.RegionCropper(16)(images)
assert_type(regions, ra.RegionCrops)
network = ra.RegionAttentionNetwork(torch.nn.Flatten(), 3 * 16 * 16, 7, cropper=ra.RegionCropper(16))
out = network(images)
assert_type(out, ra.RANOutput)
assert_type(ra.RegionAttentionLoss()(out, torch.zeros(2, dtype=torch.long)), ra.RANLossOutput)
assert_type(ra.RegionBiasedLoss()(self_out.gates, mask), Tensor)
assert_type(ra.RegionAlign(4)(torch.randn(2, 8, 8, 8), torch.zeros(2, 3, 4), 32), Tensor)
"""

MODULES = {
    ra.SelfAttentionPool: ra.SelfAttentionOutput,
    ra.RelationAttentionPool: ra.RelationAttentionOutput,
    ra.GatedAttentionPool: ra.GatedAttentionOutput,
    ra.RegionCropper: ra.RegionCrops,
    ra.RegionAttentionNetwork: ra.RANOutput,
    ra.FeatureRegionAttentionNetwork: ra.RANOutput,
    ra.RegionAttentionLoss: ra.RANLossOutput,
    ra.RegionBiasedLoss: torch.Tensor,
    ra.RegionAlign: torch.Tensor,
}


def mypy_command(folder: Path) -> list[str] | None:
    """``mypy --strict`` over the snippet, written into ``folder``; ``None`` without mypy (the test skips)."""
    if importlib.util.find_spec("mypy") is None:
        return None
    snippet = folder / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET))
    return python(
        "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(folder / "cache"), "--ignore-missing-imports",
        str(snippet),
    )  # fmt: skip


#: mypy takes half a minute over torch's types: it runs while the suite does (tests/background.py).
BACKGROUND = {"test_mypy_sees_the_output_types": mypy_command}


@pytest.mark.slow
def test_mypy_sees_the_output_types(request: pytest.FixtureRequest, background: Background) -> None:
    pytest.importorskip("mypy", reason="mypy not installed (pip install mypy)")
    result = background.result(request.node)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", list(MODULES), ids=lambda m: m.__name__)
def test_annotation_only(module: type[nn.Module]) -> None:
    # the annotation names the output type and adds nothing at run time: calling still goes through
    # nn.Module.__call__ (hooks, forward), which compile and export trace
    assert module.__call__ is nn.Module.__call__
    hints = {k: v for c in reversed(module.__mro__) for k, v in vars(c).get("__annotations__", {}).items()}
    assert hints["__call__"] == f"Callable[..., {MODULES[module].__name__}]"
