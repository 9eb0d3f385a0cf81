"""Start the suite's long checks that run in processes of their own (mypy over a snippet, the Sphinx build, the
MIL --quick run, the two-seed demo, torchrun) when collection ends, one after another in the background at low
priority (``nice``), and let their tests collect the result when their turn comes.

Most example tests run torch on one thread (the ``one_thread`` fixture), so on a 2-core machine one core idles
through much of the suite; a check that runs in a process of its own and waits for nothing the suite does uses
that core instead of running while everything else waits. The check is the same command line as before (or, for an
in-process call, ``python -c`` making the same call and saving what it returns), run once, in a fresh temporary
folder; only *when* it runs changes. The test asserts everything it asserted before.

A test module opts in with ``BACKGROUND = {"test_name": command}``, where ``command(folder)`` returns the command
line to run in ``folder`` (or ``None`` when the test will skip anyway); the test calls
``background.result(request.node)`` and gets the ``CompletedProcess``. Selected tests only: ``-k``, ``-m`` and
node ids decide as usual, and a test run alone starts its command when it asks for the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ``command(folder) -> argv | None`` of a module's ``BACKGROUND`` table.
Command = Callable[[Path], "list[str] | None"]


@dataclass
class _Job:
    proc: subprocess.Popen[bytes]
    folder: Path
    started: float
    ended: float | None = None
    waited: float = 0.0  # seconds its test waited for it


def _lower_priority(argv: list[str]) -> list[str]:
    """``nice -n N ARGV`` where ``nice`` exists (a ``preexec_fn`` is unsafe here: the suite runs threads);
    ``N`` is ``REGION_ATTENTION_TEST_NICE`` (default 10; 0 runs them at the suite's priority)."""
    nice, level = shutil.which("nice"), os.environ.get("REGION_ATTENTION_TEST_NICE", "10")
    return [nice, "-n", level, *argv] if nice and level != "0" else argv


class Background:
    """The background checks of one pytest session. They run one at a time (one idle core), in the order their
    tests were collected; a test that asks for a result not started yet starts it at once."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._waiting: dict[str, tuple[list[str], Path]] = {}  # node id -> command line and folder, in order
        self._folders: list[Path] = []
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    def start(self, item: pytest.Item) -> None:
        """Queue ``item``'s command if its module names one and it is not queued yet."""
        module = getattr(item, "module", None)
        command: Command | None = getattr(module, "BACKGROUND", {}).get(getattr(item, "originalname", item.name))
        if command is None or item.nodeid in self._jobs or item.nodeid in self._waiting:
            return
        folder = Path(tempfile.mkdtemp(prefix="region-attention-bg-"))
        self._folders.append(folder)
        argv = command(folder)
        if argv is None:
            return
        with self._lock:
            self._waiting[item.nodeid] = (argv, folder)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run_queue, name="background checks", daemon=True)
                self._worker.start()

    def _launch(self, nodeid: str) -> _Job:
        """Start ``nodeid``'s command unless it has started; call with the lock held."""
        if nodeid in self._waiting:
            argv, folder = self._waiting.pop(nodeid)
            with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
                proc = subprocess.Popen(_lower_priority(argv), cwd=folder, stdout=out, stderr=err)
            self._jobs[nodeid] = _Job(proc, folder, time.monotonic())
        return self._jobs[nodeid]

    def _run_queue(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._waiting:
                    self._worker = None
                    return
                job = self._launch(next(iter(self._waiting)))
            job.proc.wait()
            job.ended = job.ended or time.monotonic()

    def result(self, item: pytest.Item, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Wait for ``item``'s command (starting it now if it has not started) and return what it did."""
        self.start(item)
        with self._lock:
            job = self._launch(item.nodeid)
        begin = time.monotonic()
        job.proc.wait(timeout=timeout)
        job.ended = job.ended or time.monotonic()
        job.waited += job.ended - begin if job.ended > begin else 0.0
        out = (job.folder / "stdout").read_text(errors="replace")
        err = (job.folder / "stderr").read_text(errors="replace")
        return subprocess.CompletedProcess(job.proc.args, job.proc.returncode, out, err)

    def folder(self, item: pytest.Item) -> Path:
        """The working directory ``item``'s command ran in (removed when the session ends)."""
        return self._jobs[item.nodeid].folder

    def summary(self) -> str | None:
        """One line for the end of the session: how long the checks ran beside the tests, how long tests waited."""
        done = {k: j for k, j in self._jobs.items() if j.ended is not None}
        if not done:
            return None
        ran = sum(j.ended - j.started for j in done.values() if j.ended is not None)
        waited = sum(j.waited for j in done.values())
        slowest = max(done, key=lambda k: done[k].waited)
        return (
            f"background checks: {len(done)} ran {ran:.1f} s beside the tests, which waited {waited:.1f} s for them "
            f"(longest wait {done[slowest].waited:.1f} s: {slowest})"
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._waiting.clear()
        for job in self._jobs.values():
            if job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


KEY = pytest.StashKey[Background]()


def python(*args: str) -> list[str]:
    """``python ARGS`` with this interpreter."""
    return [sys.executable, *args]


def python_code(code: str, *args: str) -> list[str]:
    """``python -c CODE ARGS`` with the repository root first on ``sys.path`` (``import examples`` works)."""
    return python("-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}", *args)
