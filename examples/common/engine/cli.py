"""The command line, built from :class:`~.config.RunConfig`: one ``argparse`` entry per field, with its help and
its default shown in ``--help``. A script picks the fields it offers; nothing here defines an option twice."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .config import RECIPES, RunConfig, flag_of, resolve_config
from .reporting import output_folder_problem

T = TypeVar("T")

#: The options every script offers (the engine's), in --help order.
ENGINE_OPTIONS = (
    "data_dir", "output_dir", "recipe", "epochs", "batch_size", "lr", "momentum", "weight_decay", "milestones",
    "gamma", "margin", "rb_weight", "model", "backbone", "pretrained", "dropout", "variant", "whole_position",
    "region_batching", "regions_on", "roi_size", "split_at", "image_size", "device", "workers", "amp",
    "channels_last", "compile", "subset",
    "train_on_valid", "hflip", "resume", "overwrite", "seed", "eval_batch_size", "max_steps_per_epoch",
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
    flags: Mapping[str, Sequence[str]] | None = None,
    required: Iterable[str] = (),
    hidden: Iterable[str] = (),
    notes: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Add the :class:`RunConfig` fields ``names`` to ``parser`` (or an argument group).

    ``defaults`` / ``choices``: a script's own default or choices for a field (data options); ``flags``: the
    option strings (first is the spelling shown; the others are accepted for old command lines); ``required``:
    fields that must be given; ``hidden``: accepted for old command lines but not shown; ``notes``: text shown
    instead of the default (e.g. "required without --demo"); ``aliases``: old spellings of a field, accepted
    (same choices and type) but not shown in ``--help``, so each option has one spelling there.
    """
    recipes, defaults, choices, flags = recipes or RECIPES, defaults or {}, choices or {}, flags or {}
    notes, aliases = notes or {}, aliases or {}
    required, hidden = set(required), set(hidden)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name in names:
        meta = dict(fields[name].metadata)
        help_text = meta.pop("help")
        is_recipe = meta.pop("recipe", False)
        if name in choices:
            meta["choices"] = tuple(choices[name])
        default = defaults.get(name, fields[name].default)
        if meta.get("action") == "append":
            default = list(default)
        if name == "recipe":
            meta["choices"] = tuple(sorted(recipes))
        if help_text == argparse.SUPPRESS or name in hidden:
            help_text = argparse.SUPPRESS
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
        parser.add_argument(*flags.get(name, (flag_of(name),)), dest=name, default=default, help=help_text,
                            **({"required": True} if name in required else {}), **meta)
        for alias in aliases.get(name, ()):  # SUPPRESS: an alias not given leaves the value alone
            parser.add_argument(alias, dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **meta)


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """The destinations of the options actually given in ``argv`` (argparse leaves pre-set attributes alone)."""
    unset = object()
    ns = argparse.Namespace(**{a.dest: unset for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_args(argv, namespace=ns)
    return {k for k, v in vars(ns).items() if v is not unset}


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     recipes: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
    """The validated :class:`RunConfig` of parsed ``args``; a bad value (or a missing subset list) is a one-line
    ``parser.error`` (exit status 2)."""
    try:
        cfg = resolve_config(args, recipes)
    except ValueError as err:
        parser.error(str(err))
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        parser.error(f"--data-dir: no folder at {cfg.data_dir}")
    if cfg.pretrained is not None and not cfg.resume and not Path(cfg.pretrained).is_file():  # resume: unused
        parser.error(f"--pretrained: no file at {cfg.pretrained}")
    for option_name, pairs in (("--subset", cfg.subsets), ("--subset-labels", cfg.subset_label_files.items())):
        for name, path in pairs:
            if not Path(path).is_file():
                parser.error(f"{option_name}: list for {name!r} not found: {path}")
    problem = output_folder_problem(cfg.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
    if problem:
        parser.error(problem)
    return cfg


def read_data(parser: argparse.ArgumentParser, read: Callable[[RunConfig], T], cfg: RunConfig) -> T:
    """``read(cfg)``: a dataset script's step that reads ``--data-dir`` (its ``make_task``, or its layout
    detection). A data folder in no layout the reader knows (:class:`~examples.common.folder_data.DataFolderError`)
    is a one-line ``--data-dir`` error, exit status 2, as for a folder that does not exist."""
    from ..folder_data import DataFolderError

    try:
        return read(cfg)
    except DataFolderError as err:
        parser.error(f"--data-dir: {err}")


def script_parser(prog: str, description: str | None, dataset: str, data_options: Sequence[str], *,
                  recipes: Mapping[str, Mapping[str, Any]] | None = None, required: bool = True,
                  engine_notes: Mapping[str, str] | None = None, **data_kwargs: Any) -> argparse.ArgumentParser:
    """A dataset script's parser: ``--data-dir``/``--output-dir`` in the group "required arguments" (``required``;
    ``engine_notes`` may say when instead), the engine's other options, then the group ``dataset`` with
    ``data_options`` (``data_kwargs``: ``aliases``, ``choices``, ``defaults``, ``flags``, ``hidden``, ``notes``
    for them, as in :func:`add_options`)."""
    parser = ScriptParser(prog=prog, description=description, formatter_class=HelpFormatter)
    where = ("data_dir", "output_dir")
    add_options(parser.add_argument_group("required arguments"), where, recipes=recipes,
                required=where if required else (), notes=engine_notes)
    group = parser.add_argument_group("training (defaults come from --recipe; every value can be overridden)")
    add_options(group, [n for n in ENGINE_OPTIONS if n not in where], recipes=recipes, notes=engine_notes)
    add_options(parser.add_argument_group(dataset), data_options, recipes=recipes, **data_kwargs)
    return parser


def add_engine_arguments(parser: argparse.ArgumentParser, *,
                         recipes: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """The options every example script shares (kept for scripts written against the single-file engine)."""
    group = parser.add_argument_group("training (defaults come from --recipe; every value can be overridden)")
    add_options(group, ENGINE_OPTIONS, recipes=recipes)


__all__ = [
    "ENGINE_OPTIONS",
    "REGION_OPTIONS",
    "HelpFormatter",
    "ScriptParser",
    "add_engine_arguments",
    "add_options",
    "config_from_args",
    "explicit_options",
    "read_data",
    "script_parser",
]
