"""Training step of the demo's three models, channels-first against channels-last memory format.

    python benchmarks/demo_step.py [--repeats 15] [--json benchmarks/results/cpu_demo_step.json]

The demo (``python examples/ferplus/train.py --demo``) trains a baseline, an image-level RAN and a one-pass
RAN with the small CNN at 40 px, batch 64, per-region BatchNorm. This times one full training step of each
(forward, the paper's loss, backward, SGD step with momentum), built exactly as the demo builds them, in the
default NCHW layout and in channels-last (``--channels-last``: the model and its inputs converted, the same
arithmetic), as medians of interleaved runs. It is why the demo trains channels-last: on CPU, PyTorch's NCHW
max pooling and convolution backward are slow for these small maps.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from examples.common.engine import RunConfig, Task  # noqa: E402
from examples.common.engine.training import build_criterion, loss_of  # noqa: E402
from examples.common.models import build_model  # noqa: E402
from examples.ferplus.demo import DEMO_MODELS, DEMO_TRAINING  # noqa: E402

from _common import interleaved_medians, machine_description, print_table  # noqa: E402


def step_fn(settings: dict[str, Any], channels_last: bool, batch: int, size: int, seed: int = 0) -> Callable[[], None]:
    """One training step of a demo model on a fixed random batch (the model trains in place)."""
    torch.manual_seed(seed)
    training = {k: v for k, v in DEMO_TRAINING.items() if k not in ("workers", "device", "hflip")}
    cfg = RunConfig(**{"recipe": "paper", **training, **settings, "image_size": size, "channels_last": channels_last})
    model = build_model(cfg, 8)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    # the demo's FERPlus task in majority mode: plain cross-entropy, no class weights; build_criterion reads
    # neither split, so both are empty datasets
    no_data = torch.utils.data.TensorDataset()
    task = Task(
        name="ferplus",
        class_names=tuple(map(str, range(8))),
        train=no_data,
        valid=None,
        test=no_data,
        test_keys=[],
        test_labels=torch.zeros(0, dtype=torch.long),
    )
    criterion = build_criterion(task, cfg, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    images = torch.rand(batch, 3, size, size)
    target = torch.randint(0, 8, (batch,))

    def step() -> None:
        loss = loss_of(criterion, model(images), target)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=DEMO_TRAINING["batch_size"])
    parser.add_argument("--image-size", type=int, default=DEMO_TRAINING["image_size"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    fns: dict[str, Callable[[], object]] = {}
    for name, _, settings in DEMO_MODELS:
        for layout in ("nchw", "channels_last"):
            fns[f"{name}/{layout}"] = step_fn(settings, layout == "channels_last", args.batch_size, args.image_size)
    times = interleaved_medians(fns, args.repeats, args.warmup, torch.device("cpu"))
    rows, figures = [], {}
    for name, label, _ in DEMO_MODELS:
        first, last = times[f"{name}/nchw"], times[f"{name}/channels_last"]
        figures[name] = {
            "nchw_ms": 1e3 * first,
            "channels_last_ms": 1e3 * last,
            "speedup": first / last,
            "channels_last_images_per_s": args.batch_size / last,
        }
        rows.append(
            [label, f"{1e3 * first:.1f}", f"{1e3 * last:.1f}", f"{first / last:.2f}x", f"{args.batch_size / last:.0f}"]
        )
    machine = machine_description(torch.device("cpu"))
    print_table(
        f"Demo training step, batch {args.batch_size}, {args.image_size} px, median of {args.repeats} "
        f"interleaved runs ({machine})",
        ["model", "NCHW ms", "channels-last ms", "speed-up", "channels-last images/s"],
        rows,
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "batch_size": args.batch_size,
                    "image_size": args.image_size,
                    "repeats": args.repeats,
                    "models": figures,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
