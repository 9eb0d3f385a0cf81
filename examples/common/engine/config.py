"""The run configuration: one typed definition of every option, its default, its help text and the recipes.

Every option of every example script is one field of :class:`RunConfig`; the command line
(:mod:`.cli`) is built from these fields, and a script only chooses which of them it offers (and, for a few
data options, its own default or choices). The configuration is validated once, when it is made
(``__post_init__``; :func:`dataclasses.replace` validates again), and then passed around as a typed object:
nothing downstream reads an untyped dict with fallbacks.

Training values (``lr``, ``epochs``, ``margin``, ...) default to the chosen ``--recipe``; a value given on the
command line wins. Data options that a dataset does not have stay ``None`` in its configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import BACKBONES, backbone_problem, default_split
from ..subsets import parse_subset_arg

#: Training recipes. "paper": Sec. IV-B of the paper. "authors": the released FERPlus code.
#: Dataset scripts may override entries (e.g. AffectNet's authors' schedule); every value is a CLI option.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 0.01, "epochs": 40, "milestones": [15, 30], "gamma": 0.1, "margin": 0.02, "rb_weight": 1.0,
              "momentum": 0.9, "weight_decay": 1e-4, "variant": "paper", "whole_position": "first",
              "batch_size": 64, "region_batching": "joint", "regions": "fixed"},
    "authors": {"lr": 0.1, "epochs": 60, "milestones": [18, 30, 48], "gamma": 0.1, "margin": 0.1, "rb_weight": 1.0,
                "momentum": 0.9, "weight_decay": 1e-4, "variant": "authors", "whole_position": "last",
                "batch_size": 128, "region_batching": "per_region", "regions": "fixed"},
}

#: Region layouts: the paper's fixed crops, the authors' seven AffectNet crops, landmark boxes, random boxes.
REGION_LAYOUTS = ("fixed", "authors", "landmarks", "random")


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A :class:`RunConfig` field with its command-line help (``flags``, ``choices``, ``type``, ``nargs``,
    ``action``, ``metavar`` go to ``argparse``; ``recipe=True``: the default comes from ``--recipe``)."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass(frozen=True)
class RunConfig:
    """Everything a run of an example script needs, validated once (see the module docstring)."""

    # Where
    data_dir: str | None = option(None, "dataset folder in the provider's layout", type=Path, metavar="DIR")
    output_dir: str | None = option(None, "where metrics, checkpoints, plots and summary.json go", type=Path,
                                    metavar="OUT")
    # Recipe and its values
    recipe: str = option("paper", "training recipe: paper (Sec. IV-B) or authors (their released code)")
    epochs: int = option(None, "number of epochs", type=int, recipe=True)
    batch_size: int = option(None, "batch size per process", type=int, recipe=True)
    lr: float = option(None, "learning rate", type=float, recipe=True)
    momentum: float = option(None, "SGD momentum", type=float, recipe=True)
    weight_decay: float = option(None, "SGD weight decay", type=float, recipe=True)
    milestones: list[int] = option(  # noqa: RUF009 (a field with metadata, not a shared default)
        None, "epochs after which the lr is multiplied by --gamma", type=int, nargs="*", recipe=True)
    gamma: float = option(None, "lr factor at each milestone", type=float, recipe=True)
    margin: float = option(None, "region biased loss margin", type=float, recipe=True)
    rb_weight: float = option(None, "weight of the region biased loss (1 = the paper's 1:1; 0 = without it)",
                              type=float, recipe=True)
    variant: str = option(None, "attention formulation", choices=("paper", "authors"), recipe=True)
    whole_position: str = option(None, "where the whole face goes among the regions", choices=("first", "last"),
                                 recipe=True)
    region_batching: str = option(None, "one backbone call over all regions (joint), or one per region type "
                                  "(per_region: BatchNorm statistics per type, as the authors' code)",
                                  choices=("joint", "per_region"), recipe=True)
    regions: str = option(None, "region layout: the paper's fixed crops, the authors' seven AffectNet crops, "
                          "boxes around the 5 landmarks, or random crops", choices=REGION_LAYOUTS, recipe=True)
    # Model
    model: str = option("ran", "RAN, or the backbone on the whole face alone (the paper's baseline)",
                        choices=("ran", "baseline"))
    backbone: str = option("resnet18", f"feature extractor: {', '.join(sorted(BACKBONES))}, or timm:NAME for any "
                           "timm model (e.g. timm:convnext_tiny, timm:vit_small_patch16_224; needs timm)",
                           metavar="NAME")
    pretrained: str | None = option(None, "backbone checkpoint file (e.g. MS-Celeb-1M ResNet-18; for timm:NAME the "
                                    "model's .safetensors or .pth weights)", type=Path, metavar="PATH")
    dropout: float = option(0.0, "dropout before the classifier", type=float)
    regions_on: str = option("image", "where the regions come from: crops of the image, one backbone pass each "
                             "(image, the paper), or pooled from one feature map of the whole face (features, "
                             "the one-pass model)", choices=("image", "features"))
    roi_size: int = option(7, "--regions-on features: cells per side of each pooled region", type=int)
    split_at: str = option(None, "--regions-on features: the backbone's last stage before the regions are "
                           "pooled (the rest runs per region): layer3 or layer4; for timm:NAME an index of timm's "
                           "forward_intermediates, a stage of a CNN or a block of a ViT, negative from the end "
                           "(default None: layer3; -1, the last, for timm:NAME)", metavar="AT")
    radius: float = option(0.4, "landmark regions: half-side as a fraction of the face", type=float)
    num_regions: int = option(5, "random regions: how many", type=int)
    image_size: int = option(224, "side of the face images and of every region, in pixels", type=int)
    # Runtime
    device: str | None = option(None, "cpu, cuda or cuda:N (default None: cuda when available)")
    workers: int = option(2, "DataLoader worker processes per rank", type=int)
    amp: bool = option(False, "mixed precision (bf16; fp16 + GradScaler on GPUs without bf16)", action="store_true")
    channels_last: bool = option(False, "channels-last memory format", action="store_true")
    compile: bool = option(False, "torch.compile the model", action="store_true")
    # Protocol
    subset: tuple[str, ...] = option((), "evaluate the selected checkpoint on a published subset list "
                                                 "(repeatable)", action="append", metavar="NAME=PATH")
    train_on_valid: bool = option(False, "the paper's protocol: train on train + valid and report the last epoch",
                                  action="store_true")
    hflip: bool = option(False, "random horizontal flips of the training faces, on the device (the authors used "
                         "no augmentation)", action="store_true")
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt", action="store_true")
    overwrite: bool = option(False, "start afresh in an OUT that holds another run's outputs, deleting them first "
                             "(without it such an OUT is refused: give --resume to continue that run)",
                             action="store_true")
    seed: int = option(0, "seeds sampling, dropout, random regions and hold-out splits", type=int)
    eval_batch_size: int | None = option(None, "evaluation batch size (default None: --batch-size)", type=int)
    max_steps_per_epoch: int | None = option(None, argparse.SUPPRESS, type=int)
    # Data options (None: the dataset has no such option)
    layout: str | None = option(None, "the provider's file layout (auto: detect it)")
    label_mode: str | None = option(None, "training targets from the votes (validation/test always use majority)")
    classes: int | None = option(None, "7: expression codes 0-6; 8: codes 0-7", type=int, choices=(7, 8))
    balance: str | None = option(None, "oversample: class-balanced sampling; weighted-loss: inverse-frequency "
                                 "class weights", choices=("none", "oversample", "weighted-loss"))
    images: str | None = option(None, "aligned faces, or the original images cut to the provider's face box")
    face_margin: float | None = option(None, "grow the face box by this fraction of its side on each side",
                                       type=float)
    holdout_fraction: float | None = option(None, "share of the training set held out (per class, drawn with "
                                            "--seed) for model selection; 0: none, train on all of it and report "
                                            "the last epoch", type=float)
    fit: str | None = option(None, "how a non-square image becomes square: stretch, pad (black borders) or "
                             "center (crop)")
    skip_bad_images: bool = option(False, "decode every image first and leave missing/corrupt ones out (counted "
                                   "in summary.json)", action="store_true")
    subset_labels: tuple[str, ...] = option((), "label file of the --subset NAME pose list (default: "
                                                        "found beside it by the published naming)",
                                                        action="append", metavar="NAME=PATH")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("data_dir", "output_dir", "pretrained"):
            value = getattr(self, name)
            if isinstance(value, Path):
                set_(self, name, str(value))
        for name in ("subset", "subset_labels"):  # NAME=PATH, checked here once; parsed pairs in _pairs
            pairs = _name_path_pairs(getattr(self, name), flag_of(name))
            set_(self, name, tuple(f"{n}={p}" for n, p in pairs))
            set_(self, f"_{name}_pairs", pairs)
        if self.milestones is not None:
            set_(self, "milestones", sorted(int(m) for m in self.milestones))
        if self.split_at is None:  # the backbone's own default; old runs stored layer3
            set_(self, "split_at", default_split(str(self.backbone)))
        problems = [p for p in _problems(self) if p]
        if problems:
            raise ValueError("; ".join(problems))

    def __getitem__(self, name: str) -> Any:
        """Read access by name, as the values appear in config.json (``cfg["lr"]``)."""
        if name not in _FIELD_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    @property
    def subsets(self) -> tuple[tuple[str, str], ...]:
        """``--subset`` as ``(name, path)`` pairs."""
        return self._subset_pairs  # type: ignore[attr-defined,no-any-return]

    @property
    def subset_label_files(self) -> dict[str, str]:
        """``--subset-labels`` as ``{name: path}``."""
        return dict(self._subset_labels_pairs)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (config.json, checkpoints)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """A configuration from its JSON form (a checkpoint's ``config``); unknown keys (the run's
        ``task``, ``class_names``, ...) are ignored, missing ones take their defaults."""
        # None where the field has a default: an option the run predates (old RAF-DB runs stored radius None)
        known = {k: v for k, v in values.items() if k in _FIELD_NAMES and (v is not None or _DEFAULTS[k] is None)}
        base = RECIPES.get(known.get("recipe", "paper"), RECIPES["paper"])
        for name in _RECIPE_FIELDS:
            if known.get(name) is None:
                known[name] = base[name]
        return cls(**known)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(RunConfig))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
_RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("recipe"))


def flag_of(name: str) -> str:
    """The command-line spelling of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _name_path_pairs(values: Sequence[Any], flag: str) -> tuple[tuple[str, str], ...]:
    """``NAME=PATH`` strings (the command line) or ``(name, path)`` pairs (JSON) -> pairs; the one place where
    ``--subset``-style arguments are parsed."""
    pairs = []
    for value in values or ():
        if isinstance(value, str):
            try:
                name, path = parse_subset_arg(value, must_exist=False)
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"{flag}: {err}") from None
            pairs.append((name, str(path)))
        else:
            name, path = value
            pairs.append((str(name), str(path)))
    return tuple(pairs)


def _problems(cfg: RunConfig) -> list[str | None]:
    def check(ok: bool, flag: str, expected: str, value: Any) -> str | None:
        return None if ok else f"{flag} must be {expected}, got {value!r}"

    missing = [flag_of(n) for n in _RECIPE_FIELDS if getattr(cfg, n) is None]
    if missing:  # a recipe value is missing: the configuration was not made from a recipe
        return [f"no value for {', '.join(missing)} (give them, or make the configuration with resolve_config)"]
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices is not None and value is not None and value not in choices:
            return [f"{flag_of(f.name)} must be one of {', '.join(map(str, choices))}, got {value!r}"]
    optional = cfg.eval_batch_size, cfg.max_steps_per_epoch, cfg.holdout_fraction, cfg.face_margin
    return [
        None if cfg.recipe in RECIPES else f"--recipe must be one of {', '.join(RECIPES)}, got {cfg.recipe!r}",
        backbone_problem(cfg.backbone, str(cfg.split_at)),
        check(cfg.epochs >= 1, "--epochs", ">= 1", cfg.epochs),
        check(cfg.batch_size >= 1, "--batch-size", ">= 1", cfg.batch_size),
        check(cfg.lr > 0, "--lr", "> 0", cfg.lr),
        check(cfg.momentum >= 0, "--momentum", ">= 0", cfg.momentum),
        check(cfg.weight_decay >= 0, "--weight-decay", ">= 0", cfg.weight_decay),
        check(cfg.gamma > 0, "--gamma", "> 0", cfg.gamma),
        check(cfg.margin >= 0, "--margin", ">= 0", cfg.margin),
        check(cfg.rb_weight >= 0, "--rb-weight", ">= 0", cfg.rb_weight),
        check(0 <= cfg.dropout < 1, "--dropout", "in [0, 1)", cfg.dropout),
        check(cfg.radius > 0, "--radius", "> 0", cfg.radius),
        check(cfg.num_regions >= 1, "--num-regions", ">= 1", cfg.num_regions),
        check(cfg.roi_size >= 1, "--roi-size", ">= 1", cfg.roi_size),
        check(cfg.image_size >= 1, "--image-size", ">= 1", cfg.image_size),
        check(cfg.workers >= 0, "--workers", ">= 0", cfg.workers),
        check(optional[0] is None or optional[0] >= 1, "--eval-batch-size", ">= 1", optional[0]),
        check(optional[1] is None or optional[1] >= 1, "--max-steps-per-epoch", ">= 1", optional[1]),
        check(optional[2] is None or 0 <= optional[2] < 1, "--holdout-fraction", "in [0, 1)", optional[2]),
        check(optional[3] is None or 0 <= optional[3] <= 2, "--face-margin",
              "in [0, 2] (a fraction of the box side)", optional[3]),
        None if not (cfg.resume and cfg.overwrite) else (
            "--resume continues the run in OUT and --overwrite deletes it: give one of them"),
        None if not (cfg.balance == "oversample" and cfg.train_on_valid) else (
            "--balance oversample cannot be combined with --train-on-valid (the sampler's weights cover the "
            "training images only); use --holdout-fraction 0 to train on every training image"),
    ]


def resolve_config(args: argparse.Namespace, recipes: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
    """Command-line values over the recipe's defaults (``recipes``: the script's, default :data:`RECIPES`)."""
    recipes = recipes or RECIPES
    given = {k: v for k, v in vars(args).items() if k in _FIELD_NAMES}
    recipe = recipes[given.get("recipe") or "paper"]
    values = {k: v for k, v in given.items() if v is not None}
    for name in _RECIPE_FIELDS:
        if values.get(name) is None:
            values[name] = recipe[name]
    return RunConfig(**values)


__all__ = ["RECIPES", "REGION_LAYOUTS", "RunConfig", "flag_of", "option", "resolve_config"]
