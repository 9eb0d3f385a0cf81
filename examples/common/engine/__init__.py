"""The training engine shared by every example script (FERPlus, AffectNet, RAF-DB, SFEW), one concern per module.

=================  ==========================================================================================
module             what lives there
=================  ==========================================================================================
``config``         :class:`RunConfig`: every option once (default, help, recipe), validated once; ``RECIPES``
``cli``            the ``argparse`` command line built from :class:`RunConfig`
``runtime``        device, ``torchrun`` process group, rank-0 logging (:func:`log`)
``task``           :class:`Task`: what a dataset script hands to the engine
``sampling``       per-(seed, epoch) samplers, sharded across ranks
``checkpoints``    atomic save, load, identity checks, resume
``training``       optimiser, schedule, the objective (``RegionAttentionLoss``), one epoch
``evaluation``     predictions, confusion matrices, accuracies, subset lists
``reporting``      config.json, metrics.jsonl, summary.json, predictions, plots
``protocol``       :func:`run`: build, resume, train/validate/checkpoint per epoch, select, test, report
=================  ==========================================================================================

A dataset script builds a :class:`RunConfig` from its command line (:func:`add_options`,
:func:`config_from_args`), a :class:`Task` from its files, and calls :func:`run`.
"""

from __future__ import annotations

from .checkpoints import (
    CHECKPOINT_FORMAT,
    IDENTITY_KEYS,
    CheckpointError,
    RunError,
    atomic_save,
    config_differences,
    load_checkpoint_file,
)
from .cli import (
    ENGINE_OPTIONS,
    REGION_OPTIONS,
    HelpFormatter,
    add_options,
    config_from_args,
    explicit_options,
    read_data,
    run_script,
    script_parser,
)
from .config import RECIPES, REGION_LAYOUTS, RunConfig, required, resolve_config
from .evaluation import confusion, metrics_from_confusion, predict
from .protocol import run
from .runtime import Runtime, is_main_process, log
from .sampling import EpochSampler, ShardSampler
from .task import Task

__all__ = [
    "CHECKPOINT_FORMAT",
    "ENGINE_OPTIONS",
    "IDENTITY_KEYS",
    "RECIPES",
    "REGION_LAYOUTS",
    "REGION_OPTIONS",
    "CheckpointError",
    "EpochSampler",
    "HelpFormatter",
    "RunConfig",
    "RunError",
    "Runtime",
    "ShardSampler",
    "Task",
    "add_options",
    "atomic_save",
    "config_differences",
    "config_from_args",
    "confusion",
    "explicit_options",
    "is_main_process",
    "load_checkpoint_file",
    "log",
    "metrics_from_confusion",
    "predict",
    "read_data",
    "required",
    "resolve_config",
    "run",
    "run_script",
    "script_parser",
]
