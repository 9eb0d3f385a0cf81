"""Train and evaluate RAN (or the whole-face baseline) on AffectNet.

    python examples/affectnet/train.py --data-dir DIR --output-dir OUT [--classes 7|8]
        [--balance none|oversample|weighted-loss] [--regions fixed|authors|landmarks|random] [--radius R]
        [--num-regions K] [--face-margin X] [--holdout-fraction F] [--skip-bad-images] [--layout auto|csv|npy]
        [...the engine's options: --recipe paper|authors, --epochs, --lr, --model, --backbone, --subset, ...]
    torchrun --nproc_per_node=N examples/affectnet/train.py ...     # DistributedDataParallel

DIR holds either ``Manually_Annotated_file_lists/{training,validation}.csv`` with ``Manually_Annotated_Images/``
or ``train_set/`` and ``val_set/`` (``images/`` + ``annotations/*.npy``); see examples/affectnet/data.py.
Expression codes 0-6 (``--classes 7``) or 0-7 (``--classes 8``) are kept, the others dropped and counted. The
provider's validation set is the test set (evaluated once, with the checkpoint chosen on the holdout);
``--holdout-fraction`` of the training set (stratified by class, fixed by ``--seed``) is held out for model
selection. Faces are cut by the provided box (grown by ``--face-margin`` times its side on each side; black
padding outside the image; the npy layout's images are already faces) and resized once in the data workers;
regions are cropped on the device by ``RegionCropper``.

``--regions``: fixed (the paper's five regions), authors (the authors' seven AffectNet regions, the default with
``--recipe authors``), landmarks (boxes of ``--radius`` x face size around the 5 points reduced from the provided
68 landmarks; landmarks that are missing or fall outside the face crop mask their regions) or random.
``--balance oversample`` draws class-balanced epochs (the paper's 59.5% protocol); ``weighted-loss`` weights the
cross-entropy by ``N / (C * count_c)``. ``--recipe authors`` uses the authors' AffectNet schedule (lr 0.01,
40 epochs, x0.1 at 12/20/32, batch 256, margin 0.03), or their oversampled one with ``--balance oversample``
(lr 0.015, 20 epochs, x0.1 at 6/10/16, margin 0.02). ``--skip-bad-images`` decodes every image first and leaves
missing or corrupt ones out (listed in summary.json); without it the first bad image stops the run, naming it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.affectnet.data import (
    AFFECTNET_CLASSES,
    LAYOUTS,
    AffectNetSplit,
    balanced_sample_weights,
    check_images,
    format_report,
    inverse_frequency_weights,
    load_affectnet,
    stratified_holdout,
)
from examples.common import engine

BALANCE_MODES = ("none", "oversample", "weighted-loss")

#: The authors' released AffectNet scripts (docs: "Paper vs released code"): plain and oversampled, with the
#: authors' seven AffectNet regions.
AUTHORS_AFFECTNET: dict[str, Any] = {
    **engine.RECIPES["authors"],
    "lr": 0.01,
    "epochs": 40,
    "milestones": [12, 20, 32],
    "batch_size": 256,
    "margin": 0.03,
    "regions": "authors",
}
AUTHORS_AFFECTNET_OVERSAMPLED: dict[str, Any] = {
    **AUTHORS_AFFECTNET,
    "lr": 0.015,
    "epochs": 20,
    "milestones": [6, 10, 16],
    "margin": 0.02,
}

DATA_OPTIONS = (
    *engine.REGION_OPTIONS,
    "classes",
    "balance",
    "face_margin",
    "holdout_fraction",
    "skip_bad_images",
    "layout",
)
DATA_CHOICES = {"layout": LAYOUTS, "balance": BALANCE_MODES}
DATA_DEFAULTS = {"classes": 8, "balance": "none", "face_margin": 0.0, "holdout_fraction": 0.05, "layout": "auto"}


def affectnet_recipes(balance: str = "none") -> dict[str, dict[str, Any]]:
    """``paper`` (the engine's) and ``authors`` (the AffectNet script matching ``balance``)."""
    authors = AUTHORS_AFFECTNET_OVERSAMPLED if balance == "oversample" else AUTHORS_AFFECTNET
    return {"paper": dict(engine.RECIPES["paper"]), "authors": dict(authors)}


def build_parser() -> argparse.ArgumentParser:
    return engine.script_parser(
        "examples/affectnet/train.py",
        __doc__,
        "AffectNet",
        DATA_OPTIONS,
        recipes=affectnet_recipes(),
        choices=DATA_CHOICES,
        defaults=DATA_DEFAULTS,
    )


def _balance(cfg: engine.RunConfig, labels: Any, class_names: tuple[str, ...]) -> tuple[Any, Any, dict[str, Any]]:
    """``(sampling weights, class weights, report)`` of ``--balance``."""
    balance: dict[str, Any] = {"mode": cfg.balance}
    if cfg.balance == "oversample":
        balance["description"] = (
            "every epoch draws len(train) images with replacement, each with probability "
            "proportional to 1 / count(its class): classes are drawn equally often"
        )
        return balanced_sample_weights(labels, len(class_names)), None, balance
    if cfg.balance == "weighted-loss":
        class_weight = inverse_frequency_weights(labels, len(class_names))
        balance["description"] = (
            "cross-entropy weighted by inverse class frequency, weight_c = N / (C * count_c) "
            "over the training images (weighted mean over the batch)"
        )
        balance["class_weights"] = {n: round(float(w), 6) for n, w in zip(class_names, class_weight, strict=True)}
        return None, class_weight, balance
    balance["description"] = "uniform shuffling, plain cross-entropy"
    return None, None, balance


def _read_splits(
    cfg: engine.RunConfig, num_classes: int, margin: float
) -> tuple[dict[str, AffectNetSplit], list[dict[str, str]]]:
    """The provider's train and test splits, each checked by :func:`check_images`, and the bad images found."""
    data_dir, layout = engine.required(cfg.data_dir, "data_dir"), engine.required(cfg.layout, "layout")
    splits = load_affectnet(data_dir, num_classes, layout=layout)
    bad: list[dict[str, str]] = []
    for name in ("train", "test"):
        if cfg.skip_bad_images:
            engine.log(f"checking the {len(splits[name])} {name} images (--skip-bad-images) ...")
        splits[name], entries = check_images(
            splits[name], skip_bad=cfg.skip_bad_images, image_size=cfg.image_size, margin=margin, workers=cfg.workers
        )
        bad += entries
    return splits, bad


def make_task(cfg: engine.RunConfig) -> engine.Task:
    num_classes = engine.required(cfg.classes, "classes")
    class_names = AFFECTNET_CLASSES[:num_classes]
    size, margin, skip = cfg.image_size, engine.required(cfg.face_margin, "face_margin"), cfg.skip_bad_images
    splits, bad = _read_splits(cfg, num_classes, margin)
    provider_train, test = splits["train"], splits["test"]
    layout = provider_train.layout
    fraction = engine.required(cfg.holdout_fraction, "holdout_fraction")
    train_idx, hold_idx = stratified_holdout(provider_train.labels(), fraction, cfg.seed)
    train = provider_train.take(train_idx, "train")
    holdout = provider_train.take(hold_idx, "holdout") if len(hold_idx) else None
    train_weights, class_weight, balance = _balance(cfg, train.labels(), class_names)

    report: dict[str, Any] = {
        "layout": layout,
        "classes": num_classes,
        "face_margin": margin if layout == "csv" else None,
        "provider_train": provider_train.report,
        "train": train.report,
        **({"holdout": holdout.report} if holdout is not None else {}),
        "test": test.report,
        "holdout_fraction": cfg.holdout_fraction,
        "bad_images": {"checked": skip, "count": len(bad), "examples": bad[:20]},
    }
    engine.log(format_report(report))
    notes = {
        "balance": balance,
        "regions": cfg.regions,
        "test_set": "the provider's validation set (validation.csv / val_set), evaluated once",
        "model_selection": (
            f"{len(hold_idx)} training images held out (stratified by class, seed {cfg.seed})"
            if holdout is not None
            else "none (no holdout): the last epoch is reported"
        ),
    }
    if layout == "npy":
        notes["subset_matching"] = (
            "npy layout: image ids are the file names in val_set/images, which match the "
            "published 56-hex ids of the occlusion/pose lists only if the files are named so"
        )
    return engine.Task(
        name="affectnet",
        class_names=class_names,
        train=train.dataset(size, margin),
        valid=holdout.dataset(size, margin) if holdout is not None else None,
        test=test.dataset(size, margin),
        test_keys=test.keys(),
        test_labels=test.labels(),
        report=report,
        subset_dataset="affectnet",
        train_weights=train_weights,
        class_weight=class_weight,
        notes=notes,
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = engine.config_from_args(parser, args, affectnet_recipes(args.balance))
    task = engine.read_data(parser, make_task, cfg)
    return engine.run_script(parser, lambda: engine.run(task, cfg))


if __name__ == "__main__":
    main()
