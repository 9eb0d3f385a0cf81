"""Region cropping: conventions, the paper's boxes, strategies, gradients, compile, and the bad-input table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import region_attention.functional.crop as RC
from region_attention import RegionCropper, RegionCrops
from region_attention.functional import (
    BOX_PRESETS,
    RegionBoxes,
    crop_regions,
    landmark_boxes,
    preset_boxes,
    random_boxes,
    reduce_landmarks,
    region_boxes,
)

# ------------------------------------------------------------------------------------------------------
# An independent float64 reference: one output pixel at a time, F.interpolate's bilinear rule inside the
# image (edge pixels extend to the border), zero where the sample centre lies outside the image.
# ------------------------------------------------------------------------------------------------------


def _axis_taps(lo: float, hi: float, n_in: int, n_out: int, j: int) -> list[tuple[int, float]]:
    u = lo + (j + 0.5) * (hi - lo) / n_out
    if u < 0 or u >= n_in:
        return []
    s = min(max(u - 0.5, 0.0), n_in - 1.0)
    i0 = math.floor(s)
    f = s - i0
    i1 = min(i0 + 1, n_in - 1)
    return [(i0, 1.0 - f), (i1, f)]


def reference_crop(image: torch.Tensor, box: tuple[float, ...], h: int, w: int) -> torch.Tensor:
    """image (C, H, W) -> (C, h, w), float64, by explicit loops."""
    img = image.double()
    c, height, width = img.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    out = torch.zeros(c, h, w, dtype=torch.float64)
    for yo in range(h):
        ty = _axis_taps(y1, y2, height, h, yo)
        for xo in range(w):
            tx = _axis_taps(x1, x2, width, w, xo)
            for iy, wy in ty:
                for ix, wx in tx:
                    out[:, yo, xo] += wy * wx * img[:, iy, ix]
    return out


def reference_crops(images: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    boxes = boxes.expand(images.shape[0], -1, -1) if boxes.dim() == 2 else boxes
    return torch.stack(
        [
            torch.stack([reference_crop(images[b], tuple(boxes[b, k].tolist()), h, w) for k in range(boxes.shape[1])])
            for b in range(images.shape[0])
        ]
    )


TOL = {torch.float32: {"atol": 2e-5, "rtol": 1e-4}, torch.float64: {"atol": 1e-10, "rtol": 1e-8}}


# ------------------------------------------------------------------------------------------------------
# Conventions
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", ["per-image", "shared", "host"])
def test_matches_float64_reference(device, dtype, form):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 9, 11, dtype=dtype, device=device)
    shared = [(0.0, 0.0, 11.0, 9.0), (1.5, 2.25, 8.0, 7.5), (-2.0, -1.0, 5.0, 12.5), (3.0, 1.0, 4.0, 2.0)]
    if form == "per-image":
        boxes = torch.tensor([shared, shared[::-1]], dtype=dtype, device=device)
    elif form == "shared":
        boxes = torch.tensor(shared, dtype=dtype, device=device)
    else:
        boxes = shared
    got = crop_regions(images, boxes, (5, 7))
    assert got.shape == (2, 4, 3, 5, 7) and got.dtype == dtype and got.is_contiguous()
    ref_boxes = boxes if isinstance(boxes, torch.Tensor) else torch.tensor(shared, dtype=dtype)
    expected = reference_crops(images.cpu(), ref_boxes.cpu(), 5, 7)
    torch.testing.assert_close(got.cpu().double(), expected, **TOL[dtype])


@pytest.mark.parametrize("form", ["tensor", "host"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.uint8])
def test_integer_box_at_its_size_is_slicing(device, form, dtype):
    images = (torch.rand(3, 2, 20, 24, device=device) * 255).to(dtype)
    box = (5, 3, 17, 12)  # x1, y1, x2, y2: 12 wide, 9 high
    boxes = torch.tensor([box], device=device) if form == "tensor" else [box]
    crops = crop_regions(images, boxes, (9, 12), scale_uint8=False)
    assert torch.equal(crops[:, 0], images[:, :, 3:12, 5:17].to(crops.dtype))
    whole = crop_regions(
        images,
        [(0, 0, 24, 20)] if form == "host" else torch.tensor([[0, 0, 24, 20]], device=device),
        (20, 24),
        antialias=True,
        scale_uint8=False,
    )
    assert torch.equal(whole[:, 0], images.to(whole.dtype))


def test_whole_box_matches_interpolate(device):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 40, 50, device=device)
    for size in ((40, 50), (17, 23), (80, 75)):
        for antialias in (False, True):
            expected = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=antialias)
            for boxes in ([(0, 0, 50, 40)], torch.tensor([[0.0, 0.0, 50.0, 40.0]], device=device)):
                got = crop_regions(images, boxes, size, antialias=antialias)[:, 0]
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_outside_the_image_is_zero_and_partial_boxes_keep_the_inside(device):
    images = torch.rand(1, 1, 8, 8, device=device) + 1
    crops = crop_regions(images, torch.tensor([[-8.0, 0.0, 8.0, 8.0], [20.0, 20.0, 30.0, 30.0]], device=device), 8)
    assert torch.equal(crops[0, 0, 0, :, :4], torch.zeros(8, 4, device=device))  # left half outside
    torch.testing.assert_close(crops[0, 0, 0, :, 4:], images[0, 0, :, ::2][:, :4] * 0 + crops[0, 0, 0, :, 4:])
    assert (crops[0, 0, 0, :, 4:] > 0).all()
    assert torch.equal(crops[0, 1], torch.zeros(1, 8, 8, device=device))


@pytest.mark.slow
def test_fast_host_path_matches_general_path():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 48)
    pixel = [(x1 * 48, y1 * 64, x2 * 48, y2 * 64) for x1, y1, x2, y2 in BOX_PRESETS["authors-affectnet"]]
    pixel += [(0.0, 0.0, 48.0, 64.0), (-5.5, 3.25, 52.0, 60.0), (10.0, 10.0, 42.0, 41.0)]
    for size, antialias in (((32, 32), True), ((64, 48), False), ((70, 50), False), ((16, 20), True)):
        fast = crop_regions(images, pixel, size, antialias=antialias)
        general = RC._crop_dense(images, torch.tensor(pixel, dtype=torch.float64), size, antialias, torch.float64, True)
        torch.testing.assert_close(fast.double(), general, atol=2e-6, rtol=1e-5)
        u8 = (images * 255).to(torch.uint8)
        torch.testing.assert_close(
            crop_regions(u8, pixel, size, antialias=antialias),
            crop_regions(u8, torch.tensor(pixel), size, antialias=antialias),
            atol=2e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize("per_image", [True, False])
def test_two_tap_path_matches_the_interpolation_matrices(device, per_image):
    # crop_regions takes the two-tap path without gradients or antialias, the matrices otherwise
    torch.manual_seed(0)
    for height, width, size in ((20, 15, (7, 9)), (1, 12, (3, 5)), (9, 1, (4, 2))):
        images = torch.rand(3, 2, height, width, dtype=torch.float64, device=device)
        corner = torch.rand(3, 5, 2, dtype=torch.float64, device=device) * 1.4 - 0.2
        extent = torch.rand(3, 5, 2, dtype=torch.float64, device=device) * 1.2 + 0.05
        scale = torch.tensor([width, height], dtype=torch.float64, device=device)
        boxes = torch.cat([corner * scale, (corner + extent) * scale], dim=-1)
        present = torch.rand(3, 5, device=device) > 0.3
        if not per_image:
            boxes, present = boxes[0], None
        taps = RC._crop_taps(images, boxes, size, torch.float64, True, present)
        dense = RC._crop_dense(images, boxes, size, False, torch.float64, True, present)
        torch.testing.assert_close(taps, dense, atol=1e-12, rtol=0)


def test_uint8_is_scaled_like_to_tensor_and_dtypes(device):
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, device=device)
    crops = crop_regions(images, [(0, 0, 16, 16)], 16)
    assert crops.dtype == torch.float32
    assert torch.equal(crops[:, 0], images.float() / 255)
    raw = crop_regions(images, [(0, 0, 16, 16)], 16, scale_uint8=False, dtype=torch.float64)
    assert raw.dtype == torch.float64 and torch.equal(raw[:, 0], images.double())
    half = crop_regions(images.half(), [(1.5, 0, 12, 16)], 8)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    bf = crop_regions(torch.rand(2, 3, 16, 16, device=device), [(1.5, 0, 12, 16)], 8, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16


def test_memory_layouts_give_the_same_crops(device):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 30, 30, device=device)
    boxes = [(2.5, 1.0, 27.0, 29.0), (0.0, 0.0, 20.0, 20.0)]
    expected = crop_regions(images, boxes, 16)
    for variant in (
        images.contiguous(memory_format=torch.channels_last),
        images.transpose(2, 3).transpose(2, 3),
        torch.rand(2, 3, 30, 60, device=device)[..., ::2].copy_(images),
    ):
        torch.testing.assert_close(crop_regions(variant, boxes, 16), expected)
        torch.testing.assert_close(
            crop_regions(variant, torch.tensor(boxes, device=device), 16), expected, atol=1e-5, rtol=1e-5
        )


def test_antialias_removes_aliasing_when_shrinking():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2).float().expand(1, 1, 64, 64)
    plain = crop_regions(checker, [(0, 0, 64, 64)], 19)  # 3.4x shrink: two taps of a 1-pixel pattern
    smooth = crop_regions(checker, [(0, 0, 64, 64)], 19, antialias=True)
    assert plain.std() > 0.15  # aliasing: a flat grey comes out as a moire
    assert smooth.std() < 0.01 and abs(smooth.mean().item() - 0.5) < 0.01


# ------------------------------------------------------------------------------------------------------
# Fixed boxes: the paper's fractions, the authors' order, the whole face
# ------------------------------------------------------------------------------------------------------


def test_paper_boxes_at_the_paper_fractions():
    fractions = [
        (0, 0, 0.75, 0.75),
        (0.25, 0, 1, 0.75),
        (0.125, 0.25, 0.875, 1),
        (0.05, 0.05, 0.95, 0.95),
        (0.075, 0.075, 0.925, 0.925),
    ]
    torch.testing.assert_close(preset_boxes("paper"), torch.tensor(fractions))
    cropper = RegionCropper(32)
    out = cropper(torch.rand(2, 3, 200, 160))  # H=200, W=160: x scales by 160, y by 200
    expected = [(0, 0, 160, 200)] + [(a * 160, b * 200, c * 160, d * 200) for a, b, c, d in fractions]
    torch.testing.assert_close(out.boxes, torch.tensor(expected).expand(2, -1, -1))
    assert out.mask.all() and out.mask.shape == (2, 6) and cropper.whole_index == 0 and cropper.K == 6


def test_authors_affectnet_boxes_with_whole_face_last():
    fractions = [
        (0.125, 0.25, 0.875, 1),
        (0, 0, 0.75, 0.75),
        (0.25, 0, 1, 0.75),
        (0.05, 0.05, 0.95, 0.95),
        (0.1, 0.1, 0.9, 0.9),
        (0.125, 0.125, 0.875, 0.875),
        (0.125, 0, 0.875, 0.75),
    ]
    cropper = RegionCropper(16, boxes="authors-affectnet", whole_position="last")
    images = torch.rand(1, 3, 64, 64)
    out = cropper(images)
    expected = [(a * 64, b * 64, c * 64, d * 64) for a, b, c, d in fractions] + [(0, 0, 64, 64)]
    torch.testing.assert_close(out.boxes[0], torch.tensor(expected))
    assert cropper.whole_index == -1 and cropper.K == 8 and cropper.num_crops == 7
    torch.testing.assert_close(out.crops[:, -1], F.interpolate(images, size=16, mode="bilinear"))


def test_custom_boxes_without_whole_face():
    cropper = RegionCropper((8, 12), boxes=torch.tensor([[0.0, 0.0, 0.5, 1.0]]), include_whole=False)
    images = torch.rand(2, 3, 8, 24)
    out = cropper(images)
    assert cropper.whole_index is None and cropper.K == 1
    assert torch.equal(out.crops[:, 0], images[..., :12])
    assert RegionCropper(8, boxes=[(0.1, 0.2, 0.9, 0.8)]).K == 2


def test_cropper_equals_its_functional_twin(device):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 48, 40, device=device)
    cropper = RegionCropper(24, antialias=True)
    out = cropper(images)
    twin = crop_regions(images, out.boxes, 24, antialias=True)
    torch.testing.assert_close(out.crops, twin, atol=1e-5, rtol=1e-5)
    assert out.boxes.device == images.device and out.mask.device == images.device


# ------------------------------------------------------------------------------------------------------
# Gradients, compile, sync-free forward
# ------------------------------------------------------------------------------------------------------


def test_gradcheck_float64(device):
    torch.manual_seed(0)
    images = torch.rand(2, 2, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
    boxes = torch.tensor(
        [[[0.5, 0.0, 5.5, 4.0], [-1.0, 1.0, 3.0, 6.0]], [[1.0, 1.0, 2.0, 2.0], [0.0, 0.0, 6.0, 5.0]]],
        dtype=torch.float64,
        device=device,
    )
    assert torch.autograd.gradcheck(lambda x: crop_regions(x, boxes, (3, 4)), (images,))
    shrink = [(0.5, 0.0, 5.5, 4.0), (-1.0, 0.5, 4.0, 5.0)]
    assert torch.autograd.gradcheck(lambda x: crop_regions(x, shrink, 2, antialias=True), (images,), fast_mode=True)


def test_gradients_reach_the_images_through_the_cropper(device):
    images = torch.rand(2, 3, 32, 32, device=device, requires_grad=True)
    for cropper in (RegionCropper(16), RegionCropper(16, strategy="random")):
        images.grad = None
        cropper(images).crops.sum().backward()
        assert images.grad is not None and (images.grad.abs().sum() > 0)


@pytest.mark.slow
def test_compile_fullgraph_with_explicit_boxes():
    images = torch.rand(2, 3, 20, 24)
    boxes = torch.tensor([[[1.0, 2.0, 13.0, 14.0], [0.0, 0.0, 24.0, 20.0]]]).expand(2, -1, -1)
    fn = torch.compile(lambda x, b: crop_regions(x, b, (8, 6), antialias=True), backend="eager", fullgraph=True)
    torch.testing.assert_close(fn(images, boxes), crop_regions(images, boxes, (8, 6), antialias=True))
    cropper = RegionCropper(12).eval()
    compiled = torch.compile(cropper, backend="eager", fullgraph=True)
    with torch.no_grad():
        got, want = compiled(images), cropper(images)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_forward_never_synchronises_on_cuda():
    images = torch.rand(4, 3, 64, 64, device="cuda")
    landmarks = torch.tensor([[20.0, 24.0], [44.0, 24.0], [32.0, 36.0], [24.0, 48.0], [40.0, 48.0]], device="cuda")
    croppers = [RegionCropper(32), RegionCropper(32, strategy="random").eval(), RegionCropper(32, strategy="landmarks")]
    for cropper in croppers:
        cropper(images, landmarks.expand(4, -1, -1))  # warm-up: the fixed boxes reach the device once
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for cropper in croppers:
            cropper(images, landmarks.expand(4, -1, -1))
        crop_regions(images, boxes, 8, check_boxes=False)
        crop_regions(images, boxes, 8, check_boxes=False, antialias=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ------------------------------------------------------------------------------------------------------
# Random strategy
# ------------------------------------------------------------------------------------------------------


def test_random_boxes_range_and_reproducibility():
    boxes = random_boxes(64, 5, scale=(0.7, 0.95), generator=torch.Generator().manual_seed(1))
    side_w, side_h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    torch.testing.assert_close(side_w, side_h)
    assert ((side_w >= 0.7 - 1e-6) & (side_w <= 0.95 + 1e-6)).all()
    assert (boxes >= 0).all() and (boxes <= 1 + 1e-6).all()
    assert side_w.std() > 0.03 and boxes[..., 0].std() > 0.02  # really drawn, per box and image
    assert torch.equal(boxes, random_boxes(64, 5, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(boxes[0], boxes[1])


def test_random_cropper_train_and_eval(device):
    images = torch.rand(3, 3, 40, 30, device=device)
    cropper = RegionCropper(16, strategy="random", num_regions=4)
    assert cropper.K == 5 and cropper.whole_index == 0
    gen = torch.Generator(device=device)
    a = cropper(images, generator=gen.manual_seed(3))
    b = cropper(images, generator=gen.manual_seed(3))
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.crops, b.crops)
    assert a.crops.shape == (3, 5, 3, 16, 16) and a.mask.all()
    torch.testing.assert_close(a.boxes[:, 0], torch.tensor([0.0, 0.0, 30.0, 40.0], device=device).expand(3, -1))
    inside = (
        (a.boxes[..., 0] >= 0)
        & (a.boxes[..., 2] <= 30 + 1e-4)
        & (a.boxes[..., 1] >= 0)
        & (a.boxes[..., 3] <= 40 + 1e-4)
    )
    assert inside.all()
    ratio = (a.boxes[:, 1:, 2] - a.boxes[:, 1:, 0]) / 30
    assert ((ratio > 0.7 - 1e-5) & (ratio < 0.95 + 1e-5)).all()
    assert not torch.equal(cropper(images).boxes, cropper(images).boxes)  # training: fresh boxes
    cropper.eval()
    assert torch.equal(cropper(images).boxes, cropper(images).boxes)  # eval: deterministic (eval_seed)
    cropper.eval_seed = None
    assert not torch.equal(cropper(images).boxes, cropper(images).boxes)


# ------------------------------------------------------------------------------------------------------
# Landmark strategy
# ------------------------------------------------------------------------------------------------------

#: Five points of a tightly detected face (MTCNN-like layout) in a 112 x 112 crop.
TIGHT_FACE = torch.tensor([[[38.0, 46.0], [74.0, 46.0], [56.0, 66.0], [41.0, 88.0], [71.0, 88.0]]])


def _contains(boxes, points):
    x, y = points[..., 0], points[..., 1]
    return (boxes[..., 0] <= x) & (x <= boxes[..., 2]) & (boxes[..., 1] <= y) & (y <= boxes[..., 3])


def _inside(boxes, height, width):
    return (boxes[..., 0] >= 0) & (boxes[..., 1] >= 0) & (boxes[..., 2] <= width) & (boxes[..., 3] <= height)


def test_default_policy_keeps_one_distinct_region_per_landmark_on_a_tight_face():
    boxes, mask = landmark_boxes(TIGHT_FACE, (112, 112))
    raw_crosses = ((TIGHT_FACE - 0.4 * 112) < 0).any(-1) | ((TIGHT_FACE + 0.4 * 112) > 112).any(-1)
    assert raw_crosses.sum() >= 4  # most regions cross the border...
    assert mask.all()  # ... and all five survive
    assert _contains(boxes, TIGHT_FACE).all() and _inside(boxes, 112, 112).all()
    side = boxes[..., 2:] - boxes[..., :2]
    torch.testing.assert_close(side, torch.full_like(side, 0.8 * 112))  # shifted, same size
    assert len({tuple(b) for b in boxes[0].tolist()}) == 5
    dropped = landmark_boxes(TIGHT_FACE, (112, 112), border="drop")[1]
    assert dropped.sum() <= 1


def test_border_policies():
    pts = torch.tensor([[[5.0, 50.0], [50.0, 50.0]]]).expand(1, -1, -1)
    pts = torch.cat([pts, torch.full((1, 3, 2), 50.0)], dim=1)
    r = 0.25 * 100
    shift, m1 = landmark_boxes(pts, (100, 100), radius=0.25)
    clip, _ = landmark_boxes(pts, (100, 100), radius=0.25, border="clip")
    pad, _ = landmark_boxes(pts, (100, 100), radius=0.25, border="pad")
    drop, m4 = landmark_boxes(pts, (100, 100), radius=0.25, border="drop")
    torch.testing.assert_close(shift[0, 0], torch.tensor([0.0, 25.0, 50.0, 75.0]))
    torch.testing.assert_close(clip[0, 0], torch.tensor([0.0, 25.0, 30.0, 75.0]))
    torch.testing.assert_close(pad[0, 0], torch.tensor([5 - r, 25.0, 5 + r, 75.0]))
    assert m1.all() and not m4[0, 0] and m4[0, 1:].all()
    assert torch.equal(drop[0, 0], torch.zeros(4))


def test_shifted_boxes_that_would_coincide_are_clipped_instead():
    # both eyes lie beyond the shift limit of the top-left corner: shifting alone gives one box twice
    pts = torch.tensor([[[10.0, 12.0], [20.0, 15.0], [56.0, 56.0], [30.0, 100.0], [90.0, 100.0]]])
    boxes, mask = landmark_boxes(pts, (112, 112))
    assert mask.all() and _contains(boxes, pts).all() and _inside(boxes, 112, 112).all()
    assert len({tuple(b) for b in boxes[0].tolist()}) == 5


def test_missing_and_outside_landmarks_are_masked_with_zero_crops():
    pts = torch.tensor([[[20.0, 24.0], [float("nan"), 24.0], [32.0, 36.0], [-3.0, 48.0], [40.0, 64.0]]])
    cropper = RegionCropper(16, strategy="landmarks")
    out = cropper(torch.rand(1, 3, 64, 64) + 0.5, pts)
    assert out.mask.tolist() == [[True, True, False, True, False, False]]
    assert (out.crops[~out.mask] == 0).all() and (out.crops[out.mask] > 0).all()
    assert (out.boxes[~out.mask] == 0).all()
    assert isinstance(out, RegionCrops) and cropper.K == 6


def test_68_point_landmarks_are_reduced_to_five():
    torch.manual_seed(0)
    pts68 = torch.rand(2, 68, 2) * 100
    five = reduce_landmarks(pts68)
    torch.testing.assert_close(five[:, 0], pts68[:, 36:42].mean(1))
    torch.testing.assert_close(five[:, 1], pts68[:, 42:48].mean(1))
    assert torch.equal(five[:, 2], pts68[:, 30]) and torch.equal(five[:, 3], pts68[:, 48])
    assert torch.equal(five[:, 4], pts68[:, 54])
    cropper = RegionCropper(8, strategy="landmarks")
    images = torch.rand(2, 3, 100, 100)
    a, b = cropper(images, pts68), cropper(images, five)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.crops, b.crops)


@settings(max_examples=60, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-20, 140, allow_nan=False), st.floats(-20, 100, allow_nan=False)), min_size=5, max_size=5
    ),
    radius=st.floats(0.05, 0.5),
    border=st.sampled_from(["shift", "clip", "drop"]),
)
def test_landmark_regions_contain_their_landmark_lie_inside_and_never_duplicate(points, radius, border):
    height, width = 80, 120
    pts = torch.tensor([points], dtype=torch.float32)
    boxes, mask = landmark_boxes(pts, (height, width), radius=radius, border=border)
    visible = (pts[..., 0] >= 0) & (pts[..., 0] < width) & (pts[..., 1] >= 0) & (pts[..., 1] < height)
    assert not (mask & ~visible).any()
    if border != "drop":
        assert torch.equal(mask, visible)
    assert _contains(boxes, pts)[mask].all()
    assert _inside(boxes, height, width)[mask].all()
    assert ((boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]))[mask].all()
    kept = [i for i in range(5) if mask[0, i]]
    for i in kept:
        for j in kept:
            if i < j and (pts[0, i] - pts[0, j]).abs().max() > 1e-2:  # distinct beyond float resolution
                assert not torch.equal(boxes[0, i], boxes[0, j])


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(3, 14),
    width=st.integers(3, 14),
    out_h=st.integers(1, 9),
    out_w=st.integers(1, 9),
    box=st.tuples(st.floats(-4, 10), st.floats(-4, 10), st.floats(0.25, 12), st.floats(0.25, 12)),
)
def test_crops_match_the_reference_for_any_box(height, width, out_h, out_w, box):
    torch.manual_seed(0)
    images = torch.rand(2, 2, height, width, dtype=torch.float64)
    x1, y1, bw, bh = box
    pixel = (x1, y1, x1 + bw, y1 + bh)
    expected = reference_crops(images, torch.tensor([pixel], dtype=torch.float64), out_h, out_w)
    torch.testing.assert_close(
        crop_regions(images, torch.tensor([pixel], dtype=torch.float64), (out_h, out_w)), expected
    )
    torch.testing.assert_close(
        crop_regions(images.float(), [pixel], (out_h, out_w)).double(), expected, atol=1e-5, rtol=1e-5
    )
    dense = RC._crop_dense(
        images, torch.tensor([pixel], dtype=torch.float64), (out_h, out_w), False, torch.float64, True
    )
    torch.testing.assert_close(dense, expected)


# ------------------------------------------------------------------------------------------------------
# Repr and the bad-input table
# ------------------------------------------------------------------------------------------------------


def test_reprs_are_pinned():
    assert repr(RegionCropper(224)) == (
        "RegionCropper(output_size=(224, 224), strategy='fixed', boxes='paper', whole_index=0)"
    )
    assert repr(RegionCropper((112, 96), strategy="random", num_regions=3, whole_position="last", antialias=True)) == (
        "RegionCropper(output_size=(112, 96), strategy='random', num_regions=3, scale=(0.7, 0.95), eval_seed=0, "
        "whole_index=-1, antialias=True)"
    )
    assert repr(RegionCropper(64, strategy="landmarks", border="clip", include_whole=False)) == (
        "RegionCropper(output_size=(64, 64), strategy='landmarks', radius=0.4, border='clip', whole_index=None)"
    )
    assert repr(RegionCropper(8, boxes=[(0, 0, 0.5, 0.5)], dtype=torch.float16)) == (
        "RegionCropper(output_size=(8, 8), strategy='fixed', boxes=<1 boxes>, whole_index=0, dtype=torch.float16)"
    )


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"output_size": 0}, ValueError, r"RegionCropper expected output_size > 0, got 0"),
        ({"output_size": (224, -1)}, ValueError, r"expected output_size > 0, got \(224, -1\)"),
        ({"output_size": 22.5}, TypeError, r"expected output_size to be an int or a \(height, width\) pair"),
        (
            {"strategy": "grid"},
            ValueError,
            r"expected strategy to be one of 'fixed', 'random', 'landmarks', got 'grid'",
        ),
        ({"boxes": "fer"}, ValueError, r"expected boxes to be one of 'paper', 'authors-affectnet', got 'fer'"),
        ({"boxes": torch.rand(3, 5)}, ValueError, r"expected boxes of shape \(k, 4\) .* got \(3, 5\)"),
        (
            {"boxes": [(0.5, 0.0, 0.4, 1.0)]},
            ValueError,
            r"x2 > x1 and y2 > y1, got boxes\[0\] = \(0.5, 0.0, 0.4, 1.0\)",
        ),
        ({"strategy": "random", "scale": (0.9, 0.7)}, ValueError, r"expected scale with 0 < min <= max <= 1, got"),
        ({"strategy": "random", "scale": (0.0, 0.5)}, ValueError, r"expected scale with 0 < min <= max <= 1"),
        ({"strategy": "random", "scale": 0.8}, TypeError, r"expected scale to be a \(min, max\) pair of floats"),
        ({"strategy": "landmarks", "radius": 0.0}, ValueError, r"expected radius > 0, got 0.0"),
        ({"strategy": "landmarks", "radius": -1}, ValueError, r"expected radius > 0, got -1"),
        ({"strategy": "landmarks", "border": "wrap"}, ValueError, r"border to be one of 'shift', 'clip', .*got 'wrap'"),
        ({"strategy": "random", "num_regions": 0}, ValueError, r"expected num_regions > 0, got 0"),
        ({"whole_position": "middle"}, ValueError, r"expected whole_position to be one of 'first', 'last'"),
        ({"include_whole": 1}, TypeError, r"expected include_whole to be a bool, got int"),
        ({"dtype": torch.int32}, TypeError, r"expected dtype to be a floating point torch.dtype or None"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        RegionCropper(**kwargs)


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (
            lambda: crop_regions(torch.rand(3, 8, 8), [(0, 0, 4, 4)], 4),
            ValueError,
            r"crop_regions expected images of shape \(B, C, H, W\), got 3-D shape \(3, 8, 8\)",
        ),
        (
            lambda: crop_regions(torch.zeros(1, 3, 8, 8, dtype=torch.int32), [(0, 0, 4, 4)], 4),
            TypeError,
            r"expected images with a floating point or uint8 dtype, got torch.int32",
        ),
        (
            lambda: crop_regions([[1.0]], [(0, 0, 4, 4)], 4),
            TypeError,
            r"expected images to be a torch.Tensor, got list",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), torch.rand(2, 3), 4),
            ValueError,
            r"expected boxes of shape \(K, 4\) or \(B, K, 4\) = \(2, K, 4\) to match the images, got \(2, 3\)",
        ),
        (lambda: crop_regions(torch.rand(2, 3, 8, 8), torch.rand(3, 1, 4), 4), ValueError, r"got \(3, 1, 4\)"),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), torch.zeros(0, 4), 4),
            ValueError,
            r"at least one box \(K >= 1\)",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), torch.tensor([[0.0, 0.0, 4.0, 4.0], [3.0, 1.0, 3.0, 5.0]]), 4),
            ValueError,
            r"x2 > x1 and y2 > y1, got 1 invalid box\(es\), e.g. boxes\[1\] = \(3.0, 1.0, 3.0, 5.0\)",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), torch.tensor([[0.0, float("nan"), 4.0, 4.0]]), 4),
            ValueError,
            r"finite coordinates",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4)], 4),
            ValueError,
            r"expected boxes\[0\] to be 4 numbers \(x1, y1, x2, y2\), got \(0, 0, 4\)",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(4, 0, 2, 4)], 4),
            ValueError,
            r"x2 > x1 and y2 > y1, got boxes\[0\] = \(4.0, 0.0, 2.0, 4.0\)",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), "paper", 4),
            TypeError,
            r"expected boxes to be a tensor or a sequence of \(x1, y1, x2, y2\) boxes, got str",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4, 4)], 0),
            ValueError,
            r"expected output_size > 0, got 0",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4, 4)], (4, 0)),
            ValueError,
            r"expected output_size > 0, got \(4, 0\)",
        ),
        (
            lambda: RegionCropper(8, strategy="landmarks")(torch.rand(2, 3, 8, 8)),
            ValueError,
            r"RegionCropper\(strategy='landmarks'\) expected landmarks of shape \(B, 5, 2\) or \(B, 68, 2\) "
            r"in pixels, got None",
        ),
        (
            lambda: RegionCropper(8, strategy="landmarks")(torch.rand(2, 3, 8, 8), torch.rand(2, 6, 2)),
            ValueError,
            r"expected landmarks of shape \(2, 5, 2\) or \(2, 68, 2\) in pixels, got \(2, 6, 2\)",
        ),
        (
            lambda: RegionCropper(8, strategy="landmarks")(torch.rand(2, 3, 8, 8), torch.rand(3, 5, 2)),
            ValueError,
            r"got \(3, 5, 2\)",
        ),
        (lambda: RegionCropper(8)(torch.rand(8, 8)), ValueError, r"expected images of shape \(B, C, H, W\), got 2-D"),
        (lambda: landmark_boxes(torch.rand(1, 5, 2), (8, 8), radius=0), ValueError, r"expected radius > 0, got 0"),
        (lambda: landmark_boxes(torch.rand(1, 5, 2), (8, 8), border="x"), ValueError, r"expected border to be one of"),
        (
            lambda: landmark_boxes(torch.rand(1, 5, 2), 8),
            TypeError,
            r"expected image_size to be a \(height, width\) pair",
        ),
        (
            lambda: reduce_landmarks(torch.rand(1, 10, 2)),
            ValueError,
            r"expected landmarks of shape \(B, 5, 2\) or \(B, 68, 2\) in pixels \(x, y\), got \(1, 10, 2\)",
        ),
        (lambda: random_boxes(2, 3, scale=(0.5, 1.5)), ValueError, r"expected scale with 0 < min <= max <= 1"),
        (lambda: random_boxes(-1, 3), ValueError, r"expected batch_size >= 0, got -1"),
        (lambda: preset_boxes("nope"), ValueError, r"expected name to be one of 'paper', 'authors-affectnet'"),
    ],
)
def test_bad_inputs(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# ------------------------------------------------------------------------------------------------------
# The cropper's boxes without pixels: RegionCropper.boxes and its twin region_boxes
# ------------------------------------------------------------------------------------------------------

FIVE_POINTS = torch.tensor([[20.0, 24.0], [44.0, 24.0], [32.0, 36.0], [24.0, 48.0], [40.0, 48.0]])


def _croppers():
    return [
        RegionCropper(16),
        RegionCropper(16, boxes="authors-affectnet", whole_position="last"),
        RegionCropper(16, boxes=[(0.1, 0.2, 0.6, 0.9)], include_whole=False),
        RegionCropper(16, strategy="random", num_regions=3).eval(),
        RegionCropper(16, strategy="random", whole_position="last", eval_seed=7).eval(),
        RegionCropper(16, strategy="landmarks", border="drop"),
        RegionCropper(16, strategy="landmarks", include_whole=False, dtype=torch.float64),
    ]


@pytest.mark.parametrize("index", range(7))
def test_boxes_are_what_forward_crops(device, index):
    cropper = _croppers()[index]
    images = torch.rand(3, 3, 64, 48, device=device)
    landmarks = FIVE_POINTS.to(device).expand(3, -1, -1).clone()
    landmarks[1, 2] = float("nan")  # one missing landmark
    landmarks = landmarks if cropper.strategy == "landmarks" else None
    regions = cropper.boxes(images, landmarks)
    out = cropper(images, landmarks)
    assert isinstance(regions, RegionBoxes)
    assert torch.equal(regions.boxes, out.boxes) and torch.equal(regions.mask, out.mask)
    assert regions.boxes.shape == (3, cropper.K, 4) and regions.mask.shape == (3, cropper.K)
    assert regions.boxes.device == images.device and regions.boxes.dtype == out.boxes.dtype
    # forward is boxes + crop_regions: crops of those boxes (absent regions zero)
    twin = crop_regions(images, out.boxes, 16, mask=out.mask, dtype=cropper.dtype)
    torch.testing.assert_close(out.crops, twin, atol=1e-5, rtol=1e-5)


def test_boxes_draw_like_forward_with_a_generator_and_in_eval_mode(device):
    cropper = RegionCropper(16, strategy="random")
    images = torch.rand(2, 3, 40, 30, device=device)
    gen = torch.Generator(device=device)
    assert torch.equal(
        cropper.boxes(images, generator=gen.manual_seed(5)).boxes, cropper(images, generator=gen.manual_seed(5)).boxes
    )
    assert not torch.equal(cropper.boxes(images).boxes, cropper.boxes(images).boxes)  # training: fresh draws
    cropper.eval()
    seeded = torch.Generator(device=device).manual_seed(0)  # eval_seed = 0
    expected = random_boxes(2, 5, generator=seeded, device=device) * torch.tensor([30, 40, 30, 40], device=device)
    torch.testing.assert_close(cropper.boxes(images).boxes[:, 1:], expected)


def test_region_boxes_against_the_box_functions():
    gen = torch.Generator()
    # fixed: the fractions times (W, H, W, H), whole face last, shared by the batch (an expanded view)
    fixed = region_boxes("fixed", 3, (50, 40), boxes="paper", whole_position="last")
    expected = [(a * 40, b * 50, c * 40, d * 50) for a, b, c, d in BOX_PRESETS["paper"]] + [(0, 0, 40, 50)]
    torch.testing.assert_close(fixed.boxes, torch.tensor(expected).expand(3, -1, -1))
    assert fixed.boxes.stride(0) == 0 and fixed.mask.all() and fixed.mask.shape == (3, 6)
    # random: random_boxes from the same generator, scaled; whole face first
    rnd = region_boxes("random", 2, (50, 40), num_regions=4, scale=(0.5, 0.6), generator=gen.manual_seed(2))
    unit = random_boxes(2, 4, scale=(0.5, 0.6), generator=gen.manual_seed(2))
    torch.testing.assert_close(rnd.boxes[:, 1:], unit * torch.tensor([40.0, 50.0, 40.0, 50.0]))
    torch.testing.assert_close(rnd.boxes[:, 0], torch.tensor([0.0, 0.0, 40.0, 50.0]).expand(2, -1))
    assert rnd.mask.all() and rnd.mask.shape == (2, 5)
    # landmarks: landmark_boxes, the whole face present even where no landmark region is
    pts = FIVE_POINTS.expand(2, -1, -1).clone()
    pts[0] = float("nan")
    marks = region_boxes("landmarks", 2, (64, 48), landmarks=pts, radius=0.3, border="clip", whole_position=None)
    boxes, mask = landmark_boxes(pts, (64, 48), radius=0.3, border="clip")
    assert torch.equal(marks.boxes, boxes) and torch.equal(marks.mask, mask)
    first = region_boxes("landmarks", 2, (64, 48), landmarks=pts, dtype=torch.float64)
    assert first.boxes.dtype == torch.float64 and first.mask[:, 0].all() and not first.mask[0, 1:].any()


def test_expanded_boxes_are_cropped_as_shared_boxes(device):
    torch.manual_seed(0)
    images = torch.rand(3, 2, 20, 24, device=device)
    shared = torch.tensor([[1.5, 2.0, 13.0, 17.5], [-3.0, 0.0, 30.0, 20.0]], device=device)
    expected = crop_regions(images, shared, (7, 9))
    for boxes in (shared.expand(3, -1, -1), shared.expand(3, -1, -1).contiguous()):
        torch.testing.assert_close(crop_regions(images, boxes, (7, 9)), expected, atol=1e-5, rtol=1e-5)
    reference = reference_crops(images.cpu(), shared.cpu(), 7, 9)
    torch.testing.assert_close(expected.cpu().double(), reference, atol=2e-5, rtol=1e-4)


def test_masked_regions_are_zero_and_their_boxes_unchecked(device):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16, device=device) + 0.5
    boxes = torch.tensor(
        [[[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 0.0, 0.0]], [[4.0, 4.0, 16.0, 12.0], [2.0, 2.0, 6.0, 6.0]]], device=device
    )
    mask = torch.tensor([[True, False], [True, True]], device=device)
    crops = crop_regions(images, boxes, 4, mask=mask)  # the zero box is not checked: it is masked
    assert torch.equal(crops[0, 1], torch.zeros(3, 4, 4, device=device))
    reference = reference_crops(images.cpu(), boxes.cpu(), 4, 4)
    torch.testing.assert_close(crops.cpu().double()[mask.cpu()], reference[mask.cpu()], atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"x2 > x1 and y2 > y1, got 1 invalid box\(es\), e.g. boxes\[0, 1\]"):
        crop_regions(images, boxes, 4)


# ------------------------------------------------------------------------------------------------------
# Misuse refused with a message that says what to do
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "boxes",
    [
        [(0, 0, 48, 48)],
        torch.tensor([[0.0, 0.0, 48.0, 48.0]]),
        [(0.0, 0.0, 0.5, 0.5), (10.0, 20.0, 100.0, 110.0)],
        [(-0.5, -0.5, -0.1, -0.1)],
    ],
)
def test_pixel_boxes_where_fractions_are_expected_are_refused(boxes):
    with pytest.raises(
        ValueError,
        match=r"as fractions of the image in \[0, 1\], got boxes\[\d\] = .*; divide pixel "
        r"boxes by the image size \(W, H, W, H\)",
    ):
        RegionCropper(32, boxes=boxes)
    with pytest.raises(ValueError, match=r"region_boxes\(strategy='fixed'\) expected boxes as fractions"):
        region_boxes("fixed", 2, (32, 32), boxes=boxes)


def test_fractions_within_rounding_of_the_border_are_kept_and_a_box_beyond_it_is_refused():
    cropper = RegionCropper(8, boxes=[(0.0, 0.0, 1.0005, 1.0)], include_whole=False)
    torch.testing.assert_close(cropper(torch.rand(1, 3, 10, 10)).boxes[0, 0], torch.tensor([0.0, 0.0, 10.005, 10.0]))
    with pytest.raises(
        ValueError,
        match=r"expected boxes that overlap the image \(0, 0, 1, 1\), got boxes\[0\] = "
        r"\(1.0, 0.0, 1.0005, 1.0\), which lies entirely outside it",
    ):
        RegionCropper(8, boxes=[(1.0, 0.0, 1.0005, 1.0)])


@pytest.mark.parametrize("form", ["tensor", "host"])
def test_boxes_entirely_outside_the_image_raise_with_outside_error(device, form):
    images = torch.rand(2, 1, 8, 8, device=device)
    raw = [(-8.0, 0.0, 8.0, 8.0), (20.0, 20.0, 30.0, 30.0)]  # partly, then entirely outside
    boxes = torch.tensor(raw, device=device) if form == "tensor" else raw
    pattern = (
        r"expected boxes that overlap the image \(0, 0, W, H\) = \(0, 0, 8, 8\), got 1 box\(es\) entirely "
        r"outside it, e.g. boxes\[1\] = \(20.0, 20.0, 30.0, 30.0\); mark regions that do not exist with "
        r"mask=..., or pass outside='zero'"
    )
    with pytest.raises(ValueError, match=pattern):
        crop_regions(images, boxes, 4, outside="error")
    zero = crop_regions(images, boxes, 4)  # the default crops them as zeros
    assert torch.equal(zero[:, 1], torch.zeros(2, 1, 4, 4, device=device))
    mask = torch.tensor([[True, False], [True, False]], device=device)
    masked = crop_regions(images, boxes, 4, outside="error", mask=mask)  # masked: allowed
    torch.testing.assert_close(masked, zero)
    crop_regions(images, boxes, 4, outside="error", check_boxes=False)  # no value checks asked for


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 20, 24, 1)])
def test_channels_last_images_are_refused_with_the_permute_to_use(shape):
    images = torch.rand(shape)
    pattern = (
        r"expected images of shape \(B, C, H, W\), got \(" + ", ".join(map(str, shape)) + r"\), which looks like "
        r"channels-last data \(B, H, W, C\) with C = \d; pass images.permute\(0, 3, 1, 2\)"
    )
    with pytest.raises(ValueError, match="RegionCropper\\(strategy='fixed'\\) " + pattern):
        RegionCropper(8)(images)
    with pytest.raises(ValueError, match="crop_regions " + pattern):
        crop_regions(images, [(0, 0, 4, 4)], 4)
    out = RegionCropper(8)(images.permute(0, 3, 1, 2))
    assert out.crops.shape == (shape[0], 6, shape[3], 8, 8)


def test_small_channel_counts_with_a_narrow_width_are_not_taken_for_channels_last():
    images = torch.rand(2, 2, 9, 3)  # C = 2, W = 3: a real (B, C, H, W) batch
    torch.testing.assert_close(crop_regions(images, [(0, 0, 3, 9)], (9, 3))[:, 0], images)


@pytest.mark.parametrize("strategy", ["fixed", "random"])
def test_landmarks_given_to_a_strategy_that_ignores_them_warn(strategy):
    cropper = RegionCropper(8, strategy=strategy).eval()
    images = torch.rand(2, 3, 64, 48)
    landmarks = FIVE_POINTS.expand(2, -1, -1)
    with pytest.warns(
        UserWarning,
        match=rf"RegionCropper\(strategy='{strategy}'\) ignores landmarks: its regions "
        r"do not depend on them. Pass landmarks=None, or use strategy='landmarks'",
    ):
        out = cropper(images, landmarks)
    plain = cropper(images)
    assert torch.equal(out.boxes, plain.boxes) and torch.equal(out.crops, plain.crops)
    with pytest.warns(UserWarning, match=rf"region_boxes\(strategy='{strategy}'\) ignores landmarks"):
        region_boxes(strategy, 2, (64, 48), landmarks=landmarks)


def test_numpy_and_pil_inputs_get_the_conversion_to_use():
    np = pytest.importorskip("numpy")
    image_module = pytest.importorskip("PIL.Image")
    array = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    pil = image_module.fromarray(array[0])
    with pytest.raises(
        TypeError,
        match=r"expected images to be a torch.Tensor, got ndarray; convert it with "
        r"torch.from_numpy\(...\) \(and .permute\(0, 3, 1, 2\) if it is laid out",
    ):
        RegionCropper(8)(array)
    with pytest.raises(
        TypeError,
        match=r"crop_regions expected images to be a torch.Tensor, got Image; convert it "
        r"with torchvision.transforms.functional.pil_to_tensor\(...\) \(uint8\) or "
        r"torchvision.transforms.functional.to_tensor\(...\)",
    ):
        crop_regions(pil, [(0, 0, 4, 4)], 4)
    with pytest.raises(
        TypeError,
        match=r"got list; convert it with torchvision.transforms.functional.pil_to_tensor"
        r".*, then torch.stack the list",
    ):
        RegionCropper(8)([pil, pil])
    with pytest.raises(
        TypeError,
        match=r"expected landmarks to be a torch.Tensor, got ndarray; convert it with "
        r"torch.from_numpy",
    ):
        RegionCropper(8, strategy="landmarks")(torch.rand(2, 3, 16, 16), np.zeros((2, 5, 2)))


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (lambda: region_boxes("grid", 2, (8, 8)), ValueError, r"region_boxes expected strategy to be one of 'fixed'"),
        (
            lambda: region_boxes("landmarks", 2, (8, 8)),
            ValueError,
            r"region_boxes\(strategy='landmarks'\) expected landmarks of shape \(B, 5, 2\) or \(B, 68, 2\) in pixels, "
            r"got None",
        ),
        (
            lambda: region_boxes("landmarks", 2, (8, 8), landmarks=torch.rand(3, 5, 2)),
            ValueError,
            r"expected landmarks of shape \(2, 5, 2\) or \(2, 68, 2\) in pixels, got \(3, 5, 2\)",
        ),
        (lambda: region_boxes("fixed", -1, (8, 8)), ValueError, r"expected batch_size >= 0, got -1"),
        (lambda: region_boxes("fixed", 2, 8), TypeError, r"expected image_size to be a \(height, width\) pair"),
        (
            lambda: region_boxes("fixed", 2, (8, 8), whole_position="middle"),
            ValueError,
            r"expected whole_position to be one of 'first', 'last', got 'middle'",
        ),
        (
            lambda: region_boxes("fixed", 2, (8, 8), dtype=torch.int64),
            TypeError,
            r"expected dtype to be a floating point torch.dtype",
        ),
        (
            lambda: region_boxes("fixed", 2, (8, 8), boxes=torch.rand(3, 5)),
            ValueError,
            r"expected boxes of shape \(k, 4\) \(normalised x1, y1, x2, y2\), got \(3, 5\)",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4, 4)], 4, outside="clip"),
            ValueError,
            r"crop_regions expected outside to be one of 'zero', 'error', got 'clip'",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4, 4)], 4, mask=torch.ones(2, 1)),
            TypeError,
            r"expected mask to be a bool tensor \(True = region present\), got dtype torch.float32",
        ),
        (
            lambda: crop_regions(torch.rand(2, 3, 8, 8), [(0, 0, 4, 4)], 4, mask=torch.ones(2, 2, dtype=torch.bool)),
            ValueError,
            r"expected mask of shape \(B, K\) = \(2, 1\), got \(2, 2\)",
        ),
    ],
)
def test_bad_region_box_and_crop_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.slow
def test_compile_fullgraph_landmark_cropper():
    images = torch.rand(2, 3, 40, 32)
    landmarks = torch.tensor([[10.0, 12.0], [20.0, 12.0], [16.0, 20.0], [12.0, 30.0], [float("nan"), 30.0]])
    cropper = RegionCropper(12, strategy="landmarks")
    compiled = torch.compile(cropper, backend="eager", fullgraph=True)
    with torch.no_grad():
        got, want = compiled(images, landmarks.expand(2, -1, -1)), cropper(images, landmarks.expand(2, -1, -1))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not got.mask[:, -1].any()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fixed", "landmarks"])
def test_boxes_export_with_a_dynamic_batch(strategy):
    cropper = RegionCropper(12, strategy=strategy).eval()

    class Boxes(torch.nn.Module):
        def forward(self, images, landmarks):
            return tuple(cropper.boxes(images, landmarks if strategy == "landmarks" else None))

    points = torch.tensor([[10.0, 12.0], [20.0, 12.0], [16.0, 20.0], [12.0, 30.0], [float("nan"), 30.0]])
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        Boxes(),
        (torch.rand(3, 3, 40, 32), points.expand(3, -1, -1)),
        dynamic_shapes={"images": {0: batch}, "landmarks": {0: batch}},
    )
    for bsz in (1, 5):
        args = (torch.rand(bsz, 3, 40, 32), points.expand(bsz, -1, -1))
        for a, b in zip(program.module()(*args), Boxes()(*args), strict=True):
            torch.testing.assert_close(a, b)


def test_crop_uses_the_croppers_settings_and_forward_is_crop_of_its_boxes():
    """``RegionCropper.crop`` is ``crop_regions`` with the cropper's size, antialias and dtype, and ``forward``
    crops exactly the cropper's boxes with it."""
    cropper = RegionCropper((12, 10), antialias=True, dtype=torch.float64)
    images = torch.rand(3, 3, 40, 32)
    boxes = torch.tensor([[2.0, 3.0, 30.0, 35.0], [0.0, 0.0, 32.0, 40.0]]).expand(3, -1, -1)
    mask = torch.tensor([[True, False]]).expand(3, -1)
    want = crop_regions(images, boxes, (12, 10), antialias=True, dtype=torch.float64, mask=mask)
    got = cropper.crop(images, boxes, mask=mask)
    assert got.dtype == torch.float64 and got.shape == (3, 2, 3, 12, 10)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    boxes_only = cropper.boxes(images)  # the very boxes forward crops (shared by the batch: the banded path)
    torch.testing.assert_close(cropper(images).crops, cropper.crop(images, boxes_only.boxes), rtol=0, atol=0)
    with pytest.raises(ValueError, match="boxes"):
        cropper.crop(images, boxes.flip(-1))  # x2 < x1: checked by default
