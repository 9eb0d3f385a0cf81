"""The README's main job: generated FERPlus-format data, RAN against the whole-face baseline, and pictures.

    python examples/ferplus/train.py --demo [--output-dir OUT] [--seed N] [--device cpu]

1. writes a synthetic FERPlus (``fer2013.csv`` + ``fer2013new.csv`` in the provider's formats, plus occlusion
   and pose lists of its test split in the published formats) into ``OUT/data`` unless it is already there;
2. trains RAN (whole face + the paper's five regions, region biased loss) and the baseline (the same backbone
   on the whole face alone) with the same small backbone and schedule, through the same engine and command-line
   options as a real FERPlus run;
3. prints overall / occlusion / pose accuracy of both, like the paper's Table II, and writes the confusion
   matrices (Figs. 4-5), the training curves and an attention figure (Fig. 6) as PNG files.

The data is a toy stand-in for FERPlus, drawn so that expressions live in local facial parts; the figures show
what the method does on such data, not a replication of the paper's numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from examples.common.engine import RECIPES, RunConfig, load_checkpoint_file, resolve_config, run
from examples.common.plots import plot_attention, plot_curves, read_metrics
from examples.common.synthetic import generate_ferplus
from examples.ferplus.train import make_task

#: Demo settings: small enough for a 2-core CPU in a few minutes, big enough for the table to mean something.
DEMO_DATA = {"n_train": 2400, "n_valid": 400, "n_test": 800}
DEMO_TRAINING = {"backbone": "small", "image_size": 48, "epochs": 12, "batch_size": 64, "lr": 0.05,
                 "milestones": [8, 11], "workers": 0, "device": "cpu", "hflip": True,
                 "region_batching": "per_region"}
SUBSETS = {"occlusion": "jianfei_occlusion_list.txt", "pose30": "pose_30_ferplus_list.txt",
           "pose45": "pose_45_ferplus_list.txt"}


def _data(out: Path, seed: int, sizes: dict[str, int] | None = None) -> Path:
    data = out / "data"
    if (data / "fer2013.csv").exists() and (data / "fer2013new.csv").exists():
        print(f"using the generated data in {data}")
        return data
    start = time.perf_counter()
    info = generate_ferplus(data, seed=seed, **(sizes or DEMO_DATA))
    print(f"generated synthetic FERPlus in {data} ({time.perf_counter() - start:.1f} s): {info['counts']}")
    return data


def _config(args: argparse.Namespace, explicit: set[str], data: Path, out: Path, model: str,
            overrides: dict[str, Any]) -> RunConfig:
    ns = argparse.Namespace(**vars(args))
    ns.data_dir, ns.output_dir, ns.model = data, out / model, model
    ns.subset = [f"{name}={data / file}" for name, file in SUBSETS.items()]
    cfg = resolve_config(ns, RECIPES)
    # options given on the command line win over the demo's settings
    settings = {key: value for key, value in {**DEMO_TRAINING, **overrides}.items() if key not in explicit}
    return dataclasses.replace(cfg, **settings)


def run_demo(args: argparse.Namespace, explicit: set[str] = frozenset(), **overrides: Any) -> dict[str, Any]:
    """Run the demo. ``explicit``: the options given on the command line (they win over the demo's settings);
    ``overrides``: settings for tests (e.g. fewer epochs)."""
    out = Path(args.output_dir or "demo-output")
    data = _data(out, args.seed, overrides.pop("data", None))
    summaries = {}
    timings = {}
    for model in ("ran", "baseline"):
        cfg = _config(args, set(explicit), data, out, model, overrides)
        print(f"\n== training {model} ({cfg.backbone} backbone, {cfg.epochs} epochs, {cfg.image_size} px) ==")
        start = time.perf_counter()
        summaries[model] = run(make_task(cfg), cfg)
        timings[model] = time.perf_counter() - start
    table = _table(summaries)
    print("\n" + table)
    pictures = _pictures(out, summaries)
    result = {"table": table, "summaries": {k: _brief(v) for k, v in summaries.items()},
              "seconds": timings, "pictures": [str(p) for p in pictures]}
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2))
    print("\npictures: " + ", ".join(str(p) for p in pictures))
    print("These are accuracies on generated cartoon faces (a toy stand-in for FERPlus), not a replication "
          "of the paper's numbers.")
    return result


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {"test_accuracy": summary["test"]["accuracy"], "selected_epoch": summary["selected_epoch"],
            "subsets": {k: v["accuracy"] for k, v in summary["subsets"].items()}}


def _table(summaries: dict[str, dict[str, Any]]) -> str:
    columns = ["overall", "occlusion", "pose30", "pose45"]
    rows = [f"{'':10}" + "".join(f"{c:>11}" for c in columns)]
    for model, label in (("baseline", "Baseline"), ("ran", "RAN")):
        s = summaries[model]
        values = [s["test"]["accuracy"], *(s["subsets"][c]["accuracy"] for c in columns[1:])]
        rows.append(f"{label:10}" + "".join(f"{100 * v:>10.2f}%" for v in values))
    n = summaries["ran"]
    counts = ", ".join(f"{c} {n['subsets'][c]['matched']}" for c in columns[1:])
    rows.append(f"(test images: overall {n['test']['images']}, {counts})")
    return "Test accuracy on the generated FERPlus (like the paper's Table II)\n" + "\n".join(rows)


def _pictures(out: Path, summaries: dict[str, dict[str, Any]]) -> list[Path]:
    paths = []
    for model in ("ran", "baseline"):
        paths.append(out / model / "confusion_matrix.png")
    paths.append(plot_curves(read_metrics(out / "ran" / "metrics.jsonl"), out / "training_curves.png",
                             labels=["RAN", "baseline"], extra=[read_metrics(out / "baseline" / "metrics.jsonl")]))
    paths.append(attention_figure(out / "ran" / "checkpoints" / "best.pt", out / "data", out / "attention.png"))
    return paths


def attention_figure(checkpoint: Path, data: Path, path: Path, count: int = 6) -> Path:
    """Fig. 6 for a few occluded and posed test faces of the generated set."""
    from examples.common.models import build_model
    from examples.common.subsets import parse_subset_list
    from examples.ferplus.data import FERPLUS_CLASSES, load_ferplus

    ckpt = load_checkpoint_file(checkpoint)
    cfg = ckpt["config"]
    model = build_model(cfg, len(ckpt["class_names"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    test = load_ferplus(data, "majority", splits=("test",))["test"]
    index = test.key_to_index()
    picks: list[int] = []
    for name in ("jianfei_occlusion_list.txt", "pose_45_ferplus_list.txt"):  # half occluded, half turned faces
        keys = [e.key for e in parse_subset_list(data / name, dataset="ferplus").entries if e.key in index]
        fresh = [index[k] for k in keys if index[k] not in picks]
        picks += fresh[: count // 2]
    dataset = test.dataset(cfg["image_size"], draw_targets=False)
    images = torch.stack([dataset[i][0] for i in picks]).float() / 255
    with torch.no_grad():
        out = model(images)
    probs = torch.softmax(out.logits, -1)
    titles = [f"{FERPLUS_CLASSES[int(test.records[i].label)]} -> {FERPLUS_CLASSES[int(p.argmax())]}"
              for i, p in zip(picks, probs, strict=True)]
    return plot_attention(images, out.regions.boxes, out.relation_attention.weights, path, titles=titles,
                          mask=out.regions.mask, crops=out.regions.crops)
