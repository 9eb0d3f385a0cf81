"""The FERPlus script end to end on generated data: one epoch, resume equals an uninterrupted run, torchrun."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from examples.common.engine import load_checkpoint_file
from examples.common.synthetic import Splits, generate_ferplus
from examples.ferplus.train import main

from ..background import python_code
from ._runs import fast_options

ROOT = Path(__file__).resolve().parents[2]
FAST = fast_options(32)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ferplus") / "data"
    generate_ferplus(out, Splits(train=96, valid=32, test=48), seed=3)
    return out


def subsets(data: Path) -> list[str]:
    return [
        "--subset",
        f"occlusion={data / 'jianfei_occlusion_list.txt'}",
        "--subset",
        f"pose30={data / 'pose_30_ferplus_list.txt'}",
    ]


@pytest.mark.slow
def test_one_epoch_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    summary = main(["--data-dir", str(data), "--output-dir", str(out), "--epochs", "1", *FAST, *subsets(data)])
    for name in (
        "metrics.jsonl",
        "summary.json",
        "confusion_matrix.png",
        "training_curves.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (out / name).stat().st_size > 0, name
    written = json.loads((out / "summary.json").read_text())
    assert written["selected_epoch"] == 1
    assert (
        written["data"]["test"]["kept"]
        == written["test"]["images"]
        == len(torch.load(out / "test_predictions.pt", weights_only=True)["labels"])
    )
    cm = torch.tensor(written["test"]["confusion_matrix"])
    assert cm.sum() == written["test"]["images"]
    assert abs(written["test"]["accuracy"] - cm.diag().sum().item() / cm.sum().item()) < 1e-9
    occ = written["subsets"]["occlusion"]
    assert occ["matched"] + occ["unmatched"] == occ["entries"] > 0
    assert set(occ["accuracy_by_type"]) <= {"0", "1", "2", "3"}
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {
        "epoch",
        "lr",
        "train_loss",
        "train_cls_loss",
        "train_rb_loss",
        "valid_accuracy",
        "train_images_per_s",
    } <= set(record)
    ckpt = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "config"} <= set(ckpt)
    assert ckpt["class_names"][0] == "neutral"
    assert summary["test"]["accuracy"] == written["test"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--model", "baseline"], ["--label-mode", "probability", "--recipe", "authors"]])
def test_other_models_and_recipes(data, tmp_path, extra):
    out = tmp_path / "run"
    main(["--data-dir", str(data), "--output-dir", str(out), "--epochs", "1", *FAST, *extra])
    config = json.loads((out / "config.json").read_text())
    if "authors" in extra:
        assert config["variant"] == "authors" and config["whole_position"] == "last" and config["margin"] == 0.1
        assert config["lr"] == 0.05  # explicit options win over the recipe
    assert (out / "summary.json").exists()


@pytest.mark.slow
def test_resume_reaches_the_same_result(data, tmp_path):
    common = ["--data-dir", str(data), *FAST, "--label-mode", "probability"]
    straight = tmp_path / "straight"
    main([*common, "--output-dir", str(straight), "--epochs", "2"])
    resumed = tmp_path / "resumed"
    main([*common, "--output-dir", str(resumed), "--epochs", "1"])
    main([*common, "--output-dir", str(resumed), "--epochs", "2", "--resume"])
    a = load_checkpoint_file(straight / "checkpoints" / "last.pt")
    b = load_checkpoint_file(resumed / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    lines_a = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in lines_a] == [r["train_loss"] for r in lines_b]
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((resumed / "summary.json").read_text())
    assert sa["test"] == sb["test"]


@pytest.mark.slow
def test_resume_refuses_another_configuration(data, tmp_path, one_line_error):
    out = tmp_path / "run"
    main(["--data-dir", str(data), "--output-dir", str(out), "--epochs", "1", *FAST])
    with one_line_error(r"another configuration or other data: image_size: checkpoint 32 vs now 40"):
        main(
            [
                "--data-dir",
                str(data),
                "--output-dir",
                str(out),
                "--epochs",
                "2",
                "--resume",
                *[v if v != "32" else "40" for v in FAST],
            ]
        )


def test_bad_inputs_name_what_is_wrong(data, tmp_path, one_line_error):
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    lines = (broken / "fer2013.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 2)[0][:-4] + ",Training"  # pixel string too short
    (broken / "fer2013.csv").write_text("\n".join(lines) + "\n")
    with one_line_error(r"fer2013.csv.*line 6"):
        main(["--data-dir", str(broken), "--output-dir", str(tmp_path / "o"), "--epochs", "1", *FAST])
    bad_list = tmp_path / "list.txt"
    bad_list.write_text("this is not a subset list\n")
    with one_line_error(r"list\.txt"):
        main(
            [
                "--data-dir",
                str(data),
                "--output-dir",
                str(tmp_path / "o2"),
                "--epochs",
                "1",
                *FAST,
                "--subset",
                f"bad={bad_list}",
            ]
        )


#: The data of the ``data`` fixture, generated the same way into ``sys.argv[1]``, then ``sys.argv[2:]`` run with
#: OMP_NUM_THREADS=1 and the repository and src/ on PYTHONPATH.
TORCHRUN = """
import os, subprocess
from pathlib import Path
from examples.common.synthetic import Splits, generate_ferplus
generate_ferplus(Path(sys.argv[1]), Splits(train=96, valid=32, test=48), seed=3)
path = os.pathsep.join([sys.path[0], os.path.join(sys.path[0], "src"), os.environ.get("PYTHONPATH", "")])
env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
sys.exit(subprocess.run(sys.argv[2:], env=env, timeout=300).returncode)
"""


def torchrun(folder: Path) -> list[str]:
    data, out = folder / "data", folder / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "examples" / "ferplus" / "train.py"),
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--epochs",
        "1",
        *FAST,
        *subsets(data),
    ]
    return python_code(TORCHRUN, str(data), *cmd)


#: Two training processes take ten seconds: they run while the suite does (tests/background.py).
BACKGROUND = {"test_torchrun_two_processes_on_cpu": torchrun}


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(request, background):
    result = background.result(request.node)
    out = background.folder(request.node) / "ddp"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["world_size"] == 2
    assert summary["test"]["images"] == summary["data"]["test"]["kept"]  # every test image counted once
    assert result.stdout.count("test accuracy") == 1  # only rank 0 reports
