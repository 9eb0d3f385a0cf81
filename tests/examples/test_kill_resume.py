"""A real training process killed with SIGKILL at random moments (and twice at exact moments inside the
checkpoint writes), resumed each time, ends with exactly the summary, metrics and weights of an uninterrupted run.

The child is the FERPlus script with two hooks installed before it starts (see ``CHILD``): every checkpoint write
is slowed down (so random kills often land inside a write), and ``SELF_KILL`` makes the child SIGKILL itself at
an exact point: half-way through writing a temporary file, or between the rename of ``best.pt`` and the write
of ``last.pt``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from examples.common.engine import load_checkpoint_file
from examples.common.synthetic import Splits, generate_ferplus
from examples.ferplus.train import main

from ._runs import fast_options

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 5
FAST = [*fast_options(16, max_steps=2), "--epochs", str(EPOCHS)]

CHILD = r"""
import io, os, signal, sys, time
import torch
torch.set_num_threads(1)
slow = float(os.environ.get("SLOW_WRITE", "0"))
target = os.environ.get("SELF_KILL", "")  # "write:NAME:N" or "after:NAME:N" (the N-th write of NAME)
counts = {}
real_save, real_replace = torch.save, os.replace

def _hit(kind, name):
    if not target:
        return False
    want_kind, want_name, want_n = target.split(":")
    if kind != want_kind or want_name != name:
        return False
    counts[(kind, name)] = counts.get((kind, name), 0) + 1
    return counts[(kind, name)] == int(want_n)

def save(obj, f, *args, **kwargs):
    name = os.path.basename(getattr(f, "name", "")).split(".tmp-")[0].lstrip(".")
    if _hit("write", name):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # half a temporary file on disk
    real_save(obj, f, *args, **kwargs)
    time.sleep(slow)

def replace(src, dst, *args, **kwargs):
    time.sleep(slow)
    real_replace(src, dst, *args, **kwargs)
    if _hit("after", os.path.basename(str(dst))):
        os.kill(os.getpid(), signal.SIGKILL)

torch.save, os.replace = save, replace
from examples.ferplus.train import main
main(sys.argv[1:])
"""


def _launch(data: Path, out: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    ckpts = out / "checkpoints"
    has_checkpoint = (ckpts / "last.pt").exists() or (ckpts / "best.pt").exists()
    mode = ["--resume"] if has_checkpoint else ["--overwrite"]  # killed before the first checkpoint: afresh
    path = os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "SLOW_WRITE": "0.1", **env_extra}
    cmd = [sys.executable, "-c", CHILD, "--data-dir", str(data), "--output-dir", str(out), *FAST, *mode]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _written(out: Path) -> dict[str, int]:
    """What the run has written so far (file -> modification time), to see a launch make progress."""
    paths = [out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt", out / "metrics.jsonl"]
    return {p.name: p.stat().st_mtime_ns for p in paths if p.exists()}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    generate_ferplus(data, Splits(train=48, valid=16, test=16), seed=5)
    straight = tmp_path / "straight"
    reference = main(["--data-dir", str(data), "--output-dir", str(straight), *FAST])

    out = tmp_path / "killed"
    rng = random.Random(13)
    kills = [
        {"SELF_KILL": "after:best.pt:1"},  # epoch 1: best.pt renamed into place, last.pt not yet written
        {"SELF_KILL": "write:last.pt:1"},  # epoch 2: half of last.pt's temporary file written
        {},
        {},
    ]  # random moments after this launch's first write
    killed = 0
    for env_extra in kills:
        before = _written(out)
        proc = _launch(data, out, env_extra)
        if not env_extra:  # wait until this launch trains (a write after startup), then kill at a random moment
            deadline = time.monotonic() + 60
            while _written(out) == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        stderr = proc.stderr.read() if proc.stderr else ""
        print(f"launch {env_extra or 'random'}: exit {proc.returncode}, written {sorted(_written(out))}")
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert proc.returncode == 0, stderr[-3000:]
    assert killed >= 3  # the two exact kills and at least one random one
    final = _launch(data, out, {})
    final.wait(timeout=120)
    assert final.returncode == 0, (final.stderr.read() if final.stderr else "")[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    for key in ("selected_epoch", "best_valid_accuracy", "test", "subsets"):
        assert summary[key] == reference[key], key
    a = load_checkpoint_file(straight / "checkpoints" / "last.pt")
    b = load_checkpoint_file(out / "checkpoints" / "last.pt")
    assert b["epoch"] == EPOCHS - 1
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    best_a = load_checkpoint_file(straight / "checkpoints" / "best.pt")
    best_b = load_checkpoint_file(out / "checkpoints" / "best.pt")
    assert best_b["epoch"] == best_a["epoch"] == summary["selected_epoch"] - 1
    for key, value in best_a["model"].items():
        torch.testing.assert_close(best_b["model"][key], value, rtol=0, atol=0, msg=key)
    lines_a = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines_b] == list(range(1, EPOCHS + 1))
    strip = ("train_images_per_s", "changed_options")
    assert [{k: v for k, v in r.items() if k not in strip} for r in lines_b] == [
        {k: v for k, v in r.items() if k not in strip} for r in lines_a
    ]
    assert not list(out.rglob("*.tmp-*"))  # temporary files of the killed writes were removed
