"""The command line, built from :class:`~.config.RunConfig`: one ``argparse`` entry per field, with its help and
its default shown in ``--help``. A script picks the fields it offers; nothing here defines an option twice."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
from torch import nn

from ..backbones import BACKBONES, SPLIT_BACKBONES, timm_name, timm_size_problem
from ..folder_data import DataError
from .checkpoints import RunError
from .config import FROM_RECIPE, RECIPES, RunConfig, flag_of, resolve_config
from .reporting import output_folder_problem

T = TypeVar("T")

#: The options every script offers (the engine's), in --help order.
ENGINE_OPTIONS = (
    "data_dir",
    "output_dir",
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "milestones",
    "gamma",
    "margin",
    "rb_weight",
    "model",
    "backbone",
    "pretrained",
    "dropout",
    "variant",
    "whole_position",
    "region_batching",
    "regions_on",
    "roi_size",
    "split_at",
    "image_size",
    "device",
    "workers",
    "amp",
    "channels_last",
    "compile",
    "subset",
    "train_on_valid",
    "hflip",
    "resume",
    "overwrite",
    "seed",
    "eval_batch_size",
    "max_steps_per_epoch",
)
#: Region options: ``regions`` and the two it parametrises.
REGION_OPTIONS = ("regions", "radius", "num_regions")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the script's docstring as written (the option help carries its own default)."""


class ScriptParser(argparse.ArgumentParser):
    """A user error (bad option value, missing folder, unknown option) is one line on stderr, exit status 2: the
    message without argparse's usage block, which for these scripts runs to thirty lines (``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _recipe_default(name: str, recipes: Mapping[str, Mapping[str, Any]]) -> str:
    def show(value: Any) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    values = {show(r[name]) for r in recipes.values()}
    if len(values) == 1:
        return f"(default: {values.pop()}, from --recipe)"
    return "(default from --recipe: " + ", ".join(f"{k} {show(r[name])}" for k, r in recipes.items()) + ")"


def add_options(
    parser: argparse.ArgumentParser | Any,
    names: Iterable[str],
    *,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    required: Iterable[str] = (),
    notes: Mapping[str, str] | None = None,
) -> None:
    """Add the :class:`RunConfig` fields ``names`` to ``parser`` (or an argument group), one spelling each
    (:func:`~.config.flag_of`).

    ``defaults`` / ``choices``: a script's own default or choices for a field (data options); ``required``:
    fields that must be given; ``notes``: text shown instead of the default (e.g. "required without --demo").
    """
    recipes, defaults, choices, notes = recipes or RECIPES, defaults or {}, choices or {}, notes or {}
    required = set(required)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name in names:
        meta = dict(fields[name].metadata)
        help_text = meta.pop("help")
        is_recipe = meta.pop("recipe", False)
        if name in choices:
            meta["choices"] = tuple(choices[name])
        default = defaults.get(name, fields[name].default)
        if default is FROM_RECIPE:  # None on the command line: not given, the recipe's value applies
            default = None
        if meta.get("action") == "append":
            default = list(default)
        if name == "recipe":
            meta["choices"] = tuple(sorted(recipes))
        if help_text == argparse.SUPPRESS:
            pass
        elif name in notes:
            help_text += f" ({notes[name]})"
        elif name in required:
            help_text += " (required)"
        elif is_recipe:
            help_text += " " + _recipe_default(name, recipes)
        elif meta.get("action") == "store_true":
            help_text += " (default: off)"
        elif meta.get("action") == "append":
            help_text += " (default: none)"
        else:
            help_text += " (default: %(default)s)"
        extra: dict[str, Any] = {"required": True} if name in required else {}
        parser.add_argument(flag_of(name), dest=name, default=default, help=help_text, **extra, **meta)


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The destinations of the options actually given in ``argv`` (argparse leaves pre-set attributes alone)."""
    unset = object()
    ns = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_args(argv, namespace=ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def config_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, recipes: Mapping[str, Mapping[str, Any]] | None = None
) -> RunConfig:
    """The validated :class:`RunConfig` of parsed ``args``; a bad value, a missing file or folder, an image or
    region size the backbone cannot take, a device that does not exist or an unusable output folder is a
    one-line ``parser.error`` (exit status 2)."""
    try:
        cfg = resolve_config(args, recipes)
    except ValueError as err:
        parser.error(str(err))
    if getattr(args, "milestones", None) is not None:  # given on the command line: within the epochs
        late = [m for m in cfg.milestones if m >= cfg.epochs]
        if late:
            parser.error(
                f"--milestones {' '.join(map(str, late))}: not within --epochs {cfg.epochs} (a milestone "
                f"is an epoch after which the lr changes: give values from 1 to {cfg.epochs - 1})"
            )
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        parser.error(f"--data-dir: no folder at {cfg.data_dir}")
    if cfg.pretrained is not None and not cfg.resume and not Path(cfg.pretrained).is_file():  # resume: unused
        parser.error(f"--pretrained: no file at {cfg.pretrained}")
    for option_name, pairs in (("--subset", cfg.subsets), ("--subset-labels", cfg.subset_label_files.items())):
        for name, path in pairs:
            if not Path(path).is_file():
                parser.error(f"{option_name}: list for {name!r} not found: {path}")
    for problem in (
        device_problem(cfg.device),
        size_problem(cfg),
        writable_problem(cfg.output_dir, "--output-dir"),
        output_folder_problem(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite),
    ):
        if problem:
            parser.error(problem)
    return cfg


def device_problem(device: str | None, flag: str = "--device") -> str | None:
    """Why ``device`` cannot run this process (None: it can): not a device name, CUDA without a GPU, or a GPU
    index this machine does not have."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"{flag} {device!r} is not a device; give cpu, cuda or cuda:N"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"{flag} {device}: CUDA is not available on this machine; give --device cpu"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return (
                f"{flag} {device}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        return f"{flag} {device!r}: the examples run on cpu or cuda"
    return None


def writable_problem(path: str | Path | None, flag: str) -> str | None:
    """Why files cannot be written under the folder ``path`` (None: they can): it is a file, or it (or the
    nearest existing folder above it, where it will be made) is not writable."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file, not a folder; give a folder"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{flag} {path}: {existing} is a file, so the folder cannot be made"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{flag} {path}: {existing} is not writable; give a folder you can write to"
    return None


def _runs_on(module: nn.Module, *shape: int) -> torch.Size | None:
    """The output shape of ``module`` (in eval mode) on a zero input of ``shape``, or None when that input is
    too small for it."""
    try:
        with torch.no_grad():
            return module(torch.zeros(*shape)).shape  # type: ignore[no-any-return]
    except (RuntimeError, ValueError):
        return None


def _unfilled(module: nn.Module) -> nn.Module:
    """``module`` (built on the meta device, so no initialisation ran) on the CPU with zero weights, in eval
    mode: enough to learn the shapes it produces."""
    module = module.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.zero_()
    return module


def size_problem(cfg: RunConfig) -> str | None:
    """:func:`backbone_size_problem` of the run's model, backbone, image size and one-pass options."""
    features = cfg.model == "ran" and cfg.regions_on == "features"
    return backbone_size_problem(
        cfg.backbone, cfg.image_size, cfg.split_at if features else None, cfg.roi_size if features else None
    )


@functools.lru_cache(maxsize=64)
def backbone_size_problem(name: str, size: int, split_at: str | None, roi_size: int | None) -> str | None:
    """Why the backbone cannot take the run's ``--image-size`` (every region is resized to it) or, for the
    one-pass model, its ``--roi-size`` (None: it can). The backbone is built without initialising its weights
    and run once on one zero image; no file is read. A timm backbone (its name and split index checked by
    ``backbone_problem``) is checked by :func:`~examples.common.backbones.timm_size_problem`."""
    if timm_name(name) is not None:
        return timm_size_problem(name, size, split_at, roi_size)
    if split_at is not None:
        if name not in SPLIT_BACKBONES:
            return (
                f"--regions-on features needs a backbone that can be split "
                f"({', '.join(sorted(SPLIT_BACKBONES))}), got --backbone {name}"
            )
        with torch.device("meta"):
            trunk, head = SPLIT_BACKBONES[name](split_at, None)
        trunk, head = _unfilled(trunk), _unfilled(head)
        whole: nn.Module = nn.Sequential(trunk, head)
        fmap = _runs_on(trunk, 1, 3, size, size)
    else:
        with torch.device("meta"):
            whole = BACKBONES[name][0](None)
        whole = _unfilled(whole)
        fmap = None
    if _runs_on(whole, 1, 3, size, size) is None:
        smallest = next((s for s in range(size + 1, 1025) if _runs_on(whole, 1, 3, s, s) is not None), None)
        return f"--image-size {size} is too small for --backbone {name}" + (
            f"; give at least {smallest}" if smallest else ""
        )
    if fmap is not None and roi_size is not None and split_at is not None:
        side = min(fmap[-2:])
        if roi_size > side:
            return (
                f"--roi-size {roi_size} exceeds the {fmap[-2]} x {fmap[-1]} feature map of a {size}-pixel "
                f"face at --split-at {split_at} (a region covers part of it); give --roi-size <= {side}"
            )
        if _runs_on(head, 1, fmap[1], roi_size, roi_size) is None:  # the head sees crops of the trunk's map
            return (
                f"--roi-size {roi_size} is too small for the part of --backbone {name} after "
                f"--split-at {split_at}; give a larger --roi-size"
            )
    return None


#: The errors that are the user's to fix (data, checkpoints, files, the output folder), each with a message that
#: names the file and says what to do: :func:`run_script` prints them as one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, RunError, DataError)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a DataLoader worker's error: the original message, not the
    "Caught ... in DataLoader worker process" preamble and its traceback)."""
    text = str(err).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) if lines else type(err).__name__


def run_script(parser: argparse.ArgumentParser, step: Callable[[], T], also: tuple[type[BaseException], ...] = ()) -> T:
    """``step()``, with the user's mistakes found while it reads the data, the checkpoints or the output folder
    (:data:`USER_ERRORS`, and ``also``) turned into one line on stderr and exit status 2, as for a bad option."""
    try:
        return step()
    except (*USER_ERRORS, *also) as err:
        parser.exit(2, f"{parser.prog}: error: {one_line(err)}\n")


def read_data(parser: argparse.ArgumentParser, read: Callable[[RunConfig], T], cfg: RunConfig) -> T:
    """``read(cfg)``: a dataset script's step that reads ``--data-dir`` (its ``make_task``, or its layout
    detection). A data folder in no layout the reader knows, a malformed label file, a missing or unreadable
    image (any ``ValueError`` or ``OSError`` of the readers, which name the file and line) is a one-line error,
    exit status 2."""
    from ..folder_data import DataFolderError

    try:
        return read(cfg)
    except DataFolderError as err:
        parser.error(f"--data-dir: {err}")
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {one_line(err)}\n")


def script_parser(
    prog: str,
    description: str | None,
    dataset: str,
    data_options: Sequence[str],
    *,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    required: bool = True,
    engine_notes: Mapping[str, str] | None = None,
    **data_kwargs: Any,
) -> argparse.ArgumentParser:
    """A dataset script's parser: ``--data-dir``/``--output-dir`` in the group "required arguments" (``required``;
    ``engine_notes`` may say when instead), the engine's other options, then the group ``dataset`` with
    ``data_options`` (``data_kwargs``: ``choices``, ``defaults``, ``notes`` for them, as in
    :func:`add_options`)."""
    parser = ScriptParser(prog=prog, description=description, formatter_class=HelpFormatter)
    where = ("data_dir", "output_dir")
    add_options(
        parser.add_argument_group("required arguments"),
        where,
        recipes=recipes,
        required=where if required else (),
        notes=engine_notes,
    )
    group = parser.add_argument_group("training (defaults come from --recipe; every value can be overridden)")
    add_options(group, [n for n in ENGINE_OPTIONS if n not in where], recipes=recipes, notes=engine_notes)
    add_options(parser.add_argument_group(dataset), data_options, recipes=recipes, **data_kwargs)
    return parser


__all__ = [
    "ENGINE_OPTIONS",
    "REGION_OPTIONS",
    "USER_ERRORS",
    "HelpFormatter",
    "ScriptParser",
    "add_options",
    "backbone_size_problem",
    "config_from_args",
    "device_problem",
    "explicit_options",
    "one_line",
    "read_data",
    "run_script",
    "script_parser",
    "size_problem",
    "writable_problem",
]
