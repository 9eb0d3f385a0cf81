"""Options given anew at a resume take effect from the resumed epoch, or the resume is refused: never recorded
as changed and silently ignored. The optimiser's hyper-parameters (``--momentum``, ``--weight-decay``) are this
run's after its saved state is loaded, as ``--lr`` is; ``--milestones`` and ``--gamma`` are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from examples.common import engine
from examples.common.engine import checkpoints, protocol
from examples.common.engine.checkpoints import Restored, load_checkpoint_file, make_checkpoint, restore
from examples.common.engine.training import build_optimizer
from examples.ferplus.train import main

from ._runs import fast_options, metrics_lines, tiny_ferplus


def trained_parts(cfg: engine.RunConfig, steps: int) -> tuple[torch.nn.Module, Any, Any]:
    """A small model and its optimiser and schedule after ``steps`` SGD steps of one epoch."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer, schedule = build_optimizer(model, cfg)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).square().sum().backward()
        optimizer.step()
    schedule.step()
    return model, optimizer, schedule


def restored(cfg: engine.RunConfig, ckpt: dict[str, Any], scaler: torch.amp.GradScaler | None = None) -> Any:
    """A new process's optimiser for ``cfg``, after :func:`restore` from ``ckpt``."""
    model = torch.nn.Linear(4, 3)
    optimizer, schedule = build_optimizer(model, cfg)
    plan = Restored(ckpt["epoch"] + 1, ckpt["best"], ckpt["history"], ckpt["config"], Path("last.pt"), ckpt)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    restore(plan, ckpt["config"], model=model, optimizer=optimizer, schedule=schedule, scaler=scaler)
    return optimizer


def checkpoint_of(cfg: engine.RunConfig) -> dict[str, Any]:
    model, optimizer, schedule = trained_parts(cfg, steps=3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return make_checkpoint(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        epoch=0,
        best={"epoch": None, "accuracy": -1.0},
        history=[{"epoch": 1}],
        record={"seed": 0},
        class_names=("a", "b", "c"),
    )


ORIGINAL = engine.RunConfig(lr=0.1, momentum=0.9, weight_decay=1e-4, epochs=4, milestones=[2], gamma=0.1)


def test_restore_keeps_this_runs_momentum_and_weight_decay_and_the_checkpoints_state():
    ckpt = checkpoint_of(ORIGINAL)
    saved = ckpt["optimizer"]
    same = restored(ORIGINAL, ckpt).state_dict()
    assert same["param_groups"] == saved["param_groups"]  # nothing changed: the checkpoint's groups exactly
    other = engine.RunConfig(lr=0.01, momentum=0.5, weight_decay=0.0, epochs=4, milestones=[2], gamma=0.1)
    optimizer = restored(other, ckpt)
    for group, old in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        assert (group["momentum"], group["weight_decay"]) == (0.5, 0.0)
        assert (group["lr"], group["initial_lr"]) == (0.01, 0.01)  # epoch 1 is before the milestone
        assert {
            k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr", "momentum", "weight_decay")
        } == {k: v for k, v in old.items() if k not in ("params", "lr", "initial_lr", "momentum", "weight_decay")}
    for key, state in saved["state"].items():  # the momentum buffers are the checkpoint's
        assert torch.equal(optimizer.state_dict()["state"][key]["momentum_buffer"], state["momentum_buffer"])


def test_restore_gives_a_scaler_turned_on_at_a_resume_a_fresh_state():
    """``--amp`` given at the resume of a run trained without float16 scaling: the saved state is empty, torch
    refuses to load it into an enabled scaler; the resumed run starts a new scaler, as a new run would."""
    ckpt = checkpoint_of(ORIGINAL)
    assert ckpt["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    restored(ORIGINAL, ckpt, scaler)
    assert scaler.is_enabled() and scaler.get_scale() == 1024.0


# ------------------------------------------------------------------------------------------------------------
# Through the engine


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_ferplus(tmp_path_factory.mktemp("ferplus"), seed=3)


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    options = ["--momentum", "0.9", "--weight-decay", "0.0001", "--gamma", "0.1", "--milestones"]
    return ["--data-dir", str(data), "--output-dir", str(out), *fast_options(16, max_steps=2), *options, *extra]


def results_of(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The metrics lines (without their timing and ``changed_options``) and ``last.pt``."""
    return metrics_lines(out, "changed_options"), load_checkpoint_file(out / "checkpoints" / "last.pt")


def switch_optimizer_options_before_epoch_2(monkeypatch: pytest.MonkeyPatch, **options: float) -> None:
    """An uninterrupted run that sets ``options`` in its optimiser's groups before its second epoch: the run
    that does, by hand, what a resume with them after epoch 1 must do."""
    real = protocol.train_epoch

    def train_epoch(parts: Any, loader: Any, sampler: Any, cfg: Any, rt: Any, epoch: int) -> Any:
        if epoch == 1:
            for group in parts.optimizer.param_groups:
                group.update(options)
        return real(parts, loader, sampler, cfg, rt, epoch)

    monkeypatch.setattr(protocol, "train_epoch", train_epoch)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_momentum_and_weight_decay_given_at_a_resume_apply_from_the_resumed_epoch(data, tmp_path, capsys, monkeypatch):
    first, changed, by_hand = tmp_path / "first", tmp_path / "changed", tmp_path / "by_hand"
    main(argv(data, first, "--epochs", "1"))
    shutil.copytree(first, changed)

    # refused: the schedule's options (one line, exit status 2, nothing trained)
    for option, value in (("--gamma", "0.5"), ("--milestones", "1")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main([*argv(data, changed, "--epochs", "2", "--resume"), option, value])
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
        assert info.value.code == 2 and len(err) == 1 and "schedule" in err[0], err
    assert (changed / "metrics.jsonl").read_text() == (first / "metrics.jsonl").read_text()

    main([*argv(data, changed, "--epochs", "2", "--resume"), "--momentum", "0.5", "--weight-decay", "0.05"])
    with monkeypatch.context() as patch:
        switch_optimizer_options_before_epoch_2(patch, momentum=0.5, weight_decay=0.05)
        main(argv(data, by_hand, "--epochs", "2"))

    lines, ckpt = results_of(changed)
    want_lines, want = results_of(by_hand)
    assert [g["momentum"] for g in ckpt["optimizer"]["param_groups"]] == [0.5] * len(want["optimizer"]["param_groups"])
    assert {g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]} == {0.05}
    assert lines == want_lines
    assert checkpoints.content_hash(ckpt["model"]) == checkpoints.content_hash(want["model"])
    assert checkpoints.content_hash(ckpt["optimizer"]) == checkpoints.content_hash(want["optimizer"])
    recorded = [
        json.loads(line).get("changed_options") for line in (changed / "metrics.jsonl").read_text().splitlines()
    ]
    assert recorded == [None, {"output_dir": str(changed), "epochs": 2, "momentum": 0.5, "weight_decay": 0.05}]
    # the change is real: a resume without it trains another epoch 2
    main(argv(data, first, "--epochs", "2", "--resume"))
    assert checkpoints.content_hash(results_of(first)[1]["model"]) != checkpoints.content_hash(ckpt["model"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_pretrained_run_that_died_before_its_first_checkpoint_restarts_from_the_pretrained_weights(
    data, tmp_path, monkeypatch
):
    """No checkpoint to take the weights from: the restart reads ``--pretrained`` as the run did, and trains
    what the uninterrupted run trained (it used to start from random weights)."""
    from examples.common.models import small_cnn

    pretrained = tmp_path / "pretrained.pth"
    torch.manual_seed(1)
    torch.save(small_cnn().state_dict(), pretrained)
    whole, restarted = tmp_path / "whole", tmp_path / "restarted"
    main(argv(data, whole, "--epochs", "1", "--pretrained", str(pretrained)))
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "train_epoch", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            main(argv(data, restarted, "--epochs", "1", "--pretrained", str(pretrained)))
    assert (restarted / "config.json").exists() and not (restarted / "checkpoints" / "last.pt").exists()
    main(argv(data, restarted, "--epochs", "1", "--pretrained", str(pretrained), "--resume"))
    (lines, ckpt), (want_lines, want) = results_of(restarted), results_of(whole)
    assert lines == want_lines
    assert checkpoints.content_hash(ckpt["model"]) == checkpoints.content_hash(want["model"])
