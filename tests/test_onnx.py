"""ONNX export (``torch.onnx.export(..., dynamo=True)``) with a dynamic batch, run in ONNX Runtime.

What docs/deployment.rst promises: the exported graph takes any batch size and gives PyTorch's outputs
(every field of :class:`~region_attention.RANOutput`) to float32 rounding. Skipped, with the reason, when the
``onnx`` extra (onnx, onnxscript, onnxruntime) is not installed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import region_attention
from region_attention import RegionAttentionNetwork, RegionCropper

INSTALL = "pip install 'region-attention[onnx]'"
pytest.importorskip("onnx", reason=f"ONNX export needs onnx: {INSTALL}")
pytest.importorskip("onnxscript", reason=f"torch.onnx.export(dynamo=True) needs onnxscript: {INSTALL}")
ort = pytest.importorskip("onnxruntime", reason=f"running the exported model needs onnxruntime: {INSTALL}")

import onnx  # noqa: E402  (after the skips above)

pytestmark = [
    pytest.mark.slow,  # each export traces the model with torch.export: 5-30 s on a CPU
    pytest.mark.skipif(
        not {"dynamo", "dynamic_shapes"} <= set(inspect.signature(torch.onnx.export).parameters),
        reason=f"torch {torch.__version__} has no torch.onnx.export(dynamo=True, dynamic_shapes=...)",
    ),
]

#: float32 tolerance of ONNX Runtime against PyTorch on the same graph (measured: below 2e-7).
ATOL, RTOL = 1e-5, 1e-4
IMAGE = (3, 64, 64)


def _leaves(out: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) named tuple in field order, None and ints (``whole_index``, a constant of the
    model) skipped: the exported graph's outputs."""
    if isinstance(out, torch.Tensor):
        return [out]
    if out is None or isinstance(out, int):
        return []
    return [leaf for item in out for leaf in _leaves(item)]


def _names(out: Any, prefix: str = "") -> list[str]:
    """Field paths of the tensors of ``out`` (``logits``, ``self_attention.weights``, ...), as :func:`_leaves`."""
    if isinstance(out, torch.Tensor):
        return [prefix]
    if out is None or isinstance(out, int):
        return []
    dot = "." if prefix else ""
    fields = zip(out._fields, out, strict=True)
    return [name for field, item in fields for name in _names(item, f"{prefix}{dot}{field}")]


def _conv_net(in_channels: int, out_channels: int, *, pool: bool) -> nn.Sequential:
    """A small conv block whose BatchNorm has non-trivial running statistics (eval mode uses them)."""
    bn = nn.BatchNorm2d(out_channels)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), bn, nn.ReLU()]
    if pool:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _export_and_compare(model: nn.Module, tmp_path: Path, batch_sizes: tuple[int, ...] = (1, 5)) -> None:
    model.eval()
    example = torch.rand(2, *IMAGE)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, dynamic_shapes={"images": {0: batch}})
    assert program is not None
    path = tmp_path / "model.onnx"
    program.save(str(path))
    onnx.checker.check_model(str(path))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert isinstance(image_input.shape[0], str), f"the batch axis was fixed at export: {image_input.shape}"
    assert image_input.shape[1:] == list(IMAGE)

    for bsz in batch_sizes:  # neither is the example's batch size of 2
        images = torch.rand(bsz, *IMAGE, generator=torch.Generator().manual_seed(bsz))
        with torch.no_grad():
            expected = model(images)
        got = session.run(None, {image_input.name: images.numpy()})
        names, tensors = _names(expected), _leaves(expected)
        assert len(got) == len(tensors), f"ONNX outputs {len(got)}, PyTorch fields {names}"
        for name, out, ref in zip(names, got, tensors, strict=True):
            assert out.shape == tuple(ref.shape), f"{name} at batch {bsz}: {out.shape} vs {tuple(ref.shape)}"
            if ref.dtype == torch.bool:
                np.testing.assert_array_equal(out, ref.numpy(), err_msg=f"{name} at batch {bsz}")
            else:
                np.testing.assert_allclose(out, ref.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name} at batch {bsz}")
        # the classifier's output is not a constant: different faces get different logits
        assert not np.allclose(got[0][0], got[0][-1]) or bsz == 1


def test_region_attention_network_onnx_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RegionAttentionNetwork(_conv_net(3, 16, pool=True), 16, num_classes=7, cropper=RegionCropper(32))
    _export_and_compare(model, tmp_path)


def test_authors_variant_onnx_dynamic_batch(tmp_path: Path) -> None:
    """The released model's layout: whole face last, softmax over the gates, biased queries."""
    torch.manual_seed(1)
    cropper = RegionCropper(32, whole_position="last")
    model = RegionAttentionNetwork(_conv_net(3, 16, pool=True), 16, num_classes=8, cropper=cropper, variant="authors")
    _export_and_compare(model, tmp_path, batch_sizes=(3,))


@pytest.mark.skipif(
    not hasattr(region_attention, "FeatureRegionAttentionNetwork"), reason="no FeatureRegionAttentionNetwork"
)
def test_feature_region_attention_network_onnx_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(2)
    trunk = _conv_net(3, 16, pool=False)  # (B, 16, 32, 32) feature map of 64 x 64 faces
    head = nn.Sequential(_conv_net(16, 16, pool=True))
    model = region_attention.FeatureRegionAttentionNetwork(trunk, head, 16, num_classes=7, roi_size=4)
    _export_and_compare(model, tmp_path)
