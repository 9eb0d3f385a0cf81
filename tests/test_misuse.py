"""The layers agree at their seams (issue 21): the same mistake raises the same exception type from every layer,
no option is silently ignored, masked regions count for nothing, batch sizes are checked where inputs meet, an
empty batch gives empty outputs, and the whole face's index travels with the regions to the loss."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

from region_attention import (
    FeatureRegionAttentionNetwork,
    GatedAttentionPool,
    RegionAlign,
    RegionAttentionLoss,
    RegionAttentionNetwork,
    RegionCropper,
    RegionCrops,
    RelationAttentionPool,
    SelfAttentionPool,
)
from region_attention import functional as RF
from region_attention.functional import RegionBoxes
from region_attention.functional import gated as gated_functional


def _backbone(dim: int = 6) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _ran(**kwargs: Any) -> RegionAttentionNetwork:
    return RegionAttentionNetwork(_backbone(), 6, 3, cropper=RegionCropper(8), **kwargs)


def _fran(**kwargs: Any) -> FeatureRegionAttentionNetwork:
    trunk = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    head = nn.Sequential(nn.Conv2d(4, 6, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    kwargs.setdefault("roi_size", 2)
    return FeatureRegionAttentionNetwork(trunk, head, 6, 3, cropper=RegionCropper(8), **kwargs)


_IMAGES = torch.rand(2, 3, 16, 16)
_FMAP = torch.rand(2, 4, 8, 8)
_X = torch.randn(2, 6, 6)
_BAD_BOX = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [10.0, 2.0, 4.0, 12.0]]]).expand(2, -1, -1)  # x2 < x1
_NAN_BOX = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [float("nan"), 2.0, 4.0, 12.0]]]).expand(2, -1, -1)
_LOGITS, _TARGET = torch.randn(2, 3), torch.tensor([0, 2])


#: (case, call, expected exception, pattern the message must match)
MISUSE: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # one mistake, one exception type, from every layer that takes the setting
    ("RegionCropper output_size float", lambda: RegionCropper((7.0, 7)), TypeError, r"output_size to be an int"),
    ("RegionAlign output_size float", lambda: RegionAlign((7.0, 7)), TypeError, r"output_size to be an int"),
    ("crop_regions output_size float", lambda: RF.crop_regions(_IMAGES, [(0, 0, 4, 4)], (7.0, 7)), TypeError, "int"),
    ("region_align output_size float", lambda: RF.region_align(_FMAP, _BAD_BOX, 16, (7.0, 7)), TypeError, "int"),
    ("one-pass roi_size float", lambda: _fran(roi_size=(7.0, 7)), TypeError, r"output_size to be an int"),
    ("RegionCropper output_size 0", lambda: RegionCropper(0), ValueError, r"output_size > 0, got 0"),
    ("RegionAlign output_size 0", lambda: RegionAlign(0), ValueError, r"output_size > 0, got 0"),
    ("region_align image_size float", lambda: RF.region_align(_FMAP, _BAD_BOX, 16.0), TypeError, r"image_size"),
    ("region_boxes image_size float", lambda: RF.region_boxes("fixed", 2, (16.0, 16)), TypeError, r"image_size"),
    ("gated pool dropout 1.5", lambda: GatedAttentionPool(4, dropout=1.5), ValueError, r"dropout in \[0, 1\]"),
    ("network dropout 1.5", lambda: _ran(dropout=1.5), ValueError, r"dropout in \[0, 1\]"),
    ("one-pass dropout 1.5", lambda: _fran(dropout=1.5), ValueError, r"dropout in \[0, 1\]"),
    (
        "functional dropout 1.5",
        lambda: RF.gated_attention_pool(_X, torch.ones(2, 6), torch.ones(1, 2), dropout=1.5),
        ValueError,
        r"dropout in \[0, 1\]",
    ),
    ("gated pool dropout str", lambda: GatedAttentionPool(4, dropout="0.1"), TypeError, r"dropout to be a float"),
    ("network dropout str", lambda: _ran(dropout="0.1"), TypeError, r"dropout to be a float"),
    ("one-pass dropout str", lambda: _fran(dropout="0.1"), TypeError, r"dropout to be a float"),
    ("sampling_ratio float", lambda: RegionAlign(7, 2.0), TypeError, r"sampling_ratio to be an int"),
    # an option of one strategy given to another names the strategy it belongs to
    ("fixed with scale", lambda: RegionCropper(8, scale=(0.5, 0.9)), ValueError, r"scale=.*strategy='random' only"),
    ("fixed with num_regions", lambda: RegionCropper(8, num_regions=3), ValueError, r"strategy='random' only"),
    ("fixed with eval_seed", lambda: RegionCropper(8, eval_seed=3), ValueError, r"eval_seed=3.*strategy='random'"),
    ("fixed with radius", lambda: RegionCropper(8, radius=0.3), ValueError, r"strategy='landmarks' only"),
    (
        "random with boxes",
        lambda: RegionCropper(8, strategy="random", boxes="paper"),
        ValueError,
        r"boxes='paper'.*strategy='fixed' only",
    ),
    ("random with radius", lambda: RegionCropper(8, strategy="random", radius=0.3), ValueError, "'landmarks' only"),
    ("random with border", lambda: RegionCropper(8, strategy="random", border="clip"), ValueError, "'landmarks'"),
    (
        "landmarks with scale",
        lambda: RegionCropper(8, strategy="landmarks", scale=(0.5, 0.9)),
        ValueError,
        r"strategy='random' only; strategy='landmarks' does not use it",
    ),
    (
        "fixed cropper with generator",
        lambda: RegionCropper(8)(_IMAGES, generator=torch.Generator()),
        ValueError,
        r"generator, which only strategy='random' draws from",
    ),
    (
        "region_boxes fixed with scale",
        lambda: RF.region_boxes("fixed", 2, (16, 16), scale=(0.5, 0.9)),
        ValueError,
        r"strategy='random' only",
    ),
    (
        "region_boxes landmarks with boxes",
        lambda: RF.region_boxes("landmarks", 1, (16, 16), boxes="paper", landmarks=torch.rand(1, 5, 2)),
        ValueError,
        r"strategy='fixed' only",
    ),
    (
        "landmarks of 7 points",
        lambda: RegionCropper(8, strategy="landmarks")(_IMAGES, torch.rand(2, 7, 2)),
        ValueError,
        r"landmarks of shape \(2, 5, 2\) or \(2, 68, 2\)",
    ),
    # the same boxes checks in every op that takes boxes
    ("crop_regions x2 < x1", lambda: RF.crop_regions(_IMAGES, _BAD_BOX, 4), ValueError, r"x2 > x1 and y2 > y1"),
    ("region_align x2 < x1", lambda: RF.region_align(_FMAP, _BAD_BOX, 16), ValueError, r"x2 > x1 and y2 > y1"),
    ("RegionAlign x2 < x1", lambda: RegionAlign(2)(_FMAP, _BAD_BOX, 16), ValueError, r"x2 > x1 and y2 > y1"),
    ("crop_regions NaN box", lambda: RF.crop_regions(_IMAGES, _NAN_BOX, 4), ValueError, r"finite coordinates"),
    ("region_align NaN box", lambda: RF.region_align(_FMAP, _NAN_BOX, 16), ValueError, r"finite coordinates"),
    (
        "one-pass forward_regions x2 < x1",
        lambda: _fran().forward_regions(RegionBoxes(_BAD_BOX, torch.ones(2, 2, dtype=torch.bool)), _IMAGES),
        ValueError,
        r"x2 > x1",
    ),
    (
        "network forward_regions x2 < x1",
        lambda: _ran().forward_regions(RegionBoxes(_BAD_BOX, torch.ones(2, 2, dtype=torch.bool)), _IMAGES),
        ValueError,
        r"x2 > x1",
    ),
    (
        "region_align check_boxes not bool",
        lambda: RF.region_align(_FMAP, _BAD_BOX, 16, check_boxes=1),
        TypeError,
        r"check_boxes to be a bool",
    ),
    (
        "crop_regions check_boxes not bool",
        lambda: RF.crop_regions(_IMAGES, _BAD_BOX, 4, check_boxes=1),
        TypeError,
        r"check_boxes to be a bool",
    ),
    ("region_align boxes batch", lambda: RF.region_align(_FMAP, _BAD_BOX[:1], 16), ValueError, r"\(2, K, 4\)"),
    (
        "region_align mask batch",
        lambda: RF.region_align(_FMAP, _BAD_BOX, 16, mask=torch.ones(1, 2).bool()),
        ValueError,
        r"mask of shape \(B, K\) = \(2, 2\)",
    ),
    # batch sizes are checked wherever two inputs meet
    (
        "from_parts gates batch",
        lambda: RegionAttentionLoss().from_parts(_LOGITS, _TARGET, torch.rand(3, 6), whole_index=0),
        ValueError,
        r"gates with batch size 2 like logits \(2, 3\), got gates of shape \(3, 6\)",
    ),
    (
        "from_parts target batch",
        lambda: RegionAttentionLoss().from_parts(_LOGITS, torch.tensor([0, 1, 2])),
        ValueError,
        r"target with batch size 2",
    ),
    (
        "from_parts mask batch",
        lambda: RegionAttentionLoss().from_parts(
            _LOGITS, _TARGET, torch.rand(2, 6), torch.ones(3, 6).bool(), whole_index=0
        ),
        ValueError,
        r"mask of shape \(2, 6\)",
    ),
    (
        "relation pool pooled batch",
        lambda: RelationAttentionPool(6)(_X, torch.rand(3, 6), torch.rand(2, 6)),
        ValueError,
        r"pooled of shape \(B, D\) = \(2, 6\)",
    ),
    (
        "crop_regions mask batch",
        lambda: RF.crop_regions(_IMAGES, _BAD_BOX, 4, mask=torch.ones(3, 2).bool()),
        ValueError,
        r"mask of shape \(B, K\) = \(2, 2\)",
    ),
    # the crashes of the issue, now clear errors
    ("float64 images, network", lambda: _ran()(_IMAGES.double()), TypeError, r"dtype torch.float32 like its param"),
    ("float64 images, one-pass", lambda: _fran()(_IMAGES.double()), TypeError, r"dtype torch.float32 like its param"),
    (
        "meta feature map",
        lambda: RegionAlign(2)(_FMAP.to("meta"), _BAD_BOX.to("meta"), 16),
        ValueError,
        r"feature_map with data, got a meta tensor",
    ),
    ("meta images", lambda: RF.crop_regions(_IMAGES.to("meta"), [(0, 0, 4, 4)], 4), ValueError, r"meta tensor"),
    (
        "class_weight of wrong length",
        lambda: RegionAttentionLoss(class_weight=torch.ones(5)).from_parts(_LOGITS, _TARGET),
        ValueError,
        r"class_weight with one weight per class, C = 3 .* got class_weight of shape \(5,\)",
    ),
    (
        "class_weight integer",
        lambda: RegionAttentionLoss(class_weight=torch.ones(3, dtype=torch.long)),
        TypeError,
        r"class_weight to have a floating point dtype",
    ),
    (
        "label_smoothing 2.0",
        lambda: RegionAttentionLoss(label_smoothing=2.0),
        ValueError,
        r"label_smoothing in \[0, 1\], got 2.0",
    ),
    ("label_smoothing str", lambda: RegionAttentionLoss(label_smoothing="0.1"), TypeError, r"label_smoothing to be a"),
    ("rb_weight negative", lambda: RegionAttentionLoss(rb_weight=-1.0), ValueError, r"rb_weight >= 0"),
    (
        "complex logits",
        lambda: RegionAttentionLoss().from_parts(_LOGITS.to(torch.complex64), _TARGET),
        TypeError,
        r"logits with a real floating point dtype, got torch.complex64",
    ),
    ("whole_index str", lambda: RegionAttentionLoss(whole_index="0"), TypeError, r"whole_index to be an int"),
    (
        "from_parts without any whole_index",
        lambda: RegionAttentionLoss().from_parts(_LOGITS, _TARGET, torch.rand(2, 6)),
        ValueError,
        r"expected whole_index .* got None here and in the loss",
    ),
    (
        "regions of the wrong type",
        lambda: _ran().forward_regions(torch.rand(2, 6, 3, 8, 8)),
        TypeError,
        r"regions to be RegionCrops or RegionBoxes",
    ),
    (
        "one-pass forward_regions without images",
        lambda: _fran().forward_regions(RegionBoxes(_BAD_BOX, torch.ones(2, 2, dtype=torch.bool))),
        ValueError,
        r"expected the images",
    ),
]


@pytest.mark.parametrize(("case", "call", "exc", "pattern"), MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_gives_a_clear_error(case, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


ACCEPTED: list[tuple[str, Callable[[], object]]] = [
    ("dropout 1.0, gated pool", lambda: GatedAttentionPool(4, dropout=1.0)),
    ("dropout 1.0, network", lambda: _ran(dropout=1.0)),
    ("dropout 1.0, one-pass", lambda: _fran(dropout=1.0)),
    ("x2 < x1 without the check, crop_regions", lambda: RF.crop_regions(_IMAGES, _BAD_BOX, 4, check_boxes=False)),
    ("x2 < x1 without the check, region_align", lambda: RF.region_align(_FMAP, _BAD_BOX, 16, check_boxes=False)),
    (
        "masked invalid box, crop_regions",
        lambda: RF.crop_regions(_IMAGES, _NAN_BOX, 4, mask=torch.tensor([[True, False]] * 2)),
    ),
    (
        "masked invalid box, region_align",
        lambda: RF.region_align(_FMAP, _NAN_BOX, 16, mask=torch.tensor([[True, False]] * 2)),
    ),
    (
        "random with every random option",
        lambda: RegionCropper(8, strategy="random", num_regions=3, scale=(0.5, 0.9), eval_seed=4),
    ),
    ("landmarks with its options", lambda: RegionCropper(8, strategy="landmarks", radius=0.3, border="clip")),
]


@pytest.mark.parametrize(("case", "call"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_valid_uses_are_accepted(case, call):
    call()


def test_masked_invalid_boxes_pool_like_any_valid_box():
    """A masked box holding NaN pools finite values: the pools ignore it, and nothing NaN reaches them."""
    mask = torch.tensor([[True, False]] * 2)
    out = RF.region_align(_FMAP, _NAN_BOX, 16, mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :1], RF.region_align(_FMAP, _NAN_BOX[:, :1], 16))


def test_no_check_names_in_any_public_all():
    modules = ["region_attention", "region_attention.functional"]
    modules += [f"region_attention.{m}" for m in ("cropping", "gated", "loss", "network", "pooling", "region_align")]
    modules += [
        f"region_attention.functional.{m}" for m in ("boxes", "crop", "gated", "loss", "pooling", "region_align")
    ]
    for name in modules:
        public = getattr(importlib.import_module(name), "__all__", [])
        assert not [n for n in public if n.startswith("check_")], name


def _all_rows(pool: GatedAttentionPool, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with mock.patch.object(gated_functional, "_present", lambda x, mask: None):
        return pool(x, mask).pooled


def _pools() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    sp, rp, gp = SelfAttentionPool(6), RelationAttentionPool(6), GatedAttentionPool(6, 5, heads=2)

    def relation(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = sp(x, mask)
        return rp(x, s.pooled, s.gates, mask).pooled

    return {
        "self": lambda x, m: sp(x, m).pooled,
        "relation": relation,
        "gated": lambda x, m: gp(x, m).pooled,
        "gated functional (all rows)": lambda x, m: (
            RF.gated_attention_pool(
                x, gp.V.weight, gp.w.weight, m, v_bias=gp.V.bias, u_weight=gp.U.weight, u_bias=gp.U.bias
            ).pooled
        ),
    }


@pytest.mark.parametrize("name", list(_pools()))
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_masked_regions_count_for_nothing_whatever_they_hold(name, poison):
    pool = _pools()[name]
    mask = torch.tensor([[True, False, True, True, False, True], [False, False, False, False, False, False]])
    clean = torch.randn(2, 6, 6)
    clean[~mask] = 0.0
    poisoned = clean.clone()
    poisoned[~mask] = poison
    outs, grads = [], []
    for x in (clean, poisoned):
        x = x.clone().requires_grad_(True)
        out = pool(x, mask)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    assert torch.isfinite(outs[1]).all() and torch.isfinite(grads[1]).all()
    assert (grads[1][~mask] == 0).all()


def test_masked_gates_count_for_nothing_in_the_loss():
    gates = torch.tensor([[0.5, 0.6, 0.4], [0.5, 0.51, 0.3]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    poisoned = gates.detach().clone()
    poisoned[~mask] = float("nan")
    poisoned.requires_grad_(True)
    a = RF.region_biased_loss(gates, mask)
    b = RF.region_biased_loss(poisoned, mask)
    b.backward()
    assert torch.equal(a, b) and torch.isfinite(poisoned.grad).all()


@pytest.mark.parametrize(
    ("name", "call", "shape"),
    [
        ("cropper", lambda: RegionCropper(8)(torch.rand(0, 3, 16, 16)).crops, (0, 6, 3, 8, 8)),
        (
            "random cropper",
            lambda: RegionCropper(8, strategy="random")(torch.rand(0, 3, 16, 16)).crops,
            (0, 6, 3, 8, 8),
        ),
        ("crop_regions", lambda: RF.crop_regions(torch.rand(0, 3, 16, 16), torch.rand(0, 2, 4), 4), (0, 2, 3, 4, 4)),
        ("region_align", lambda: RegionAlign(2)(torch.rand(0, 4, 8, 8), torch.rand(0, 2, 4), 16), (0, 2, 4, 2, 2)),
        ("self pool", lambda: SelfAttentionPool(6)(torch.rand(0, 5, 6)).pooled, (0, 6)),
        ("gated pool", lambda: GatedAttentionPool(6, 4)(torch.rand(0, 5, 6)).pooled, (0, 6)),
        (
            "gated pool masked",
            lambda: GatedAttentionPool(6, 4)(torch.rand(0, 5, 6), torch.ones(0, 5).bool()).pooled,
            (0, 6),
        ),
        ("network", lambda: _ran().eval()(torch.rand(0, 3, 16, 16)).logits, (0, 3)),
        ("one-pass network", lambda: _fran().eval()(torch.rand(0, 3, 16, 16)).logits, (0, 3)),
    ],
)
def test_an_empty_batch_gives_empty_outputs(name, call, shape):
    assert tuple(call().shape) == shape


def _output(gates: torch.Tensor, whole_index: int | None) -> SimpleNamespace:
    regions = SimpleNamespace(mask=torch.ones_like(gates, dtype=torch.bool), whole_index=whole_index)
    return SimpleNamespace(logits=torch.zeros(1, 2), self_attention=SimpleNamespace(gates=gates), regions=regions)


def test_the_loss_reads_the_whole_face_from_the_output():
    """The issue's case: whole face last; with the index from the output the region biased part is 0.5."""
    gates = torch.tensor([[0.1, 0.2, 0.6]])  # the whole face (last) 0.6, the best crop 0.2
    loss = RegionAttentionLoss(margin=0.1)(_output(gates, -1), torch.tensor([0]))
    expected = 0.1 - (0.2 - 0.6)
    torch.testing.assert_close(loss.region_biased, torch.tensor(expected))
    first = RegionAttentionLoss(margin=0.1)(_output(gates, 0), torch.tensor([0]))
    torch.testing.assert_close(first.region_biased, torch.tensor(0.0))  # 0.1 - (0.6 - 0.1) < 0


def test_a_disagreeing_whole_index_names_both():
    gates = torch.rand(1, 3)
    with pytest.raises(
        ValueError, match=r"whole_index=0, but the output's regions have the whole face at whole_index=-1"
    ):
        RegionAttentionLoss(whole_index=0)(_output(gates, -1), torch.tensor([0]))
    RegionAttentionLoss(whole_index=2)(_output(gates, -1), torch.tensor([0]))  # 2 and -1 are the same of K = 3


@pytest.mark.parametrize("position", ["first", "last"])
@pytest.mark.parametrize("make", [_ran, _fran], ids=["network", "one-pass"])
def test_whole_index_travels_from_the_cropper_through_both_networks(make, position):
    model = make()
    model.cropper = RegionCropper(8, whole_position=position)
    out = model(_IMAGES)
    assert out.regions.whole_index == model.whole_index == (0 if position == "first" else -1)
    boxes = model.boxes(_IMAGES)
    assert isinstance(boxes, RegionBoxes) and boxes.whole_index == out.regions.whole_index
    torch.manual_seed(0)
    again = model.forward_regions(boxes, _IMAGES)  # the shared vocabulary: from regions you computed
    assert isinstance(again.regions, RegionCrops) and again.regions.whole_index == boxes.whole_index
    torch.testing.assert_close(again.logits, out.logits)
    torch.testing.assert_close(model.embed(model.regions(_IMAGES), _IMAGES), model.embed(boxes, _IMAGES))
