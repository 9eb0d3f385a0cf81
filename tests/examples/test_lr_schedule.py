"""The engine's learning-rate schedule (torch's ``MultiStepLR`` in closed form): every epoch's rate is
``lr * gamma ** (number of milestones <= epoch)`` to the last bit, for every recipe; a resume, from a checkpoint
of this engine or of the engine before ``MultiStepLR`` (its own step schedule), continues the same sequence."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from examples.affectnet.train import AUTHORS_AFFECTNET, AUTHORS_AFFECTNET_OVERSAMPLED
from examples.common import engine
from examples.common.engine import checkpoints, protocol
from examples.common.engine.checkpoints import atomic_save, load_checkpoint_file
from examples.common.engine.training import ClosedFormMultiStepLR, build_optimizer
from examples.ferplus.demo import DEMO_TRAINING
from examples.ferplus.train import main

from ._runs import fast_options, metrics_lines, tiny_ferplus

RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(engine.RECIPES["paper"]),
    "authors": dict(engine.RECIPES["authors"]),
    "affectnet authors": AUTHORS_AFFECTNET,
    "affectnet authors oversampled": AUTHORS_AFFECTNET_OVERSAMPLED,
    "demo": {**engine.RECIPES["paper"], **DEMO_TRAINING},
    "other gamma": {"lr": 0.3, "epochs": 14, "milestones": [2, 5, 9, 13], "gamma": 0.37},
}


def closed_form(lr: float, milestones: list[int], gamma: float, epoch: int) -> float:
    """The rate of ``epoch`` (0-based), computed independently of the engine."""
    passed = 0
    for milestone in milestones:
        if milestone <= epoch:
            passed += 1
    return lr * gamma**passed


def schedule_of(recipe: dict[str, Any]) -> tuple[torch.optim.Optimizer, ClosedFormMultiStepLR]:
    cfg = engine.RunConfig(
        lr=recipe["lr"], epochs=recipe["epochs"], milestones=recipe["milestones"], gamma=recipe["gamma"]
    )
    return build_optimizer(torch.nn.Linear(3, 2), cfg)


def rates(optimizer: torch.optim.Optimizer, schedule: ClosedFormMultiStepLR, epochs: range) -> list[float]:
    """Every epoch's rate as the engine uses it: read at the start of the epoch, stepped after it."""
    out = []
    for epoch in epochs:
        assert schedule.last_epoch == epoch
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


def round_trip(obj: Any) -> Any:
    """Through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", RECIPES)
def test_the_lr_of_every_epoch_is_the_closed_form_to_the_bit(name):
    recipe = RECIPES[name]
    got = rates(*schedule_of(recipe), range(recipe["epochs"]))
    want = [closed_form(recipe["lr"], recipe["milestones"], recipe["gamma"], e) for e in range(recipe["epochs"])]
    assert [v.hex() for v in got] == [v.hex() for v in want]
    assert len(set(got)) == len(recipe["milestones"]) + 1


def test_chained_multisteplr_would_differ_in_the_last_bit():
    """Why the closed form: torch's chained MultiStepLR gives the paper recipe's last stage another float."""
    recipe = RECIPES["paper"]
    optimizer = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=recipe["lr"])
    chained = torch.optim.lr_scheduler.MultiStepLR(optimizer, recipe["milestones"], recipe["gamma"])
    for _ in range(recipe["epochs"] - 1):
        optimizer.step()
        chained.step()
    assert optimizer.param_groups[0]["lr"] != closed_form(recipe["lr"], recipe["milestones"], recipe["gamma"], 39)


@pytest.mark.parametrize("name", ["paper", "affectnet authors oversampled", "other gamma"])
def test_a_resumed_schedule_continues_the_same_lr_sequence(name):
    recipe = RECIPES[name]
    epochs = recipe["epochs"]
    uninterrupted = rates(*schedule_of(recipe), range(epochs))
    for stop in range(1, epochs):
        optimizer, schedule = schedule_of(recipe)
        rates(optimizer, schedule, range(stop))
        saved = round_trip({"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()})
        optimizer, schedule = schedule_of(recipe)  # a new process
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        assert rates(optimizer, schedule, range(stop, epochs)) == uninterrupted[stop:], stop


def old_engine_state(recipe: dict[str, Any], epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optimiser and schedule state the engine's own step schedule saved after ``epoch`` (0-based): the
    optimiser's rate was that epoch's, the schedule held its milestones, gamma and the epoch trained."""
    optimizer = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=recipe["lr"], momentum=0.9)
    optimizer.param_groups[0]["lr"] = closed_form(recipe["lr"], recipe["milestones"], recipe["gamma"], epoch)
    optimizer.step()
    state = {"milestones": list(recipe["milestones"]), "gamma": recipe["gamma"], "last_epoch": epoch}
    return round_trip(optimizer.state_dict()), round_trip(state)


@pytest.mark.parametrize("name", ["paper", "other gamma"])
def test_a_schedule_saved_before_multisteplr_resumes_the_same_sequence(name):
    recipe = RECIPES[name]
    uninterrupted = rates(*schedule_of(recipe), range(recipe["epochs"]))
    for trained in range(recipe["epochs"] - 1):
        optimizer, schedule = schedule_of(recipe)
        saved_optimizer, saved_schedule = old_engine_state(recipe, trained)
        optimizer.load_state_dict(saved_optimizer)
        schedule.load_state_dict(saved_schedule)
        assert rates(optimizer, schedule, range(trained + 1, recipe["epochs"])) == uninterrupted[trained + 1 :]


def test_a_resume_with_another_lr_uses_it_from_the_next_epoch():
    recipe = RECIPES["paper"]
    optimizer, schedule = schedule_of(recipe)
    rates(optimizer, schedule, range(20))
    saved = round_trip({"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()})
    optimizer, schedule = schedule_of({**recipe, "lr": 0.003})
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["scheduler"])
    got = rates(optimizer, schedule, range(20, 40))
    assert got == [closed_form(0.003, recipe["milestones"], recipe["gamma"], e) for e in range(20, 40)]


@pytest.mark.parametrize("change", [{"milestones": [15, 31]}, {"gamma": 0.2}])
def test_a_resume_with_other_milestones_or_gamma_is_refused(change):
    recipe = RECIPES["paper"]
    optimizer, schedule = schedule_of(recipe)
    rates(optimizer, schedule, range(3))
    for saved in (round_trip(schedule.state_dict()), old_engine_state(recipe, 2)[1]):
        _, other = schedule_of({**recipe, **change})
        with pytest.raises(ValueError, match=r"the checkpoint's schedule \(milestones \[15, 30\], gamma 0.1\)"):
            other.load_state_dict(saved)


# ------------------------------------------------------------------------------------------------------------
# Through the engine: a run interrupted after its first epoch and resumed trains every epoch at the same rate


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_ferplus(tmp_path_factory.mktemp("ferplus"), seed=5)


def run_argv(data: Path, out: Path, *extra: str) -> list[str]:
    options = ["--epochs", "3", "--milestones", "1", "2", "--gamma", "0.3"]
    return ["--data-dir", str(data), "--output-dir", str(out), *fast_options(16, max_steps=2), *options, *extra]


def results_of(out: Path) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    return metrics_lines(out), load_checkpoint_file(out / "checkpoints" / "last.pt")["model"]


def stop_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = protocol.train_epoch

    def train_epoch(parts: Any, loader: Any, sampler: Any, cfg: Any, rt: Any, epoch: int) -> Any:
        if epoch == 1:
            raise KeyboardInterrupt  # after epoch 1's checkpoint, as a kill would
        return real(parts, loader, sampler, cfg, rt, epoch)

    monkeypatch.setattr(protocol, "train_epoch", train_epoch)


def to_old_checkpoint(path: Path) -> None:
    """Rewrite ``path`` as the engine before ``MultiStepLR`` wrote it (its schedule's state, the optimiser at
    the rate of the epoch trained, no ``initial_lr``), with a valid checksum."""
    ckpt = load_checkpoint_file(path)
    record = ckpt["config"]
    ckpt["scheduler"] = {"milestones": record["milestones"], "gamma": record["gamma"], "last_epoch": ckpt["epoch"]}
    for group in ckpt["optimizer"]["param_groups"]:
        del group["initial_lr"]
        group["lr"] = closed_form(record["lr"], record["milestones"], record["gamma"], ckpt["epoch"])
    atomic_save(ckpt, path)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_resumed_run_trains_every_epoch_at_the_same_lr(data, tmp_path, monkeypatch):
    main(run_argv(data, tmp_path / "whole"))
    lines, weights = results_of(tmp_path / "whole")
    assert [line["lr"] for line in lines] == [closed_form(0.05, [1, 2], 0.3, e) for e in range(3)]
    for name, rewrite in (("resumed", None), ("resumed_old", to_old_checkpoint)):
        out = tmp_path / name
        with monkeypatch.context() as patch:
            stop_after_first_epoch(patch)
            with pytest.raises(KeyboardInterrupt):
                main(run_argv(data, out))
        if rewrite is not None:
            for checkpoint in ("last.pt", "best.pt"):
                rewrite(out / "checkpoints" / checkpoint)
        main(run_argv(data, out, "--resume"))
        resumed_lines, resumed_weights = results_of(out)
        assert resumed_lines == lines, name
        assert checkpoints.content_hash(resumed_weights) == checkpoints.content_hash(weights), name
