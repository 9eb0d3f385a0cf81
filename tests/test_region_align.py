"""region_align / RegionAlign against torchvision's roi_align and a float64 loop over the RoIAlign rules."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from region_attention import RegionAlign
from region_attention.functional import region_align as checked_region_align
from tests.conftest import TOLERANCES

# The comparisons with torchvision include a degenerate box (x2 = x1), which torchvision pools and our box check
# refuses by default: they run without the check (the checks have their own tests below and in test_misuse.py).
region_align = functools.partial(checked_region_align, check_boxes=False)

torchvision = pytest.importorskip("torchvision")


def loop_reference(fmap, boxes, image_size, output_size, grid):
    """RoIAlign (aligned=True) written out per box, bin and sample in float64, separate x and y scales."""
    bsz, channels, h, w = fmap.shape
    height, width = image_size
    oh, ow = output_size
    f = fmap.detach().double()
    out = torch.zeros(bsz, boxes.shape[1], channels, oh, ow, dtype=torch.float64)

    def bilinear(img, y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return torch.zeros(channels, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = math.floor(y), math.floor(x)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * img[:, y0, x0]
            + (1 - ly) * lx * img[:, y0, x1]
            + ly * (1 - lx) * img[:, y1, x0]
            + ly * lx * img[:, y1, x1]
        )

    for b in range(bsz):
        for k in range(boxes.shape[1]):
            x1, y1, x2, y2 = (float(v) for v in boxes[b, k])
            sx, sy = w / width, h / height
            x1, x2, y1, y2 = x1 * sx - 0.5, x2 * sx - 0.5, y1 * sy - 0.5, y2 * sy - 0.5
            bin_h, bin_w = (y2 - y1) / oh, (x2 - x1) / ow
            for i in range(oh):
                for j in range(ow):
                    acc = torch.zeros(channels, dtype=torch.float64)
                    for p in range(grid):
                        for q in range(grid):
                            y = y1 + i * bin_h + (p + 0.5) * bin_h / grid
                            x = x1 + j * bin_w + (q + 0.5) * bin_w / grid
                            acc += bilinear(f[b], y, x)
                    out[b, k, :, i, j] = acc / (grid * grid)
    return out


def torchvision_reference(fmap, boxes, image_size, output_size, grid):
    """torchvision's op; a non-square scale is expressed by rescaling the x coordinates of the boxes."""
    h, w = fmap.shape[-2:]
    height, width = image_size
    sy, sx = h / height, w / width
    boxes = boxes.clone()
    boxes[..., 0::2] *= sx / sy
    out = torchvision.ops.roi_align(fmap, list(boxes), output_size, spatial_scale=sy, sampling_ratio=grid, aligned=True)
    return out.reshape(boxes.shape[0], boxes.shape[1], *out.shape[1:])


def random_boxes(bsz, k, height, width, generator, dtype=torch.float64):
    """Boxes of every kind: inside, partly and entirely outside, tiny, degenerate, larger than the image."""
    u = torch.rand(bsz, k, 4, generator=generator, dtype=dtype)
    cx = u[..., 0] * 1.8 * width - 0.4 * width
    cy = u[..., 1] * 1.8 * height - 0.4 * height
    bw = u[..., 2] ** 2 * 1.3 * width
    bh = u[..., 3] ** 2 * 1.3 * height
    boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=-1)
    special = [
        [3.0, 5.0, 3.5, 5.25],  # tiny, inside
        [-3.0 * width, 0.0, -2.0 * width, height],  # entirely outside
        [0.0, 0.0, width, height],  # the whole image
        [7.0, 7.0, 7.0, 7.0],  # empty
    ][: max(k - 1, 0)]  # keep at least one random box
    if special:
        boxes[:, : len(special)] = torch.tensor(special, dtype=dtype)
    return boxes


# (feature map h, w), image (H, W), output (oh, ow): square ones go to torchvision as is; the (oh, w) and
# (h, ow) sizes against the grid decide between the separable contraction and the gather, so both run.
SETTINGS = [
    ((14, 14), (224, 224), (7, 7)),
    ((7, 7), (224, 224), (7, 7)),
    ((12, 12), (48, 48), (3, 3)),
    ((5, 5), (40, 40), (6, 4)),
    ((6, 10), (48, 120), (4, 3)),
    ((9, 4), (36, 32), (2, 5)),
]


@pytest.mark.parametrize("grid", [1, 2, 3, 4])
@pytest.mark.parametrize(("map_size", "image_size", "out_size"), SETTINGS)
def test_matches_torchvision_values_and_gradients(device, grid, map_size, image_size, out_size):
    gen = torch.Generator().manual_seed(grid * 100 + map_size[0])
    fmap = torch.randn(2, 3, *map_size, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    boxes = random_boxes(2, 8, *image_size, gen).to(device)
    ours = region_align(fmap, boxes, image_size, out_size, grid)
    ref = torchvision_reference(fmap, boxes, image_size, out_size, grid)
    assert ours.shape == (2, 8, 3, *out_size) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-10)
    cotangent = torch.randn(ours.shape, generator=gen, dtype=torch.float64).to(device)
    (g_ours,) = torch.autograd.grad(ours, fmap, cotangent)
    (g_ref,) = torch.autograd.grad(ref, fmap, cotangent)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("grid", [1, 3])
@pytest.mark.parametrize(("map_size", "image_size", "out_size"), [SETTINGS[3], SETTINGS[4], SETTINGS[5]])
def test_matches_a_loop_over_the_roi_align_rules(grid, map_size, image_size, out_size):
    gen = torch.Generator().manual_seed(7)
    fmap = torch.randn(2, 2, *map_size, generator=gen, dtype=torch.float64)
    boxes = random_boxes(2, 6, *image_size, gen)
    ref = loop_reference(fmap, boxes, image_size, out_size, grid)
    torch.testing.assert_close(region_align(fmap, boxes, image_size, out_size, grid), ref, atol=1e-12, rtol=1e-10)


def test_square_map_with_a_plain_spatial_scale():
    """The issue's statement literally: roi_align(fmap, list(boxes), (oh, ow), spatial_scale=h / H, ...)."""
    gen = torch.Generator().manual_seed(3)
    fmap = torch.randn(3, 4, 14, 14, generator=gen, dtype=torch.float64)
    boxes = random_boxes(3, 6, 224, 224, gen)
    ref = torchvision.ops.roi_align(fmap, list(boxes), (7, 7), spatial_scale=14 / 224, sampling_ratio=2, aligned=True)
    ours = region_align(fmap, boxes, image_size=(224, 224), output_size=7, sampling_ratio=2)
    torch.testing.assert_close(ours.flatten(0, 1), ref, atol=1e-12, rtol=1e-10)


def test_a_box_on_whole_cells_is_plain_slicing():
    """Convention: cell i covers image pixels [i H / h, (i + 1) H / h); one sample per cell at its centre."""
    fmap = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    image = (48, 120)  # 8 px per cell vertically, 12 px horizontally
    boxes = torch.tensor([[[12.0, 8.0, 60.0, 32.0]], [[0.0, 16.0, 120.0, 48.0]]], dtype=torch.float64)
    out0 = region_align(fmap[:1], boxes[:1], image, output_size=(3, 4), sampling_ratio=1)
    torch.testing.assert_close(out0[0, 0], fmap[0, :, 1:4, 1:5], atol=1e-12, rtol=0)
    out1 = region_align(fmap[1:], boxes[1:], image, output_size=(4, 10), sampling_ratio=1)
    torch.testing.assert_close(out1[0, 0], fmap[1, :, 2:6, :], atol=1e-12, rtol=0)


def test_int_and_tuple_output_sizes_and_image_sizes():
    fmap = torch.randn(1, 2, 8, 8)
    boxes = torch.tensor([[[4.0, 4.0, 40.0, 28.0]]])
    a = region_align(fmap, boxes, 64, 5)
    b = region_align(fmap, boxes, (64, 64), (5, 5))
    assert a.shape == (1, 1, 2, 5, 5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert region_align(fmap, boxes, 64, (2, 6)).shape == (1, 1, 2, 2, 6)


def test_boxes_get_no_gradient():
    fmap = torch.randn(1, 2, 8, 8, requires_grad=True)
    boxes = torch.tensor([[[4.0, 4.0, 40.0, 28.0]]], requires_grad=True)
    out = region_align(fmap, boxes, 64)
    g_fmap, g_boxes = torch.autograd.grad(out.sum(), (fmap, boxes), allow_unused=True)
    assert g_boxes is None and g_fmap is not None


@pytest.mark.slow
@pytest.mark.parametrize("grid", [1, 2])
def test_gradcheck(grid):
    gen = torch.Generator().manual_seed(1)
    fmap = torch.randn(2, 2, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    boxes = random_boxes(2, 4, 30, 25, gen)

    def fn(x):
        return region_align(x, boxes, (30, 25), (3, 2), grid)

    assert torch.autograd.gradcheck(fn, (fmap,))
    assert torch.autograd.gradgradcheck(fn, (fmap,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtype_is_preserved_and_computed_in_float32(device, dtype):
    gen = torch.Generator().manual_seed(2)
    fmap64 = torch.randn(2, 3, 14, 14, generator=gen, dtype=torch.float64)
    boxes = random_boxes(2, 5, 224, 224, gen, dtype=torch.float32)
    fmap = fmap64.to(dtype)
    ref = torchvision_reference(fmap.double(), boxes.double(), (224, 224), (7, 7), 2)
    out = region_align(fmap.to(device), boxes.to(device), 224, 7, 2)
    assert out.dtype == dtype
    atol, rtol = TOLERANCES[dtype]
    # the only rounding in float16/bfloat16 is the final cast of a float32 result
    torch.testing.assert_close(out.cpu().double(), ref, atol=atol * 4, rtol=rtol)


def test_autocast_does_not_lower_the_precision():
    gen = torch.Generator().manual_seed(4)
    fmap = torch.randn(2, 8, 14, 14, generator=gen)
    boxes = random_boxes(2, 6, 224, 224, gen, dtype=torch.float32)
    plain = region_align(fmap, boxes, 224)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = region_align(fmap, boxes, 224)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain, atol=1e-6, rtol=1e-6)


def test_module_twin_and_repr():
    align = RegionAlign(output_size=(3, 5), sampling_ratio=3)
    assert repr(align) == "RegionAlign(output_size=(3, 5), sampling_ratio=3)"
    assert repr(RegionAlign()) == "RegionAlign(output_size=(7, 7), sampling_ratio=2)"
    fmap = torch.randn(2, 4, 9, 9)
    boxes = random_boxes(2, 5, 72, 72, torch.Generator().manual_seed(0), dtype=torch.float32)
    expected = region_align(fmap, boxes, 72, (3, 5), 3)
    torch.testing.assert_close(align(fmap, boxes, image_size=72, check_boxes=False), expected)
    assert list(align.state_dict()) == []


class _Align(torch.nn.Module):
    def __init__(self, grid: int) -> None:
        super().__init__()
        self.align = RegionAlign(output_size=(4, 3), sampling_ratio=grid)

    def forward(self, fmap, boxes):
        return self.align(fmap, boxes, (64, 48), check_boxes=False)


@pytest.mark.slow
@pytest.mark.parametrize("grid", [1, 2])
def test_compile_fullgraph_dynamic_batch(grid):
    model = _Align(grid)
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=True)
    gen = torch.Generator().manual_seed(0)
    for bsz, k in ((2, 3), (5, 6), (1, 1)):
        fmap = torch.randn(bsz, 3, 16, 12, generator=gen)
        boxes = random_boxes(bsz, k, 64, 48, gen, dtype=torch.float32)
        torch.testing.assert_close(compiled(fmap, boxes), model(fmap, boxes))


@pytest.mark.slow
@pytest.mark.parametrize("grid", [1, 2])
def test_export_dynamic_batch(grid):
    model = _Align(grid)
    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 3, 16, 12, generator=gen)
    boxes = random_boxes(3, 6, 64, 48, gen, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (fmap, boxes), dynamic_shapes={"fmap": {0: batch}, "boxes": {0: batch}})
    for bsz in (1, 7):
        f2 = torch.randn(bsz, 3, 16, 12, generator=gen)
        b2 = random_boxes(bsz, 6, 64, 48, gen, dtype=torch.float32)
        torch.testing.assert_close(program.module()(f2, b2), model(f2, b2))


def test_no_host_sync(device):
    if device != "cuda":
        pytest.skip("host synchronisation is only observable on CUDA")
    fmap = torch.randn(2, 8, 14, 14, device=device, requires_grad=True)
    boxes = random_boxes(2, 6, 224, 224, torch.Generator().manual_seed(0), dtype=torch.float32).to(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for grid in (1, 2):
            region_align(fmap, boxes, 224, 7, grid).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(("size", "grid"), [((14, 14), 1), ((14, 14), 2), ((40, 40), 1), ((7, 7), 4)])
def test_memory_bound(size, grid):
    """No tensor saved for backward is larger than the pooled output times the sampling grid."""
    fmap = torch.randn(2, 4, *size, requires_grad=True)
    boxes = random_boxes(2, 6, 224, 224, torch.Generator().manual_seed(0), dtype=torch.float32)
    bound = 2 * 6 * 4 * 7 * 7 * grid * grid
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = region_align(fmap, boxes, 224, 7, grid)
    largest = max(s for s in sizes if s != fmap.numel())  # the input itself is not an intermediate
    assert largest <= bound
    assert out.numel() <= bound


_F, _B = torch.randn(2, 3, 8, 8), torch.rand(2, 4, 4) * 32

BAD_INPUT = [
    ("fmap 3-D", lambda: region_align(_F[0], _B, 64), ValueError, r"feature_map of shape \(B, C, h, w\), got 3-D"),
    ("fmap int", lambda: region_align(_F.long(), _B, 64), TypeError, r"feature_map to have a floating point dtype"),
    ("fmap list", lambda: region_align([1.0], _B, 64), TypeError, r"feature_map to be a torch.Tensor, got list"),
    (
        "boxes batch",
        lambda: region_align(_F, _B[:1], 64),
        ValueError,
        r"expected boxes of shape \(B, K, 4\) = \(2, K, 4\) to match the feature map, got \(1, 4, 4\)",
    ),
    ("boxes 2-D", lambda: region_align(_F, _B[0], 64), ValueError, r"expected boxes of shape \(B, K, 4\)"),
    ("boxes 5 coords", lambda: region_align(_F, torch.rand(2, 4, 5), 64), ValueError, r"got \(2, 4, 5\)"),
    ("boxes bool", lambda: region_align(_F, _B > 1, 64), TypeError, r"boxes with a real dtype, got torch.bool"),
    ("boxes device", lambda: region_align(_F, _B.to("meta"), 64), ValueError, r"expected boxes on cpu"),
    ("image_size 0", lambda: region_align(_F, _B, 0), ValueError, r"expected image_size > 0, got 0"),
    ("image_size triple", lambda: region_align(_F, _B, (1, 2, 3)), TypeError, r"image_size .* got \(1, 2, 3\)"),
    ("image_size float", lambda: region_align(_F, _B, 64.0), TypeError, r"image_size .* got 64.0"),
    ("output_size neg", lambda: region_align(_F, _B, 64, (7, -1)), ValueError, r"output_size .* got \(7, -1\)"),
    ("output_size str", lambda: region_align(_F, _B, 64, "7"), TypeError, r"output_size .* got '7'"),
    (
        "adaptive grid",
        lambda: region_align(_F, _B, 64, 7, 0),
        ValueError,
        r"expected sampling_ratio >= 1, got 0: torchvision's adaptive grid .* device synchronisation",
    ),
    ("grid -1", lambda: region_align(_F, _B, 64, 7, -1), ValueError, r"expected sampling_ratio >= 1, got -1"),
    ("grid float", lambda: region_align(_F, _B, 64, 7, 2.0), TypeError, r"sampling_ratio to be an int, got float"),
    ("module grid", lambda: RegionAlign(sampling_ratio=0), ValueError, r"RegionAlign expected sampling_ratio >= 1"),
    ("module size", lambda: RegionAlign(output_size=0), ValueError, r"RegionAlign expected output_size"),
]


@pytest.mark.parametrize(("case", "fn", "exc", "pattern"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(case, fn, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn()
