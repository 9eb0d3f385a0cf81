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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..backbones import BACKBONES, backbone_problem, default_split
from ..subsets import parse_subset_arg

#: Training recipes. "paper": Sec. IV-B of the paper. "authors": the released FERPlus code.
#: Dataset scripts may override entries (e.g. AffectNet's authors' schedule); every value is a CLI option.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "lr": 0.01,
        "epochs": 40,
        "milestones": [15, 30],
        "gamma": 0.1,
        "margin": 0.02,
        "rb_weight": 1.0,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "variant": "paper",
        "whole_position": "first",
        "batch_size": 64,
        "region_batching": "joint",
        "regions": "fixed",
    },
    "authors": {
        "lr": 0.1,
        "epochs": 60,
        "milestones": [18, 30, 48],
        "gamma": 0.1,
        "margin": 0.1,
        "rb_weight": 1.0,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "variant": "authors",
        "whole_position": "last",
        "batch_size": 128,
        "region_batching": "per_region",
        "regions": "fixed",
    },
}

#: Region layouts: the paper's fixed crops, the authors' seven AffectNet crops, landmark boxes, random boxes.
REGION_LAYOUTS = ("fixed", "authors", "landmarks", "random")


class _FromRecipe:
    """The default of a recipe field: the value of the configuration's ``recipe`` (filled in by
    ``RunConfig.__post_init__``, so a made configuration never holds it)."""

    def __repr__(self) -> str:
        return "FROM_RECIPE"


#: Default of every recipe field (``--lr``, ``--epochs``, ...): the chosen recipe's value.
FROM_RECIPE: Any = _FromRecipe()


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A :class:`RunConfig` field with its command-line help (``flags``, ``choices``, ``type``, ``nargs``,
    ``action``, ``metavar`` go to ``argparse``; ``recipe=True``: the default comes from ``--recipe``)."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass(frozen=True)
class RunConfig:
    """Everything a run of an example script needs, validated once (see the module docstring)."""

    # Where
    data_dir: str | None = option(None, "dataset folder in the provider's layout", type=Path, metavar="DIR")
    output_dir: str | None = option(
        None, "where metrics, checkpoints, plots and summary.json go", type=Path, metavar="OUT"
    )
    # Recipe and its values
    recipe: str = option("paper", "training recipe: paper (Sec. IV-B) or authors (their released code)")
    epochs: int = option(FROM_RECIPE, "number of epochs", type=int, recipe=True)
    batch_size: int = option(FROM_RECIPE, "batch size per process", type=int, recipe=True)
    lr: float = option(FROM_RECIPE, "learning rate", type=float, recipe=True)
    momentum: float = option(FROM_RECIPE, "SGD momentum", type=float, recipe=True)
    weight_decay: float = option(FROM_RECIPE, "SGD weight decay", type=float, recipe=True)
    milestones: list[int] = option(  # noqa: RUF009 (a field with metadata, not a shared default)
        FROM_RECIPE, "epochs after which the lr is multiplied by --gamma", type=int, nargs="*", recipe=True
    )
    gamma: float = option(FROM_RECIPE, "lr factor at each milestone", type=float, recipe=True)
    margin: float = option(FROM_RECIPE, "region biased loss margin", type=float, recipe=True)
    rb_weight: float = option(
        FROM_RECIPE, "weight of the region biased loss (1 = the paper's 1:1; 0 = without it)", type=float, recipe=True
    )
    variant: str = option(FROM_RECIPE, "attention formulation", choices=("paper", "authors"), recipe=True)
    whole_position: str = option(
        FROM_RECIPE, "where the whole face goes among the regions", choices=("first", "last"), recipe=True
    )
    region_batching: str = option(
        FROM_RECIPE,
        "one backbone call over all regions (joint), or one per region type "
        "(per_region: BatchNorm statistics per type, as the authors' code)",
        choices=("joint", "per_region"),
        recipe=True,
    )
    regions: str = option(
        FROM_RECIPE,
        "region layout: the paper's fixed crops, the authors' seven AffectNet crops, "
        "boxes around the 5 landmarks, or random crops",
        choices=REGION_LAYOUTS,
        recipe=True,
    )
    # Model
    model: str = option(
        "ran", "RAN, or the backbone on the whole face alone (the paper's baseline)", choices=("ran", "baseline")
    )
    backbone: str = option(
        "resnet18",
        f"feature extractor: {', '.join(sorted(BACKBONES))}, or timm:NAME for any "
        "timm model (e.g. timm:convnext_tiny, timm:vit_small_patch16_224; needs timm)",
        metavar="NAME",
    )
    pretrained: str | None = option(
        None,
        "backbone checkpoint file (e.g. MS-Celeb-1M ResNet-18; for timm:NAME the model's .safetensors or .pth weights)",
        type=Path,
        metavar="PATH",
    )
    dropout: float = option(0.0, "dropout before the classifier", type=float)
    regions_on: str = option(
        "image",
        "where the regions come from: crops of the image, one backbone pass each "
        "(image, the paper), or pooled from one feature map of the whole face (features, "
        "the one-pass model)",
        choices=("image", "features"),
    )
    roi_size: int | None = option(
        None,
        "--regions-on features: cells per side of each pooled region (default with --regions-on features: 7)",
        type=int,
    )
    split_at: str | None = option(
        None,
        "--regions-on features: the backbone's last stage before the regions are "
        "pooled (the rest runs per region): layer3 or layer4; for timm:NAME an index of "
        "timm's forward_intermediates, a stage of a CNN or a block of a ViT, negative from "
        "the end (default with --regions-on features: layer3; -1, the last, for "
        "timm:NAME)",
        metavar="AT",
    )
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
    subset: tuple[str, ...] = option(
        (),
        "evaluate the selected checkpoint on a published subset list (repeatable)",
        action="append",
        metavar="NAME=PATH",
    )
    train_on_valid: bool = option(
        False, "the paper's protocol: train on train + valid and report the last epoch", action="store_true"
    )
    hflip: bool = option(
        False,
        "random horizontal flips of the training faces, on the device (the authors used no augmentation)",
        action="store_true",
    )
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt", action="store_true")
    overwrite: bool = option(
        False,
        "start afresh in an OUT that holds another run's outputs, deleting them first "
        "(without it such an OUT is refused: give --resume to continue that run)",
        action="store_true",
    )
    seed: int = option(0, "seeds sampling, dropout, random regions and hold-out splits", type=int)
    eval_batch_size: int | None = option(None, "evaluation batch size (default None: --batch-size)", type=int)
    max_steps_per_epoch: int | None = option(None, argparse.SUPPRESS, type=int)
    # Data options (None: the dataset has no such option)
    layout: str | None = option(None, "the provider's file layout (auto: detect it)")
    label_mode: str | None = option(None, "training targets from the votes (validation/test always use majority)")
    classes: int | None = option(None, "7: expression codes 0-6; 8: codes 0-7", type=int, choices=(7, 8))
    balance: str | None = option(
        None,
        "oversample: class-balanced sampling; weighted-loss: inverse-frequency class weights",
        choices=("none", "oversample", "weighted-loss"),
    )
    images: str | None = option(None, "aligned faces, or the original images cut to the provider's face box")
    face_margin: float | None = option(None, "grow the face box by this fraction of its side on each side", type=float)
    holdout_fraction: float | None = option(
        None,
        "share of the training set held out (per class, drawn with "
        "--seed) for model selection; 0: none, train on all of it and report "
        "the last epoch",
        type=float,
    )
    fit: str | None = option(
        None, "how a non-square image becomes square: stretch, pad (black borders) or center (crop)"
    )
    skip_bad_images: bool = option(
        False,
        "decode every image first and leave missing/corrupt ones out (counted in summary.json)",
        action="store_true",
    )
    subset_labels: tuple[str, ...] = option(
        (),
        "label file of the --subset NAME pose list (default: found beside it by the published naming)",
        action="append",
        metavar="NAME=PATH",
    )

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
        if self.recipe not in RECIPES and any(getattr(self, n) is FROM_RECIPE for n in _RECIPE_FIELDS):
            raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        for name in _RECIPE_FIELDS:  # the recipe's value where none was given
            if getattr(self, name) is FROM_RECIPE:
                value = RECIPES[self.recipe][name]
                set_(self, name, list(value) if isinstance(value, list) else value)
        if self.milestones is not None:
            set_(self, "milestones", sorted(int(m) for m in self.milestones))
        if self.regions_on == "features":  # the one-pass options' defaults; refused without it (see _problems)
            set_(self, "roi_size", 7 if self.roi_size is None else self.roi_size)
            set_(self, "split_at", default_split(str(self.backbone)) if self.split_at is None else self.split_at)
        problems = _problems(self)
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
        values: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """A configuration from its JSON form (a checkpoint's ``config``, which holds every field); the run's
        other entries (``task``, ``class_names``, ...) are ignored. A missing field is a :class:`ValueError`: the
        record was not written by these scripts."""
        missing = sorted(_FIELD_NAMES - set(values))
        if missing:
            raise ValueError(
                f"the run record lacks the option(s) {', '.join(missing)}: it was not written by these example scripts"
            )
        return cls(**{k: v for k, v in values.items() if k in _FIELD_NAMES})


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(RunConfig))
_RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("recipe"))


def flag_of(name: str) -> str:
    """The command-line spelling of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


_V = TypeVar("_V")


def required(value: _V | None, name: str) -> _V:
    """The value of the option ``name`` of a script that always sets it (its own default), never ``None``.

    Data options are ``None`` in :class:`RunConfig` for a dataset without them; a script that offers one reads
    it here, so that a configuration built without it fails with a clear error instead of deep inside a loader.
    """
    if value is None:
        raise ValueError(f"{flag_of(name)} is not set: this script needs it")
    return value


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


#: Options holding a float that must be finite (``--lr inf`` diverges at once).
_FLOAT_FIELDS = (
    "lr",
    "momentum",
    "weight_decay",
    "gamma",
    "margin",
    "rb_weight",
    "dropout",
    "radius",
    "face_margin",
    "holdout_fraction",
)


def _problems(cfg: RunConfig) -> list[str]:
    """What is wrong with ``cfg``, one message a problem. A missing recipe value, a value outside its choices or
    a non-finite number is reported alone (the other checks would misread it); otherwise every value out of
    its range and every pair of options that cannot go together."""
    first = _missing_problem(cfg) or _choice_problem(cfg) or _finite_problem(cfg)
    if first:
        return [first]
    problems = [
        None if cfg.recipe in RECIPES else f"--recipe must be one of {', '.join(RECIPES)}, got {cfg.recipe!r}",
        backbone_problem(cfg.backbone, cfg.split_at),
        *_range_problems(cfg),
        *_combination_problems(cfg),
    ]
    return [p for p in problems if p]


def _missing_problem(cfg: RunConfig) -> str | None:
    """A recipe value given as ``None``."""
    missing = [flag_of(n) for n in _RECIPE_FIELDS if getattr(cfg, n) is None]
    return f"no value for {', '.join(missing)}" if missing else None


def _choice_problem(cfg: RunConfig) -> str | None:
    """The first option whose value is not one of its choices."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices is not None and value is not None and value not in choices:
            return f"{flag_of(f.name)} must be one of {', '.join(map(str, choices))}, got {value!r}"
    return None


def _finite_problem(cfg: RunConfig) -> str | None:
    """Every float option that is set and not finite (:data:`_FLOAT_FIELDS`), in one message."""
    not_finite = [
        f"{flag_of(n)} {getattr(cfg, n)!r}"
        for n in _FLOAT_FIELDS
        if getattr(cfg, n) is not None and not math.isfinite(getattr(cfg, n))
    ]
    return f"{', '.join(not_finite)}: expected a finite number" if not_finite else None


def _check(ok: bool, flag: str, expected: str, value: Any) -> str | None:
    return None if ok else f"{flag} must be {expected}, got {value!r}"


def _range_problems(cfg: RunConfig) -> list[str | None]:
    """A message (or None) for every value that must lie in a range."""
    optional = cfg.eval_batch_size, cfg.max_steps_per_epoch, cfg.holdout_fraction, cfg.face_margin
    bad_milestones = [m for m in cfg.milestones if m < 1]
    return [
        _check(cfg.epochs >= 1, "--epochs", ">= 1", cfg.epochs),
        _check(cfg.batch_size >= 1, "--batch-size", ">= 1", cfg.batch_size),
        _check(cfg.lr > 0, "--lr", "> 0", cfg.lr),
        _check(cfg.momentum >= 0, "--momentum", ">= 0", cfg.momentum),
        _check(cfg.weight_decay >= 0, "--weight-decay", ">= 0", cfg.weight_decay),
        _check(cfg.gamma > 0, "--gamma", "> 0", cfg.gamma),
        _check(cfg.margin >= 0, "--margin", ">= 0", cfg.margin),
        _check(cfg.rb_weight >= 0, "--rb-weight", ">= 0", cfg.rb_weight),
        _check(
            not bad_milestones, "--milestones", "epochs >= 1 (the epochs after which the lr changes)", bad_milestones
        ),
        _check(len(set(cfg.milestones)) == len(cfg.milestones), "--milestones", "distinct epochs", cfg.milestones),
        _check(0 <= cfg.dropout < 1, "--dropout", "in [0, 1)", cfg.dropout),
        _check(cfg.radius > 0, "--radius", "> 0", cfg.radius),
        _check(cfg.num_regions >= 1, "--num-regions", ">= 1", cfg.num_regions),
        _check(cfg.roi_size is None or cfg.roi_size >= 1, "--roi-size", ">= 1", cfg.roi_size),
        _check(cfg.image_size >= 1, "--image-size", ">= 1", cfg.image_size),
        _check(cfg.workers >= 0, "--workers", ">= 0", cfg.workers),
        _check(optional[0] is None or optional[0] >= 1, "--eval-batch-size", ">= 1", optional[0]),
        _check(optional[1] is None or optional[1] >= 1, "--max-steps-per-epoch", ">= 1", optional[1]),
        _check(optional[2] is None or 0 <= optional[2] < 1, "--holdout-fraction", "in [0, 1)", optional[2]),
        _check(
            optional[3] is None or 0 <= optional[3] <= 2,
            "--face-margin",
            "in [0, 2] (a fraction of the box side)",
            optional[3],
        ),
    ]


def _combination_problems(cfg: RunConfig) -> list[str | None]:
    """A message (or None) for every pair of options that cannot go together."""
    one_pass = [flag_of(n) for n in ("roi_size", "split_at") if getattr(cfg, n) is not None]
    return [
        None
        if cfg.regions_on == "features" or not one_pass
        else (
            f"{' and '.join(one_pass)} appl{'y' if len(one_pass) > 1 else 'ies'} to the one-pass model only: add "
            "--regions-on features, or drop them"
        ),
        None
        if not (cfg.model == "baseline" and cfg.regions_on == "features")
        else (
            "--regions-on features builds the one-pass RAN; the baseline has no regions: drop --regions-on (and "
            "--roi-size, --split-at) or use --model ran"
        ),
        None
        if not (cfg.resume and cfg.overwrite)
        else ("--resume continues the run in OUT and --overwrite deletes it: give one of them"),
        None
        if not (cfg.balance == "oversample" and cfg.train_on_valid)
        else (
            "--balance oversample cannot be combined with --train-on-valid (the sampler's weights cover the "
            "training images only); use --holdout-fraction 0 to train on every training image"
        ),
    ]


def resolve_config(args: argparse.Namespace, recipes: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
    """Command-line values over the recipe's defaults (``recipes``: the script's, default :data:`RECIPES`)."""
    recipes = recipes or RECIPES
    given = {k: v for k, v in vars(args).items() if k in _FIELD_NAMES}
    chosen = given.get("recipe") or "paper"
    if chosen not in recipes:
        raise ValueError(f"--recipe must be one of {', '.join(recipes)}, got {chosen!r}")
    recipe = recipes[chosen]
    values = {k: v for k, v in given.items() if v is not None and v is not FROM_RECIPE}
    for name in _RECIPE_FIELDS:
        if values.get(name) is None:
            values[name] = recipe[name]
    return RunConfig(**values)


__all__ = ["FROM_RECIPE", "RECIPES", "REGION_LAYOUTS", "RunConfig", "flag_of", "option", "resolve_config"]
