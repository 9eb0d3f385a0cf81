"""The command lines of the example scripts, as a new user meets them: ``--help`` shows every option with its
help and default, required options are marked and grouped, one spelling per option across scripts (old
spellings are not kept), options a script cannot use are refused, and user errors are one line on
stderr with exit status 2, no traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from examples.affectnet.train import build_parser as affectnet_parser
from examples.ferplus.train import build_parser as ferplus_parser
from examples.predict import build_parser as predict_parser
from examples.rafdb.train import build_parser as rafdb_parser
from examples.sfew.train import build_parser as sfew_parser

from ..script_batch import Done, run_scripts
from .test_predict import checkpoint as make_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TRAIN: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "ferplus": ferplus_parser,
    "affectnet": affectnet_parser,
    "rafdb": rafdb_parser,
    "sfew": sfew_parser,
}
PARSERS = {**TRAIN, "predict": predict_parser}


def shown_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
    ]


def help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str] | Done, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "error:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("name", PARSERS)
def test_help_shows_help_and_default_of_every_option(name):
    parser = PARSERS[name]()
    actions = shown_options(parser)
    assert len(actions) > 5
    for action in actions:
        text = help_of(parser, action)
        assert text.strip(), f"{name}: {action.option_strings} has no help"
        if action.required:
            assert "required" in text, (name, action.option_strings, text)
        else:  # a default, or when it is required ("required without --demo")
            assert "default" in text or "required" in text, (name, action.option_strings, text)
    parser.format_help()  # renders (no bad % in a help text)


@pytest.mark.parametrize("name", PARSERS)
def test_required_options_are_grouped(name):
    parser = PARSERS[name]()
    groups = {g.title: {s for a in g._group_actions for s in a.option_strings} for g in parser._action_groups}
    expected = {"--checkpoint"} if name == "predict" else {"--data-dir", "--output-dir"}
    assert expected <= groups["required arguments"]
    for action in parser._actions:
        if action.required and action.option_strings:
            assert set(action.option_strings) <= groups["required arguments"]


def test_one_spelling_per_option_across_scripts():
    spellings: dict[str, set[tuple[str, ...]]] = {}
    for make in TRAIN.values():
        for action in shown_options(make()):
            spellings.setdefault(action.dest, set()).add(tuple(action.option_strings))
    assert {dest: s for dest, s in spellings.items() if len(s) > 1} == {}
    assert all(len(s.pop()) == 1 for s in spellings.values())  # no alias shown beside the spelling


def test_no_hidden_old_spellings(capsys):
    """Nothing was released, so no option keeps an old spelling (SFEW's --variant-layout is gone)."""
    parser = sfew_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--data-dir", "d", "--output-dir", "o", "--variant-layout", "frames"])
    assert info.value.code == 2 and "--variant-layout" in capsys.readouterr().err
    for make in PARSERS.values():
        hidden = [
            a
            for a in make()._actions
            if a.option_strings and a.help == argparse.SUPPRESS and a.dest != "max_steps_per_epoch"
        ]
        assert not hidden, [a.option_strings for a in hidden]


@pytest.mark.parametrize(
    ("name", "option"),
    [("sfew", "--radius"), ("ferplus", "--radius"), ("ferplus", "--subset-labels"), ("sfew", "--classes")],
)
def test_options_a_script_cannot_use_are_refused(name, option, capsys):
    parser = TRAIN[name]()
    assert option not in parser.format_help()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--data-dir", "d", "--output-dir", "o", option, "1"])
    assert info.value.code == 2
    assert option in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def batch(cli_tmp: Path) -> dict[str, Done]:
    """The command lines of the one-line-error tests below, run in one process (``tests/script_batch.py``: each
    as ``python SCRIPT ...`` would, with a fresh ``examples`` import); the first command line of each test
    also runs in a process of its own. Keyed ``missing-NAME`` and ``predict-broken``, ``-image``, ``-top``."""
    tmp = cli_tmp
    jobs = {}
    for name in TRAIN:
        missing, out = tmp / name / "no-such-folder", tmp / name / "o"
        jobs[f"missing-{name}"] = [f"examples/{name}/train.py", "--data-dir", str(missing), "--output-dir", str(out)]
    broken = tmp / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    ckpt, _ = make_checkpoint(tmp, "fixed")
    image = str(tmp / "a.png")
    jobs["predict-broken"] = ["examples/predict.py", "--checkpoint", str(broken), image]
    jobs["predict-image"] = ["examples/predict.py", "--checkpoint", str(ckpt), image]
    jobs["predict-top"] = ["examples/predict.py", "--checkpoint", str(ckpt), "--top", "0", image]
    done = run_scripts(list(jobs.values()))
    return dict(zip(jobs, done, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAIN)
def test_missing_data_folder_is_one_line(name, batch, cli_tmp):
    tmp = cli_tmp
    missing = tmp / name / "no-such-folder"
    if name == "ferplus":  # in a process of its own; the others in the batch
        result = run_script(f"examples/{name}/train.py", "--data-dir", str(missing), "--output-dir", str(tmp / "own"))
        assert_one_line_error(result, "--data-dir", str(missing))
        assert not (tmp / "own").exists()  # refused before anything was written
    assert_one_line_error(batch[f"missing-{name}"], "--data-dir", str(missing))
    assert not (tmp / name / "o").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("name", "dataset"), [("ferplus", "FERPlus"), ("affectnet", "AffectNet"), ("rafdb", "RAF-DB"), ("sfew", "SFEW")]
)
def test_data_folder_of_another_layout_is_one_line(name, dataset, tmp_path, capsys):
    """A folder that exists but holds no dataset the reader knows (e.g. the parent of the real one)."""
    wrong = tmp_path / "downloads"
    (wrong / "some_folder").mkdir(parents=True)
    (wrong / "notes.txt").write_text("not a dataset\n")
    main = __import__(f"examples.{name}.train", fromlist=["main"]).main
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(wrong), "--output-dir", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"examples/{name}/train.py: error: --data-dir: no {dataset} data"), err[0]
    assert f"in {wrong}: expected" in err[0]  # names the folder and what it looked for
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("name", TRAIN)
@pytest.mark.parametrize(("option", "value"), [("--epochs", "0"), ("--lr", "fast"), ("--recipe", "mine")])
def test_bad_option_values_are_one_line(name, option, value, tmp_path, capsys):
    module = {
        "ferplus": "examples.ferplus.train",
        "affectnet": "examples.affectnet.train",
        "rafdb": "examples.rafdb.train",
        "sfew": "examples.sfew.train",
    }[name]
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert option in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.slow
def test_predict_missing_checkpoint_and_image_are_one_line(tmp_path, batch):
    result = run_script("examples/predict.py", "--checkpoint", str(tmp_path / "none.pt"), str(tmp_path / "a.png"))
    assert_one_line_error(result, "none.pt")  # in a process of its own; the others in the batch
    assert_one_line_error(batch["predict-broken"], "broken.pt")
    assert_one_line_error(batch["predict-image"], "a.png")
    assert_one_line_error(batch["predict-top"], "--top")


def test_predict_usage_line_is_clean():
    usage = predict_parser().format_usage()
    assert usage.startswith("usage: examples/predict.py --checkpoint CKPT")
    assert "--detect PHOTO" in usage and len(usage.splitlines()) <= 3
