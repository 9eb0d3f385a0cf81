"""Every file path and command named in README.md, CONTRIBUTING.md and docs/*.rst exists and runs: repository
paths exist, ``python -m MODULE`` modules are importable, and every ``python path/to/script.py`` named answers
``--help``."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .script_batch import Done, run_scripts

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.rst"))]
#: Folders of the repository a path in the docs may start with (``region_attention/`` means the package).
TOP = ("src/", "examples/", "benchmarks/", "docs/", "tests/", "tools/", "scripts/", ".ci/", ".github/")
_PATH = re.compile(
    r"(?<![\w./-])((?:\.ci|\.github|src|examples|benchmarks|docs|tests|tools|scripts|region_attention)"
    r"/[\w./*-]*[\w*])"
)
_SCRIPT = re.compile(r"\bpython (?:-[A-Za-z] )*([\w./-]+\.py)\b")
_MODULE = re.compile(r"\bpython -m ([\w.]+)")
#: Paths the docs name that a build or a run writes, not the repository.
_WRITTEN = ("docs/_build",)


def _text() -> dict[Path, str]:
    return {doc: doc.read_text(encoding="utf-8") for doc in DOCS if doc.is_file()}


def _named_paths() -> list[tuple[str, str]]:
    found = []
    for doc, text in _text().items():
        for match in _PATH.finditer(text):
            path = match.group(1).rstrip(".")
            if path.startswith("region_attention/"):
                path = "src/" + path
            if not path.startswith(_WRITTEN):
                found.append((doc.relative_to(ROOT).as_posix(), path))
    return sorted(set(found))


def test_the_docs_name_paths_at_all() -> None:
    paths = {p for _, p in _named_paths()}
    assert "examples/ferplus/train.py" in paths and "examples/common/engine" in paths


@pytest.mark.parametrize(("doc", "path"), _named_paths())
def test_named_path_exists(doc: str, path: str) -> None:
    found = any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()
    assert found, f"{doc} names {path}, which is not in the repository"


def _modules() -> list[str]:
    return sorted({m for text in _text().values() for m in _MODULE.findall(text)})


@pytest.mark.parametrize("module", _modules())
def test_named_module_is_importable(module: str) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"
    finally:
        sys.path.remove(str(ROOT))


def _scripts() -> list[str]:
    return sorted({s for text in _text().values() for s in _SCRIPT.findall(text)})


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def helps() -> dict[str, Done]:
    """``SCRIPT --help`` of every named script, all in one process (see ``tests/script_batch.py``): each still
    runs as ``__main__`` from its own folder, with the repository's modules and ``sys.path`` reset between them."""
    scripts = [s for s in _scripts() if (ROOT / s).is_file()]
    return {d.args[0]: d for d in run_scripts([[s, "--help"] for s in scripts], env=_env(), timeout=600)}


@pytest.mark.slow
@pytest.mark.parametrize("script", _scripts())
def test_named_script_runs(script: str, helps: dict[str, Done]) -> None:
    assert (ROOT / script).is_file(), f"python {script}: no such file"
    done = helps[script]
    assert done.returncode == 0, f"python {script} --help failed:\n{done.stderr[-2000:]}"
    assert "usage:" in done.stdout, f"python {script} --help printed no usage:\n{done.stdout[-2000:]}"


@pytest.mark.slow
def test_a_named_script_runs_in_its_own_process(helps: dict[str, Done]) -> None:
    """The batch above stands in for ``python SCRIPT --help``; one script is run exactly that way, too."""
    script = "examples/ferplus/train.py"
    assert script in _scripts()
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"python {script} --help failed:\n{done.stderr[-2000:]}"
    assert done.stdout == helps[script].stdout
