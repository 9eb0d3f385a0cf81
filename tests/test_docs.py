"""The Sphinx docs build offline with warnings as errors and nitpicky cross-references."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .background import Background, python

ROOT = Path(__file__).resolve().parents[1]


def sphinx_command(folder: Path) -> list[str] | None:
    """The warnings-as-errors build into ``folder / "html"``; ``None`` without Sphinx (the test skips)."""
    if importlib.util.find_spec("sphinx") is None:
        return None
    return python(
        "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "-q", str(ROOT / "docs"), str(folder / "html")
    )


#: The build takes seconds in a process of its own: it runs while the suite does (tests/background.py).
BACKGROUND = {"test_docs_build_without_warnings": sphinx_command}


@pytest.mark.slow
def test_docs_build_without_warnings(request: pytest.FixtureRequest, background: Background) -> None:
    pytest.importorskip("sphinx", reason="install the docs extra: pip install -e '.[dev]'")
    result = background.result(request.node)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (background.folder(request.node) / "html" / "api.html").exists()
