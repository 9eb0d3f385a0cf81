"""Runs that never lie (issue 13): checkpoints, resume, output folders, diverged and empty runs.

Every test here fails on the engine before the fix: stale best.pt reported, metrics lost or torn, runs mixed in
one folder, config.json rewritten by a refused resume, resumes on other data accepted, diverged runs reported,
empty splits crashing after training, damaged checkpoints loaded, --pretrained files needed after training.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from examples.common import engine
from examples.common.engine import checkpoints, protocol
from examples.common.engine.checkpoints import CheckpointError, atomic_save, content_hash, load_checkpoint_file
from examples.common.synthetic import Splits, generate_ferplus
from examples.ferplus.train import build_parser, main, make_task

from ._runs import fast_options, tiny_ferplus
from ._runs import run_argv as argv

FAST = fast_options(16, max_steps=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_ferplus(tmp_path_factory.mktemp("ferplus"), seed=3)


def refused(capsys, call, pattern: str) -> str:
    """``call()`` must end with one line on stderr matching ``pattern`` and exit status 2 (no traceback)."""
    import re

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        call()
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def metrics_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------------
# 1. Every reported figure comes from the weights it names


@pytest.mark.slow
def test_best_is_written_before_last_and_a_kill_between_resumes_from_it(data, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    reference = main(argv(data, straight, epochs=2))
    order: list[str] = []
    real_save = protocol.atomic_save

    def killed_at_last(obj, path, **kwargs):
        order.append(Path(path).name)
        if Path(path).name == "last.pt":
            raise KeyboardInterrupt("killed between best.pt and last.pt")
        real_save(obj, path, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(protocol, "atomic_save", killed_at_last)
    with pytest.raises(KeyboardInterrupt):
        main(argv(data, out, epochs=2))
    monkeypatch.undo()
    assert order == ["best.pt", "last.pt"]  # best first: last.pt never names weights best.pt lacks
    assert not (out / "checkpoints" / "last.pt").exists()
    summary = main(argv(data, out, "--resume", epochs=2))  # continues from the complete, newer best.pt
    assert summary["selected_epoch"] == reference["selected_epoch"]
    assert summary["best_valid_accuracy"] == reference["best_valid_accuracy"]
    assert summary["test"] == reference["test"]
    best = load_checkpoint_file(out / "checkpoints" / "best.pt")
    history = best["history"]
    assert summary["best_valid_accuracy"] == history[summary["selected_epoch"] - 1]["valid_accuracy"]
    assert best["epoch"] + 1 == summary["selected_epoch"]
    assert [r["epoch"] for r in metrics_lines(out)] == [1, 2]


@pytest.mark.slow
def test_a_best_pt_that_is_not_the_selected_weights_stops_the_run_naming_it(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    epoch1 = load_checkpoint_file(out / "checkpoints" / "best.pt")
    main(argv(data, out, "--resume", epochs=2))
    last_path = out / "checkpoints" / "last.pt"
    last = load_checkpoint_file(last_path)
    # The state of the old write order after a kill: last.pt records epoch 2 as the best, best.pt holds epoch 1.
    last["best"] = {
        "epoch": 2,
        "accuracy": last["history"][1]["valid_accuracy"],
        "model_hash": content_hash(last["model"]),
    }
    atomic_save(last, last_path)
    atomic_save(epoch1, out / "checkpoints" / "best.pt")
    line = refused(
        capsys,
        lambda: main(argv(data, out, "--resume", epochs=2)),
        r"best\.pt does not hold the selected weights: it holds epoch 1, but the run's record selects "
        r"epoch 2",
    )
    assert "Epoch 2's weights are lost: retrain the run (--overwrite)" in line  # advice that works


@pytest.mark.slow
def test_checkpoint_records_the_best_weights_identity(data, tmp_path):
    out = tmp_path / "run"
    summary = main(argv(data, out, epochs=2))
    last = load_checkpoint_file(out / "checkpoints" / "last.pt")
    best = load_checkpoint_file(out / "checkpoints" / "best.pt")
    assert last["best"]["epoch"] == best["epoch"] + 1 == summary["selected_epoch"]
    assert last["best"]["model_hash"] == content_hash(best["model"])
    assert last["best"]["accuracy"] == summary["best_valid_accuracy"]


# ---------------------------------------------------------------------------------------------------------------
# 2. Metrics survive


@pytest.mark.slow
def test_resume_rebuilds_lost_and_torn_metrics_lines(data, tmp_path):
    out = tmp_path / "run"
    main(argv(data, out, epochs=2))
    original = metrics_lines(out)
    text = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(text[0][: len(text[0]) // 2])  # epoch 1 torn, epoch 2 lost
    main(argv(data, out, "--resume", epochs=3))
    rebuilt = metrics_lines(out)
    assert [r["epoch"] for r in rebuilt] == [1, 2, 3]
    assert rebuilt[:2] == original


def test_drop_metrics_after_skips_torn_lines_instead_of_a_bare_json_error(tmp_path):
    from examples.common.engine.reporting import RunFiles

    files = RunFiles(tmp_path)
    files.metrics.write_text('{"epoch": 1, "lr": 0.1}\n{"epoch": 2, "lr": 0.1}\n{"epoch": 3, "l')
    files.drop_metrics_after(2)
    assert [json.loads(x)["epoch"] for x in files.metrics.read_text().splitlines()] == [1, 2]


# ---------------------------------------------------------------------------------------------------------------
# 3, 4. One run per folder; nothing written before the configuration is accepted


@pytest.mark.slow
def test_a_new_run_into_a_used_folder_is_refused_with_exit_2(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        main(argv(data, out, "--seed", "1", epochs=2))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "already holds a run" in message and "--resume" in message and "--overwrite" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    # the engine refuses too when called directly (another script, a notebook)
    cfg = engine.config_from_args(build_parser(), build_parser().parse_args(argv(data, tmp_path / "x", epochs=1)))
    with pytest.raises(ValueError, match="already holds a run"):
        engine.run(make_task(cfg), dataclasses.replace(cfg, output_dir=str(out)))


@pytest.mark.slow
def test_overwrite_starts_afresh(data, tmp_path):
    out = tmp_path / "run"
    main(argv(data, out, epochs=2))
    (out / "checkpoints" / ".last.pt.tmp-12345").write_bytes(b"half a checkpoint")
    summary = main(argv(data, out, "--overwrite", "--seed", "1", epochs=1))
    assert [r["epoch"] for r in metrics_lines(out)] == [1]  # not 1, 2, 1
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert load_checkpoint_file(out / "checkpoints" / "last.pt")["epoch"] == 0
    assert summary["selected_epoch"] == 1
    assert not list(out.rglob("*.tmp-*"))
    with pytest.raises(SystemExit):
        main(argv(data, out, "--overwrite", "--resume", epochs=1))


@pytest.mark.slow
def test_a_refused_resume_leaves_config_json_alone(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    config = (out / "config.json").read_bytes()
    metrics = (out / "metrics.jsonl").read_bytes()
    refused(
        capsys,
        lambda: main([*argv(data, out, "--resume", epochs=2), "--image-size", "20"]),
        "another configuration or other data: image_size: checkpoint 16 vs now 20",
    )
    assert (out / "config.json").read_bytes() == config
    assert (out / "metrics.jsonl").read_bytes() == metrics


# ---------------------------------------------------------------------------------------------------------------
# 5. Resume continues the same run on the same data


@pytest.mark.slow
def test_resume_accepts_a_moved_data_folder_and_refuses_other_data(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    other = tmp_path / "other"
    generate_ferplus(other, Splits(train=48, valid=16, test=16), seed=4)
    refused(
        capsys,
        lambda: main(argv(other, out, "--resume", epochs=2)),
        r"train split: other images \(their names\); "
        r"other labels .*; other image content .*valid split",
    )
    refused(
        capsys,
        lambda: main(argv(moved, out, "--resume", "--layout", "csv", epochs=2)),
        r"data option layout: checkpoint 'auto' vs now 'csv'",
    )
    summary = main(argv(moved, out, "--resume", epochs=2))  # the same data in another folder
    assert summary["selected_epoch"] in (1, 2)
    assert metrics_lines(out)[1]["changed_options"]["data_dir"] == str(moved)


@pytest.mark.slow
def test_options_changed_at_a_resume_are_recorded_per_epoch(data, tmp_path):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    config = json.loads((out / "config.json").read_text())
    summary = main(argv(data, out, "--resume", "--lr", "0.01", epochs=2))
    assert json.loads((out / "config.json").read_text()) == config  # what the run started with
    assert summary["config"]["lr"] == 0.05
    lines = metrics_lines(out)
    assert "changed_options" not in lines[0]
    assert lines[1]["changed_options"] == {"lr": 0.01, "epochs": 2} and lines[1]["lr"] == 0.01
    assert summary["options_changed_on_resume"] == {"2": {"lr": 0.01, "epochs": 2}}


def test_data_fingerprint_hashes_keys_labels_and_pixels(data):
    import hashlib

    cfg = engine.config_from_args(
        build_parser(), build_parser().parse_args(["--data-dir", str(data), "--output-dir", "unused", *FAST])
    )
    task = make_task(cfg)
    fingerprint = protocol.data_fingerprint(task, cfg)
    split = task.test.split
    pixels = hashlib.sha256(split.pixels.numpy().tobytes()).hexdigest()  # an independent pass over the pixels
    assert fingerprint["splits"]["test"]["content"] == pixels
    assert fingerprint["splits"]["test"]["keys"] == hashlib.sha256(json.dumps(task.test_keys).encode()).hexdigest()
    assert fingerprint["splits"]["test"]["images"] == len(task.test)
    assert fingerprint["options"] == {"layout": "auto", "label_mode": "majority"}
    relabelled = dataclasses.replace(task, test_labels=task.test_labels.roll(1))
    changed = protocol.data_fingerprint(relabelled, cfg)["splits"]["test"]
    assert changed["labels"] != fingerprint["splits"]["test"]["labels"]
    assert changed["content"] == fingerprint["splits"]["test"]["content"]


# ---------------------------------------------------------------------------------------------------------------
# 6, 7. Diverged or empty runs fail loudly


def test_divergence_stops_the_run_naming_the_epoch(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"diverged"):
        main([*argv(data, out, epochs=2), "--lr", "1e6", "--max-steps-per-epoch", "1"])
    assert not (out / "summary.json").exists()


def test_a_non_finite_step_in_the_middle_of_an_epoch_is_caught(data, tmp_path, monkeypatch):
    """One NaN loss among finite ones (not only the last steps) stops the run after that epoch."""
    from examples.common.engine import training

    real = training.loss_of
    calls = {"n": 0}

    def one_nan(criterion, out, target):
        loss = real(criterion, out, target)
        calls["n"] += 1
        if calls["n"] == 1:  # the first step of epoch 1; the second is finite
            return loss._replace(total=loss.total * float("nan"))
        return loss

    monkeypatch.setattr(training, "loss_of", one_nan)
    with pytest.raises(FloatingPointError, match=r"training diverged in epoch 1: .*first at step 1"):
        main(argv(data, tmp_path / "run", epochs=1))


def test_non_finite_predictions_are_an_error(data):
    class NaNModel(torch.nn.Module):
        def forward(self, image, landmarks=None):
            from examples.common.models import BaselineOutput

            return BaselineOutput(torch.full((image.shape[0], 8), float("nan")))

    cfg = engine.config_from_args(
        build_parser(), build_parser().parse_args(["--data-dir", str(data), "--output-dir", "unused", *FAST])
    )
    task = make_task(cfg)
    rt = engine.Runtime(torch.device("cpu"))
    n = len(task.test)
    with pytest.raises(FloatingPointError, match=rf"{n} of {n} predictions on the test split are NaN"):
        engine.predict(NaNModel(), task.test, cfg, rt, what="the test split")


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_empty_splits_are_errors_before_training(data, tmp_path, split):
    out = tmp_path / "run"
    cfg = engine.config_from_args(build_parser(), build_parser().parse_args(argv(data, out)))
    task = make_task(cfg)
    empty = torch.utils.data.Subset(getattr(task, split), [])
    changes = {split: empty}
    if split == "test":
        changes.update(test_keys=[], test_labels=torch.zeros(0, dtype=torch.long))
    name = {"train": "training", "valid": "validation", "test": "test"}[split]
    with pytest.raises(ValueError, match=rf"the {name} split\(s\) hold no images"):
        engine.run(dataclasses.replace(task, **changes), cfg)
    assert not out.exists()  # nothing written


# ---------------------------------------------------------------------------------------------------------------
# 10. Checkpoints: checksums, temporary files, --pretrained


@pytest.mark.slow
def test_a_flipped_byte_in_a_checkpoint_is_an_error_naming_the_file(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    path = out / "checkpoints" / "last.pt"
    ckpt = load_checkpoint_file(path)
    name, biggest = max(ckpt["model"].items(), key=lambda kv: kv[1].numel())
    raw = bytearray(path.read_bytes())
    at = raw.find(biggest.contiguous().view(torch.uint8).numpy().tobytes()[:64])
    assert at > 0, name
    raw[at + 10] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"{path} is damaged"):
        load_checkpoint_file(path)
    # last.pt damaged, best.pt (the same epoch) intact: the resume continues from best.pt, with a warning
    summary = main(argv(data, out, "--resume", epochs=2))
    assert "is damaged" in capsys.readouterr().err
    assert [r["epoch"] for r in metrics_lines(out)] == [1, 2] and summary["selected_epoch"] in (1, 2)
    (out / "checkpoints" / "best.pt").unlink()
    raw = bytearray((out / "checkpoints" / "last.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (out / "checkpoints" / "last.pt").write_bytes(bytes(raw))
    refused(capsys, lambda: main(argv(data, out, "--resume", epochs=2)), r"no intact checkpoint is left: move it out")


def test_content_hash_is_stable_across_save_and_load(tmp_path):
    obj = {
        "model": {"w": torch.randn(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)},
        "epoch": 3,
        "best": {"accuracy": 0.25, "epoch": None},
        "history": [{"lr": 0.1}],
        "state": {0: torch.ones(1)},
    }
    path = tmp_path / "c.pt"
    atomic_save({"format": checkpoints.CHECKPOINT_FORMAT, "config": {}, "class_names": [], **obj}, path)
    loaded = load_checkpoint_file(path)
    obj = {"config": {}, "class_names": [], **obj}
    assert content_hash(loaded) == content_hash({"format": checkpoints.CHECKPOINT_FORMAT, **obj})
    changed = {**obj, "model": {**obj["model"], "w": obj["model"]["w"] + 1e-7}}
    assert content_hash(changed) != content_hash(obj)


@pytest.mark.slow
def test_stale_temporary_files_are_removed_at_the_next_start(data, tmp_path):
    out = tmp_path / "run"
    main(argv(data, out, epochs=1))
    stale = [out / "checkpoints" / ".last.pt.tmp-4242", out / ".config.json.tmp-4242"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    main(argv(data, out, "--resume", epochs=2))
    assert not any(p.exists() for p in stale)


@pytest.mark.slow
def test_a_pretrained_run_resumes_and_predicts_after_the_file_moved(data, tmp_path):
    from examples.common.models import small_cnn
    from examples.predict import main as predict
    from PIL import Image

    pretrained = tmp_path / "pretrained.pth"
    torch.manual_seed(0)
    torch.save(small_cnn().state_dict(), pretrained)
    out = tmp_path / "run"
    main(argv(data, out, "--pretrained", str(pretrained), epochs=1))
    pretrained.rename(tmp_path / "elsewhere.pth")
    summary = main(argv(data, out, "--pretrained", str(pretrained), "--resume", epochs=2))
    assert summary["config"]["pretrained"] == str(pretrained)
    face = tmp_path / "face.png"
    Image.new("L", (48, 48), 128).save(face)
    results = predict(["--checkpoint", str(out / "checkpoints" / "best.pt"), str(face)])
    assert len(results) == 1


@pytest.mark.slow
def test_affectnet_resume_refuses_another_holdout_margin_or_balance(tmp_path, capsys):
    from examples.affectnet.train import main as affectnet_main
    from examples.common.synthetic import Splits, generate_affectnet

    data = tmp_path / "affectnet"
    generate_affectnet(data, Splits(train=48, test=16), layout="csv", image_size=48, seed=1)
    fast = ["--data-dir", str(data), "--output-dir", str(tmp_path / "run"), *fast_options(16, max_steps=1)]
    affectnet_main([*fast, "--epochs", "1"])
    for option, value, shown in (
        ("--holdout-fraction", "0.2", "holdout_fraction: checkpoint 0.05 vs now 0.2"),
        ("--face-margin", "0.1", "face_margin: checkpoint 0.0 vs now 0.1"),
        ("--balance", "oversample", "balance: checkpoint 'none' vs now 'oversample'"),
    ):
        refused(
            capsys,
            lambda o=option, v=value: affectnet_main([*fast, "--epochs", "2", "--resume", o, v]),
            rf"another configuration or other data: .*data option {shown}",
        )
    summary = affectnet_main([*fast, "--epochs", "2", "--resume"])
    assert summary["selected_epoch"] in (1, 2)
