"""The demo's measurement of the mechanism (coverage against attention) against hand-computed references, and
``--demo --seeds`` on a tiny configuration."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest
import torch
from examples.common.synthetic import Splits
from examples.ferplus.demo import ATTENTION_KEYS, DEMO_MODELS, aggregate, parse_seeds
from examples.ferplus.mechanism import (
    average_ranks,
    box_weights,
    field_figures,
    gate_saliency,
    mechanism_figures,
    region_coverage,
    relative_weights,
    spearman,
)
from examples.ferplus.train import main

from ..background import python_code

TINY = {"data": Splits(train=96, valid=32, test=64), "epochs": 1, "image_size": 32, "milestones": [1]}


def rho_without_ties(a: list[float], b: list[float]) -> float:
    """The textbook formula 1 - 6 sum d^2 / (n (n^2 - 1)), valid without ties."""
    n = len(a)
    rank_a = {v: i + 1 for i, v in enumerate(sorted(a))}
    rank_b = {v: i + 1 for i, v in enumerate(sorted(b))}
    d2 = sum((rank_a[x] - rank_b[y]) ** 2 for x, y in zip(a, b, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_spearman_without_ties_matches_the_textbook_formula():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = torch.rand(5, generator=gen, dtype=torch.float64), torch.rand(5, generator=gen, dtype=torch.float64)
        assert spearman(a, b) == pytest.approx(rho_without_ties(a.tolist(), b.tolist()), abs=1e-12)
    x = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert spearman(x, x * 7) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)


def test_spearman_with_ties_uses_average_ranks():
    # a has ranks 1, 2.5, 2.5, 4; b has 4, 3, 2, 1; centred: (-1.5, 0, 0, 1.5) and (1.5, 0.5, -0.5, -1.5):
    # covariance -4.5, sums of squares 4.5 and 5 -> -4.5 / sqrt(22.5)
    a, b = torch.tensor([0.1, 0.2, 0.2, 0.4]), torch.tensor([4.0, 3.0, 2.0, 1.0])
    assert average_ranks(a).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 3.0])).tolist() == [3.0, 1.0, 3.0, 3.0]
    assert spearman(a, b) == pytest.approx(-4.5 / math.sqrt(22.5), abs=1e-12)
    assert spearman(a, torch.full((4,), 0.2)) is None  # no ordering in the weights
    with pytest.raises(ValueError, match="1-d"):
        spearman(a, b[:3])


def test_mechanism_figures_on_a_hand_made_example():
    coverage = torch.tensor(
        [
            [0.5, 0.5, 0.1, 0.3, 0.2],  # two regions share the highest coverage
            [0.0, 0.9, 0.2, 0.2, 0.4],  # one most and one least covered region
            [0.3, 0.3, 0.3, 0.3, 0.3],  # all equal: skipped
            [0.1, 0.2, 0.3, 0.4, 0.5],  # weights all equal: Spearman counts 0
        ],
        dtype=torch.float64,
    )
    weights = torch.tensor(
        [
            [0.10, 0.12, 0.30, 0.20, 0.28],
            [0.25, 0.05, 0.20, 0.30, 0.20],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ],
        dtype=torch.float64,
    )
    got = mechanism_figures(coverage, weights)
    most = [(0.10 + 0.12) / 2, 0.05, 0.2]
    least = [0.30, 0.25, 0.2]
    rho = [spearman(coverage[0], weights[0]), spearman(coverage[1], weights[1]), 0.0]
    # face 0 by hand: coverage ranks 4.5 4.5 1 3 2, weight ranks 1 2 5 3 4; centred (mean 3) their products
    # sum to -9.5, their squares to 9.5 and 10
    assert rho[0] == pytest.approx(-9.5 / math.sqrt(95.0), abs=1e-12)
    assert got["faces"] == 3 and got["skipped"] == 1
    assert got["most_covered"] == pytest.approx(sum(most) / 3, abs=1e-12)
    assert got["least_covered"] == pytest.approx(sum(least) / 3, abs=1e-12)
    assert got["spearman"] == pytest.approx(sum(rho) / 3, abs=1e-12)
    assert got["coverage_most"] == pytest.approx((0.5 + 0.9 + 0.5) / 3)
    assert got["coverage_least"] == pytest.approx((0.1 + 0.0 + 0.1) / 3)
    # a missing region is left out of its face
    present = torch.ones(4, 5, dtype=torch.bool)
    present[1, 1] = False
    masked = mechanism_figures(coverage, weights, present)
    assert masked["most_covered"] == pytest.approx((0.11 + 0.20 + 0.2) / 3, abs=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        mechanism_figures(coverage, weights[:, :4])


def test_region_coverage_on_hand_made_masks():
    mask = torch.zeros(2, 4, 4)
    mask[0, :2] = 1.0  # the top half
    mask[1, :, 3] = 0.5  # the right column, half transparent
    # boxes in an 8 x 8 network input: each input pixel is half a mask pixel
    boxes = torch.tensor(
        [
            [[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 4.0], [0.0, 4.0, 8.0, 8.0], [0.0, 2.0, 8.0, 6.0]],
            [[0.0, 0.0, 8.0, 8.0], [6.0, 0.0, 8.0, 8.0], [0.0, 0.0, 6.0, 8.0], [4.0, 0.0, 8.0, 4.0]],
        ]
    )
    got = region_coverage(mask, boxes, 8)
    # reference: the same boxes in mask pixels (halved, integer here) by plain slicing
    want = torch.tensor(
        [
            [float(mask[n, y1 // 2 : y2 // 2, x1 // 2 : x2 // 2].mean()) for x1, y1, x2, y2 in boxes[n].long().tolist()]
            for n in range(2)
        ],
        dtype=torch.float64,
    )
    assert torch.equal(got, want)
    assert got.tolist() == [[0.5, 1.0, 0.0, 0.5], [0.125, 0.5, 0.0, 0.25]]
    # a non-square input: (W, H)
    assert region_coverage(mask[:1], torch.tensor([[[0.0, 0.0, 8.0, 2.0]]]), (8, 4)).item() == 1.0


def overlap_loop(box: list[float], height: int, width: int) -> list[list[float]]:
    """The area each pixel [x, x+1) x [y, y+1) shares with the box, one pixel at a time in Python floats."""
    x1, y1, x2, y2 = box
    return [
        [max(0.0, min(x2, x + 1) - max(x1, x)) * max(0.0, min(y2, y + 1) - max(y1, y)) for x in range(width)]
        for y in range(height)
    ]


def test_box_weights_against_a_pixel_loop():
    boxes = torch.tensor(
        [[0.0, 0.0, 3.0, 2.0], [0.5, 1.25, 2.75, 3.5], [-2.0, -1.0, 1.5, 9.0], [5.0, 5.0, 7.0, 7.0]],
        dtype=torch.float64,
    )
    got = box_weights(boxes, 4, 5)
    assert got.shape == (4, 4, 5) and got.dtype == torch.float64
    for box, grid in zip(boxes.tolist(), got, strict=True):
        want = torch.tensor(overlap_loop(box, 4, 5), dtype=torch.float64)
        assert torch.allclose(grid, want, rtol=0, atol=1e-15)
    assert box_weights(boxes[None], 4, 5).shape == (1, 4, 4, 5)  # batched


def test_field_figures_on_hand_made_maps():
    # one face, two regions of a 4 x 4 input; the occluder covers the left half
    saliency = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    saliency[0, 0, :, 0] = 1.0  # region 0 looks at column 0 only: inside its box [0, 2] x [0, 4]
    saliency[0, 1, :, 1] = 1.0  # region 1 looks at columns 1 and 3, its box is [2, 4] x [0, 4]
    saliency[0, 1, :, 3] = 3.0
    boxes = torch.tensor([[[0.0, 0.0, 2.0, 4.0], [2.0, 0.0, 4.0, 4.0]]])
    alpha = torch.zeros(1, 4, 4)
    alpha[0, :, :2] = 1.0
    coverage = region_coverage(alpha, boxes, 4)
    assert coverage.tolist() == [[1.0, 0.0]]
    got = field_figures(saliency, boxes, alpha, coverage)
    # region 0: all inside, sees only occluder; region 1: 3/4 inside, sees the occluder with 1/4 of its field
    assert got["field_in_box"] == pytest.approx((1.0 + 0.75) / 2)
    assert got["effective_most"] == pytest.approx(1.0) and got["effective_least"] == pytest.approx(0.25)
    # the occluder's opacity at another resolution is resized to the input (8 x 8 -> 4 x 4)
    fine = alpha.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert field_figures(saliency, boxes, fine, coverage) == pytest.approx(got)
    # a region whose map is all zero is left out; a face with equal coverage everywhere is not compared
    blind = saliency.clone()
    blind[0, 1] = 0
    half = field_figures(blind, boxes, alpha, coverage)
    assert half["field_in_box"] == pytest.approx(1.0) and half["effective_most"] is None
    with pytest.raises(ValueError, match="field_figures"):
        field_figures(saliency, boxes[:, :1], alpha, coverage)


def test_relative_weights_divide_by_the_clean_mean():
    weights = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], dtype=torch.float64)
    present = torch.tensor([[True, True, True], [True, False, True]])
    reference = torch.tensor([[0.2, 0.4, 0.4], [0.4, 0.0, 0.6], [0.0, 0.9, 0.1]], dtype=torch.float64)
    ref_present = torch.tensor([[True, True, True], [True, False, True], [False, True, True]])
    got = relative_weights(weights, present, reference, ref_present)
    prior = [0.3, (0.4 + 0.9) / 2, (0.4 + 0.6 + 0.1) / 3]  # over the faces where each region is present
    assert got[0].tolist() == pytest.approx([0.2 / prior[0], 0.3 / prior[1], 0.5 / prior[2]])
    assert got[1, 0].item() == pytest.approx(0.1 / prior[0]) and math.isnan(got[1, 1].item())
    never = relative_weights(weights, present, reference, torch.zeros_like(ref_present))
    assert bool(never.isnan().all())
    with pytest.raises(ValueError, match="relative_weights"):
        relative_weights(weights, present, reference[:, :2], ref_present[:, :2])


@pytest.mark.slow
@pytest.mark.parametrize("regions_on", ["image", "features"])
def test_gate_saliency_matches_the_jacobian_of_each_face(regions_on):
    from examples.common.engine import RunConfig
    from examples.common.models import build_model

    torch.manual_seed(0)
    cfg = RunConfig(model="ran", backbone="small", image_size=32, regions_on=regions_on)
    model = build_model(cfg, 8)
    with torch.no_grad():  # non-trivial BatchNorm statistics for evaluation mode
        model.train()(torch.rand(16, 3, 32, 32))
    images = torch.rand(3, 3, 32, 32)
    got = gate_saliency(model.eval(), images, batch_size=2)  # two chunks
    assert got.shape == (3, 6, 32, 32) and got.dtype == torch.float64
    for n in range(3):  # each face alone, by autograd's full Jacobian
        jac = torch.autograd.functional.jacobian(lambda x: model(x[None]).self_attention.gates[0], images[n])
        assert torch.allclose(got[n], jac.abs().sum(1).double(), rtol=1e-5, atol=1e-9)
    assert bool((got.sum((-2, -1)) > 0).all())
    if regions_on == "image":  # a crop's gate sees nothing beyond one pixel around its box (bilinear taps)
        boxes = model.cropper.boxes(images)[0]
        grown = torch.cat([boxes[..., :2] - 1, boxes[..., 2:] + 1], -1)
        outside = box_weights(grown, 32, 32) == 0
        assert float(got.masked_fill(~outside, 0).abs().max()) == 0.0


def test_parse_seeds_and_the_command_line():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3") == [3]
    for bad in ("", "0,0", "a,b", "-1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["--demo", "--seeds", "1,x"])
    assert exit_info.value.code == 2


def test_aggregate_mean_and_sample_std():
    runs = [
        {"ran": {"overall": 0.5, "spearman": -0.2, "faces": 10, "clean_weights": [0.1, 0.9]}},
        {"ran": {"overall": 0.7, "spearman": None, "faces": 12, "clean_weights": [0.2, 0.8]}},
        {"ran": {"overall": 0.6, "spearman": -0.4, "faces": 11, "clean_weights": [0.3, 0.7]}},
    ]
    mean, std = aggregate(runs)
    assert "clean_weights" not in mean["ran"] and "clean_weights" not in std["ran"]  # lists stay per seed
    assert mean["ran"]["overall"] == pytest.approx(0.6)
    assert std["ran"]["overall"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6]))
    assert mean["ran"]["spearman"] == pytest.approx(-0.3)  # the missing one left out
    assert std["ran"]["spearman"] == pytest.approx(statistics.stdev([-0.2, -0.4]))
    single_mean, single_std = aggregate(runs[:1])
    assert single_mean["ran"]["overall"] == 0.5 and single_std["ran"]["overall"] is None


#: ``--demo --seeds 0,1`` on the TINY settings (argv: output folder, TINY as JSON), as the test below called it,
#: writing what ``run_demo`` returns next to the output folder.
SEEDS = """
import dataclasses, json, torch
from examples.common.synthetic import Splits
from examples.ferplus.demo import run_demo
from examples.ferplus.train import build_parser
torch.set_num_threads(1)
args = build_parser().parse_args(["--demo", "--output-dir", sys.argv[1], "--seeds", "0,1"])
overrides = json.loads(sys.argv[2])
returned = run_demo(args, {"output_dir", "seeds"}, **{**overrides, "data": Splits(**overrides["data"])})
with open("returned.json", "w") as f:
    json.dump(returned["seeds"], f)
"""


def seeds_run(folder):
    tiny = {**TINY, "data": dataclasses.asdict(TINY["data"])}
    return python_code(SEEDS, str(folder / "seeds"), json.dumps(tiny))


#: Two whole demos take a quarter of a minute in a process of their own: they run while the suite does
#: (tests/background.py), on the core the one-thread tests leave idle.
BACKGROUND = {"test_demo_over_seeds": seeds_run}


@pytest.mark.slow
def test_demo_over_seeds(request, background):
    done = background.result(request.node)
    assert done.returncode == 0, done.stderr
    out = background.folder(request.node) / "seeds"
    result = {"seeds": json.loads((out.parent / "returned.json").read_text())}
    assert result["seeds"] == [0, 1]
    saved = json.loads((out / "demo_summary.json").read_text())
    per_seed = [json.loads((out / f"seed{s}" / "demo_summary.json").read_text())["figures"] for s in (0, 1)]
    for name, _, _ in DEMO_MODELS:
        for column in ("overall", "occlusion", "pose30", "pose45"):
            values = [run[name][column] for run in per_seed]
            assert saved["mean"][name][column] == pytest.approx(sum(values) / 2)
            assert saved["std"][name][column] == pytest.approx(statistics.stdev(values))
        # every seed is a whole demo of its own: its own data, its own run
        assert (out / "seed0" / name / "summary.json").is_file() and (out / "seed1" / name / "summary.json").is_file()
    assert json.loads((out / "seed1" / "ran" / "config.json").read_text())["seed"] == 1
    for name in ("ran", "ran_one_pass"):
        entry = saved["occlusion_attention"][name]
        assert set(ATTENTION_KEYS) | {"faces"} <= set(entry)
        values = [run[name]["spearman"] for run in per_seed]
        assert entry["spearman"] == pytest.approx(sum(values) / 2)
    printed = done.stdout
    assert "over 2 seeds" in printed and "RAN one-pass" in printed and "±" in printed
