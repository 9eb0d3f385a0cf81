"""Run many ``python SCRIPT ARGS...`` command lines in ONE fresh Python process, as if each had its own.

A fresh interpreter that imports torch costs about 3 s; tests that only check how a script behaves as a process
(its exit status, what it writes on stderr, that it runs as a script at all) pay that for every command line.
:func:`run_scripts` starts one process that imports the heavy third-party packages once, then runs each command
line in turn the way ``python SCRIPT`` would:

- ``sys.argv`` is the command line, ``sys.path[0]`` the script's folder (or the folder itself when a package folder
  with a ``__main__.py`` is run), the working directory the one asked for, and the script runs as ``__main__``
  (:func:`runpy.run_path`);
- the repository's own modules (everything imported from under the repository root except ``src/``) and
  ``sys.path`` are reset before each command line, so every script imports ``examples.*`` and bootstraps its
  ``sys.path`` afresh: a script that only worked because an earlier one set something up still fails;
- file descriptors 1 and 2 are redirected to files for the command line, so everything written there (print,
  argparse, warnings, C++ messages) is what the process would write;
- the exit status follows the interpreter's rules: ``SystemExit(None)`` is 0, ``SystemExit(int)`` that int,
  ``SystemExit(other)`` prints it and is 1; an uncaught exception prints its traceback and is 1; warnings filters
  are reset, so a warning shown for one command line is shown again for the next.

Tests keep at least one real ``subprocess.run`` per distinct behaviour and batch the rest here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Imported once by the batch process before any command line (third-party, not under the repository).
PRELOAD = ("torch", "torchvision", "numpy", "PIL.Image", "matplotlib", "region_attention")


@dataclass(frozen=True)
class Done:
    """What ``subprocess.run(..., capture_output=True, text=True)`` would return for one command line."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_scripts(
    jobs: list[list[str]], *, cwd: Path | str = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> list[Done]:
    """Run each ``[SCRIPT, *ARGS]`` of ``jobs`` (``SCRIPT`` relative to ``cwd`` or absolute) in one process
    started in ``cwd`` with ``env``; returns one :class:`Done` per job, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_text(json.dumps({"jobs": jobs, "cwd": str(cwd), "out": tmp}))
        run = subprocess.run(
            [sys.executable, __file__, str(spec)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        results = Path(tmp) / "results.json"
        if run.returncode != 0 or not results.is_file():
            raise RuntimeError(f"the script batch failed ({run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
        codes = json.loads(results.read_text())
        return [
            Done(
                job,
                code,
                (Path(tmp) / f"{i}.out").read_text(errors="replace"),
                (Path(tmp) / f"{i}.err").read_text(errors="replace"),
            )
            for i, (job, code) in enumerate(zip(jobs, codes, strict=True))
        ]


def _ours(module: object) -> bool:
    """A module of the repository (examples, benchmarks, tests ...), not the library under ``src/``."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(ROOT) and not path.is_relative_to(ROOT / "src")


def _run_one(args: list[str], cwd: str, out: str, err: str) -> int:  # pragma: no cover - runs in the batch process
    import runpy
    import traceback
    import warnings

    script = Path(cwd, args[0])
    sys.argv = list(args)
    sys.path[0] = str(script.resolve() if script.is_dir() else script.resolve().parent)
    os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        os.dup2(fout.fileno(), 1)
        os.dup2(ferr.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.resetwarnings()
                warnings.simplefilter("default")
                try:
                    runpy.run_path(str(script), run_name="__main__")
                    code = 0
                except SystemExit as stop:
                    if stop.code is None:
                        code = 0
                    elif isinstance(stop.code, int):
                        code = stop.code
                    else:
                        print(stop.code, file=sys.stderr)
                        code = 1
                except BaseException:  # the interpreter prints any uncaught exception
                    traceback.print_exc()
                    code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return code


def _main(spec_file: str) -> None:  # pragma: no cover - runs in the batch process
    import contextlib
    import importlib

    spec = json.loads(Path(spec_file).read_text())
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    path, argv0 = list(sys.path), sys.argv[0]
    codes = []
    ours: dict[str, bool] = {}  # module name -> one of the repository's (the same name is the same file)
    for i, args in enumerate(spec["jobs"]):
        for name, module in list(sys.modules.items()):
            if name not in ours:
                ours[name] = name != "__main__" and _ours(module)
            if ours[name]:
                del sys.modules[name]
        sys.path[:] = path
        codes.append(_run_one(args, spec["cwd"], f"{spec['out']}/{i}.out", f"{spec['out']}/{i}.err"))
    sys.argv[0] = argv0
    Path(spec["out"], "results.json").write_text(json.dumps(codes))


if __name__ == "__main__":
    _main(sys.argv[1])
