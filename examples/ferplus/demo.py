"""The README's main job: generated FERPlus-format data, RAN against the whole-face baseline, and pictures.

    python examples/ferplus/train.py --demo [--output-dir OUT] [--seed N | --seeds 0,1,2] [--device cpu]

1. writes a synthetic FERPlus (``fer2013.csv`` + ``fer2013new.csv`` in the provider's formats, plus occlusion
   and pose lists of its test split in the published formats and the occluders' ground truth
   ``occluders.npz``) into ``OUT/data`` unless it is already there;
2. trains three models with the same small backbone, schedule and command-line options, through the same engine
   as a real FERPlus run: the baseline (the backbone on the whole face alone), RAN (whole face + the paper's
   five regions, one backbone pass per region, region biased loss) and RAN one-pass (the same regions pooled
   from one feature map of the whole face, ``--regions-on features``);
3. prints overall / occlusion / pose accuracy of the three, like the paper's Table II, and writes the confusion
   matrices (Figs. 4-5), the training curves and an attention figure per RAN model (Fig. 6) as PNG files;
4. measures the mechanism (the paper's Fig. 6 in numbers; :mod:`examples.ferplus.mechanism`): on every
   occluded test face it puts each non-whole-face region's occluder coverage beside its final attention weight
   and reports, over the faces, the mean weight of the most and of the least covered region and the mean
   Spearman rank correlation between coverage and weight; the same for the weights relative to each region's
   mean weight on the clean test faces (a model's prior over regions apart); and where each region's gate
   looks (the share of its input gradient inside its box, and the occluder coverage it sees there).

Every model trains at 40 px (the 48 px faces resized) and channels-last (the same arithmetic in another memory
layout): on a CPU channels-last makes the image-level RAN's step about 1.3 to 1.5 times as fast
(``benchmarks/demo_step.py``), and 40 px costs about 0.7 of 48 px; together they keep the default demo under
five minutes on two cores without AVX-512.

With ``--seeds 0,1,2`` the whole demo (data included) runs once per seed into ``OUT/seed<N>/`` and the mean and
standard deviation of every figure are printed and written to ``OUT/demo_summary.json``.

The data is a toy stand-in for FERPlus, drawn so that expressions live in local facial parts; the figures show
what the method does on such data, not a replication of the paper's numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence, Set
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from examples.common.engine import RECIPES, RunConfig, load_checkpoint_file, required, resolve_config, run
from examples.common.models import build_model
from examples.common.plots import plot_attention, plot_curves, read_metrics
from examples.common.subsets import parse_subset_list
from examples.common.synthetic import Splits, generate_ferplus, load_occluders
from examples.ferplus.data import FERPLUS_CLASSES, FERPlusSplit, load_ferplus
from examples.ferplus.mechanism import (
    attention_on,
    field_figures,
    gate_saliency,
    mechanism_figures,
    region_coverage,
    relative_weights,
)
from examples.ferplus.task import make_task

#: Demo settings: small enough for a 2-core CPU in a few minutes, big enough for the table to mean something.
#: They apply to every model alike.
DEMO_DATA = Splits(train=2400, valid=400, test=800)
DEMO_TRAINING = {
    "backbone": "small",
    "image_size": 40,
    "epochs": 12,
    "batch_size": 64,
    "lr": 0.05,
    "milestones": [8, 11],
    "workers": 0,
    "device": "cpu",
    "hflip": True,
    "region_batching": "per_region",
    "channels_last": True,
}
#: The demo's models: (name, label in the table, what sets it apart); everything else is shared.
DEMO_MODELS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("baseline", "Baseline", {"model": "baseline", "regions_on": "image"}),
    ("ran", "RAN", {"model": "ran", "regions_on": "image"}),
    ("ran_one_pass", "RAN one-pass", {"model": "ran", "regions_on": "features"}),
)
RAN_MODELS = ("ran", "ran_one_pass")
SUBSETS = {
    "occlusion": "jianfei_occlusion_list.txt",
    "pose30": "pose_30_ferplus_list.txt",
    "pose45": "pose_45_ferplus_list.txt",
}
COLUMNS = ("overall", "occlusion", "pose30", "pose45")
ATTENTION_KEYS = ("most_covered", "least_covered", "spearman")
#: Every attention figure of a RAN model (:func:`occlusion_attention`) that ``--seeds`` averages.
ATTENTION_FIGURES = (
    *ATTENTION_KEYS,
    "faces",
    "whole_face",
    "relative_most",
    "relative_least",
    "relative_spearman",
    "clean_faces",
    "field_in_box",
    "effective_most",
    "effective_least",
)


def _load_model(checkpoint: Path) -> tuple[nn.Module, RunConfig, list[str]]:
    """The model of a checkpoint file (``last.pt`` beside it if it does not exist), in eval mode, with the run's
    configuration and class names."""
    if not checkpoint.is_file():
        checkpoint = checkpoint.with_name("last.pt")
    ckpt = load_checkpoint_file(checkpoint)
    cfg = RunConfig.from_dict(ckpt["config"])
    model = build_model(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, list(ckpt["class_names"])


def _whole_index(cfg: RunConfig, k: int) -> int:
    return 0 if cfg.whole_position == "first" else k - 1


def _test_split(data: Path, test: FERPlusSplit | None) -> FERPlusSplit:
    """The test split of ``data`` (majority labels, as every reader of a test split has it), unless given."""
    return test if test is not None else load_ferplus(data, "majority", splits=("test",))["test"]


def split_test_faces(
    data: Path, image_size: int, test: FERPlusSplit | None = None
) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """The test split of ``data`` (``test`` if it is read already): the faces of the occlusion list that carry
    an occluder, as images (uint8, ``image_size``) and occluder opacity ``(N, 48, 48)``; and the images of the
    faces without an occluder (all-zero opacity, turned or not)."""
    test = _test_split(data, test)
    index = test.key_to_index()
    occluders = load_occluders(data, "test")
    alpha_of = {key: i for i, key in enumerate(occluders.keys)}
    covered = {key: bool(occluders.alpha[i].any()) for key, i in alpha_of.items()}
    listed = [e.key for e in parse_subset_list(data / SUBSETS["occlusion"], dataset="ferplus").entries]
    occluded = [k for k in dict.fromkeys(listed) if k in index and covered.get(k, False)]
    in_order = test.keys()  # the split's image keys
    clean = [k for k in in_order if covered.get(k) is False]
    dataset = test.dataset(image_size, draw_targets=False)

    def images(keys: list[str]) -> Tensor:
        if not keys:
            return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)
        return torch.stack([dataset[index[k]][0] for k in keys])

    alpha = occluders.alpha[[alpha_of[k] for k in occluded]] if occluded else torch.zeros(0, *occluders.alpha.shape[1:])
    return (images(occluded), alpha), images(clean)


def occlusion_attention(run_dir: Path, data: Path, test: FERPlusSplit | None = None) -> dict[str, Any]:
    """How the RAN model trained in ``run_dir`` weights the regions of the occluded test faces of ``data``
    against their occluder coverage (the whole-face region left out):

    - :func:`mechanism_figures` of the final weights, and the whole face's mean weight (``whole_face``);
    - the same of the weights relative to each region's mean weight on the clean test faces
      (:func:`relative_weights`; ``relative_most``, ``relative_least``, ``relative_spearman``,
      ``clean_faces``; ``clean_weights``: each region's mean weight on the clean faces, the model's prior
      over regions): a region the model weights highly on every face, covered or not, no longer counts as
      "weighted up" because the occluder tends to cover it;
    - :func:`field_figures` of the gates' input gradients (``field_in_box``, ``effective_most``,
      ``effective_least``): whether each region's gate looks inside its own box and sees the occluder there.

    ``test``: the test split of ``data`` when it is read already.
    """
    model, cfg, _ = _load_model(run_dir / "checkpoints" / "best.pt")
    size = cfg.image_size
    (images, alpha), clean = split_test_faces(data, size, test)
    boxes, weights, mask = attention_on(model, images)
    whole = _whole_index(cfg, boxes.shape[1])
    keep = [j for j in range(boxes.shape[1]) if j != whole]
    coverage = region_coverage(alpha, boxes[:, keep], size)
    figures = mechanism_figures(coverage, weights[:, keep], mask[:, keep])
    figures["whole_face"] = float(weights[:, whole].double().mean()) if len(weights) else None
    _, clean_weights, clean_mask = attention_on(model, clean)
    relative = relative_weights(weights, mask, clean_weights, clean_mask)[:, keep]
    rel = mechanism_figures(coverage, relative, mask[:, keep] & relative.isfinite())
    figures.update(
        relative_most=rel["most_covered"],
        relative_least=rel["least_covered"],
        relative_spearman=rel["spearman"],
        clean_faces=len(clean),
        clean_weights=[float(clean_weights[clean_mask[:, j], j].double().mean()) for j in keep],
    )
    if len(images):  # where each region's gate looks, and how much of that the occluder covers
        saliency = gate_saliency(model, images)[:, keep]
        figures.update(field_figures(saliency, boxes[:, keep], alpha, coverage, mask[:, keep]))
    return figures


# ------------------------------------------------------------------------------------------------------------
# The demo


def _data(out: Path, seed: int, sizes: Splits | None = None) -> Path:
    data = out / "data"
    if (data / "fer2013.csv").exists() and (data / "fer2013new.csv").exists():
        print(f"using the generated data in {data}")
        return data
    start = time.perf_counter()
    info = generate_ferplus(data, sizes or DEMO_DATA, seed=seed)
    print(f"generated synthetic FERPlus in {data} ({time.perf_counter() - start:.1f} s): {info['counts']}")
    return data


def _config(
    args: argparse.Namespace,
    explicit: set[str],
    data: Path,
    out: Path,
    name: str,
    model_settings: dict[str, Any],
    overrides: dict[str, Any],
) -> RunConfig:
    ns = argparse.Namespace(**vars(args))
    ns.data_dir, ns.output_dir = data, out / name
    ns.subset = [f"{subset}={data / file}" for subset, file in SUBSETS.items()]
    for key, value in model_settings.items():
        setattr(ns, key, value)
    cfg = resolve_config(ns, RECIPES)
    # options given on the command line win over the demo's settings; what sets a model apart always applies
    settings = {key: value for key, value in {**DEMO_TRAINING, **overrides}.items() if key not in explicit}
    return dataclasses.replace(cfg, **settings, **model_settings)


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> ``[0, 1, 2]``: at least one seed, each a non-negative integer, no repeats."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds expected integers separated by commas (e.g. 0,1,2), got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds expected distinct non-negative integers, got {text!r}")
    return seeds


def run_demo(args: argparse.Namespace, explicit: Set[str] = frozenset(), **overrides: Any) -> dict[str, Any]:
    """Run the demo. ``explicit``: the options given on the command line (they win over the demo's settings);
    ``overrides``: settings for tests (e.g. fewer epochs; ``data``: the generated set's sizes). With
    ``args.seeds`` (``"0,1,2"``) the whole demo runs once per seed and the result holds every seed's figures,
    their mean and their standard deviation."""
    seeds_text = getattr(args, "seeds", None)
    if seeds_text is None:
        out = Path(args.output_dir or "demo-output")
        return _run_one(args, set(explicit), out, dict(overrides))
    seeds = parse_seeds(seeds_text)
    out = Path(args.output_dir or "demo-output")
    start = time.perf_counter()
    per_seed = {}
    for seed in seeds:
        print(f"\n######## seed {seed} ########")
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed, "seeds": None})
        per_seed[seed] = _run_one(seed_args, set(explicit) - {"seed"}, out / f"seed{seed}", dict(overrides))
    figures = {seed: result["figures"] for seed, result in per_seed.items()}
    mean, std = aggregate(list(figures.values()))
    table = seeds_table(seeds, mean, std)
    print("\n" + table)
    result = {
        "seeds": seeds,
        "table": table,
        "mean": mean,
        "std": std,
        "per_seed": {str(s): f for s, f in figures.items()},
        "occlusion_attention": {m: {k: mean[m][k] for k in ATTENTION_FIGURES if k in mean[m]} for m in RAN_MODELS},
        "seconds": time.perf_counter() - start,
        "settings": {"data": dataclasses.asdict(overrides.get("data", DEMO_DATA)), "training": DEMO_TRAINING},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2))
    return result


def _run_one(args: argparse.Namespace, explicit: set[str], out: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    begin = time.perf_counter()
    data = _data(out, args.seed, overrides.pop("data", None))
    summaries: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    splits: dict[str, FERPlusSplit] = {}  # read once: every model has the same data, label mode and layout
    for name, label, settings in DEMO_MODELS:
        cfg = _config(args, explicit, data, out, name, settings, overrides)
        if not cfg.resume:  # a demo rerun starts each model afresh in its folder
            cfg = dataclasses.replace(cfg, overwrite=True)
        print(f"\n== training {label} ({cfg.backbone} backbone, {cfg.epochs} epochs, {cfg.image_size} px) ==")
        start = time.perf_counter()
        splits = splits or load_ferplus(
            required(cfg.data_dir, "data_dir"),
            required(cfg.label_mode, "label_mode"),
            layout=required(cfg.layout, "layout"),
        )
        summary = run(make_task(cfg, splits), cfg)
        if summary is None:  # only a non-main torchrun process has none, and the demo runs in one process
            raise RuntimeError(f"the {name} run returned no summary")
        summaries[name] = summary
        timings[name] = time.perf_counter() - start
    attention = {name: occlusion_attention(out / name, data, splits["test"]) for name in RAN_MODELS}
    table = _table(summaries) + "\n\n" + _attention_table(attention)
    print("\n" + table)
    pictures = _pictures(out, data, splits["test"])
    figures = {name: {**_accuracies(summaries[name]), **(attention.get(name) or {})} for name, _, _ in DEMO_MODELS}
    timings["total"] = time.perf_counter() - begin
    result = {
        "table": table,
        "summaries": {k: _brief(v) for k, v in summaries.items()},
        "occlusion_attention": attention,
        "figures": figures,
        "seed": args.seed,
        "seconds": timings,
        "pictures": [str(p) for p in pictures],
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2))
    print("\npictures: " + ", ".join(str(p) for p in pictures))
    print(
        "These are accuracies on generated cartoon faces (a toy stand-in for FERPlus), not a replication "
        "of the paper's numbers."
    )
    return result


def _accuracies(summary: dict[str, Any]) -> dict[str, float]:
    return {"overall": summary["test"]["accuracy"], **{c: summary["subsets"][c]["accuracy"] for c in COLUMNS[1:]}}


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "test_accuracy": summary["test"]["accuracy"],
        "selected_epoch": summary["selected_epoch"],
        "subsets": {k: v["accuracy"] for k, v in summary["subsets"].items()},
    }


def _table(summaries: dict[str, dict[str, Any]]) -> str:
    rows = [f"{'':14}" + "".join(f"{c:>11}" for c in COLUMNS)]
    for name, label, _ in DEMO_MODELS:
        values = _accuracies(summaries[name])
        rows.append(f"{label:14}" + "".join(f"{100 * values[c]:>10.2f}%" for c in COLUMNS))
    n = summaries["ran"]
    counts = ", ".join(f"{c} {n['subsets'][c]['matched']}" for c in COLUMNS[1:])
    rows.append(f"(test images: overall {n['test']['images']}, {counts})")
    return "Test accuracy on the generated FERPlus (like the paper's Table II)\n" + "\n".join(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


#: The attention figures as printed: (title, [(key in the figures, column header, digits)]) per block.
ATTENTION_BLOCKS: tuple[tuple[str, tuple[tuple[str, str, int], ...]], ...] = (
    (
        "Attention on the occluded test faces (final weights of the 5 regions; the whole face apart)",
        (
            ("most_covered", "most covered", 3),
            ("least_covered", "least covered", 3),
            ("spearman", "Spearman", 2),
            ("whole_face", "whole face", 3),
        ),
    ),
    (
        "The same relative to each region's mean weight on the clean test faces (1 = as on a clean face)",
        (
            ("relative_most", "most covered", 3),
            ("relative_least", "least covered", 3),
            ("relative_spearman", "Spearman", 2),
        ),
    ),
    (
        "Where each region's gate looks (its input gradient): share inside its own box, occluder coverage seen",
        (
            ("field_in_box", "inside its box", 3),
            ("effective_most", "most covered", 3),
            ("effective_least", "least covered", 3),
        ),
    ),
)


def _attention_rows(models: Sequence[str], cell: Callable[[str, str, int], str], width: int) -> list[str]:
    labels = {name: label for name, label, _ in DEMO_MODELS}
    rows: list[str] = []
    for title, columns in ATTENTION_BLOCKS:
        rows += [""] if rows else []
        rows += [title, f"{'':14}" + "".join(f"{h:>{width}}" for _, h, _ in columns)]
        rows += [f"{labels[m]:14}" + "".join(f"{cell(m, key, d):>{width}}" for key, _, d in columns) for m in models]
    return rows


def _attention_table(attention: dict[str, dict[str, Any]]) -> str:
    rows = _attention_rows(list(attention), lambda m, key, d: _fmt(attention[m].get(key), d), 15)
    labels = {name: label for name, label, _ in DEMO_MODELS}
    for name, a in attention.items():
        if a.get("clean_weights"):
            rows.append(
                f"{labels[name]} on the clean faces, weight of each region: "
                + " ".join(f"{w:.3f}" for w in a["clean_weights"])
            )
    some = next(iter(attention.values()))
    rows.append(
        f"(per face: weight of its most / least covered region, coverage {_fmt(some['coverage_most'], 2)} / "
        f"{_fmt(some['coverage_least'], 2)} on average, {some['faces']} occluded and "
        f"{some.get('clean_faces', 'n/a')} clean faces; Spearman: rank correlation of coverage and weight, "
        f"negative = covered regions weigh less; {some['skipped']} faces with equal coverage skipped; "
        "uniform weight 0.167)"
    )
    return "\n".join(rows)


def aggregate(
    runs: Sequence[dict[str, dict[str, Any]]],
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, float | None]]]:
    """Mean and sample standard deviation (n - 1; ``None`` for a single run) of every numeric figure over runs
    (``{model: {figure: value}}`` each); a figure missing (``None``) in a run is left out of its statistics,
    and a figure that is not a number (a per-region list) out of the result."""
    mean: dict[str, dict[str, float | None]] = {}
    std: dict[str, dict[str, float | None]] = {}
    for model in runs[0]:
        mean[model], std[model] = {}, {}
        for key, first in runs[0][model].items():
            if not isinstance(first, int | float | None):
                continue  # per-region lists stay in each seed's summary
            values = [float(r[model][key]) for r in runs if r[model].get(key) is not None]
            mean[model][key] = sum(values) / len(values) if values else None
            if len(values) > 1:
                m = sum(values) / len(values)
                std[model][key] = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
            else:
                std[model][key] = None
    return mean, std


def seeds_table(seeds: Sequence[int], mean: dict[str, dict[str, Any]], std: dict[str, dict[str, Any]]) -> str:
    def cell(model: str, key: str, scale: float, digits: int) -> str:
        m, s = mean[model].get(key), std[model].get(key)
        if m is None:
            return "n/a"
        return f"{scale * m:.{digits}f}" + ("" if s is None else f" ± {scale * s:.{digits}f}")

    seed_list = ",".join(map(str, seeds))
    rows = [
        f"Mean ± standard deviation over {len(seeds)} seeds ({seed_list}): test accuracy, %",
        f"{'':14}" + "".join(f"{c:>16}" for c in COLUMNS),
    ]
    for name, label, _ in DEMO_MODELS:
        rows.append(f"{label:14}" + "".join(f"{cell(name, c, 100, 2):>16}" for c in COLUMNS))
    rows += ["", "Attention (mean ± std over seeds)"]
    rows += _attention_rows(RAN_MODELS, lambda m, key, d: cell(m, key, 1, d), 17)
    return "\n".join(rows)


def _pictures(out: Path, data: Path, test: FERPlusSplit) -> list[Path]:
    paths = [out / name / "confusion_matrix.png" for name, _, _ in DEMO_MODELS]
    runs = [read_metrics(out / name / "metrics.jsonl") for name, _, _ in DEMO_MODELS]
    paths.append(
        plot_curves(runs[0], out / "training_curves.png", labels=[label for _, label, _ in DEMO_MODELS], extra=runs[1:])
    )
    paths.append(attention_figure(out / "ran" / "checkpoints" / "best.pt", data, out / "attention.png", test=test))
    paths.append(
        attention_figure(
            out / "ran_one_pass" / "checkpoints" / "best.pt", data, out / "attention_one_pass.png", test=test
        )
    )
    return paths


def attention_figure(
    checkpoint: Path, data: Path, path: Path, count: int = 6, test: FERPlusSplit | None = None
) -> Path:
    """Fig. 6 for a few occluded and posed test faces of the generated set, each region's occluder coverage
    beside its weight and the occluder tinted on the face (``test``: the test split, when it is read already)."""
    model, cfg, _ = _load_model(checkpoint)
    test = _test_split(data, test)
    index = test.key_to_index()
    picks: list[int] = []
    wanted = {SUBSETS["occlusion"]: count - count // 3, SUBSETS["pose45"]: count // 3}  # mostly occluded faces
    for name, how_many in wanted.items():
        keys = [e.key for e in parse_subset_list(data / name, dataset="ferplus").entries if e.key in index]
        fresh = [index[k] for k in dict.fromkeys(keys) if index[k] not in picks]
        picks += fresh[:how_many]
    dataset = test.dataset(cfg.image_size, draw_targets=False)
    images = torch.stack([dataset[i][0] for i in picks]).float() / 255
    occluders = load_occluders(data, "test")
    alpha_of = {key: i for i, key in enumerate(occluders.keys)}
    keys = test.keys()
    alpha = torch.stack([occluders.alpha[alpha_of[keys[i]]] for i in picks])
    with torch.no_grad():
        out = model(images)
    coverage = region_coverage(alpha, out.regions.boxes, cfg.image_size)
    probs = torch.softmax(out.logits, -1)
    titles = [
        f"{FERPLUS_CLASSES[int(test.records[i].label)]} -> {FERPLUS_CLASSES[int(p.argmax())]}"
        for i, p in zip(picks, probs, strict=True)
    ]
    return plot_attention(
        images,
        out.regions.boxes,
        out.relation_attention.weights,
        path,
        titles=titles,
        mask=out.regions.mask,
        crops=out.regions.crops,
        coverage=coverage,
        occluder=alpha,
    )
