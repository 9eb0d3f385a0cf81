"""Every code snippet of the user guide runs: the ``>>>`` examples of each ``docs/*.rst`` page, as doctests.

Shell commands live in ``.. code-block:: bash`` blocks and are not run; Python never goes into a plain
code block, so no snippet can escape these tests (pinned below).
"""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Pages whose snippets need an optional extra; where it is missing the page is skipped, with the reason.
NEEDS = {
    "deployment.rst": (("onnx", "onnxscript", "onnxruntime"), "pip install 'region-attention[onnx]'"),
    "backbones.rst": (("timm", "safetensors"), "pip install 'region-attention[timm]'"),
}


def test_pages_found():
    names = {p.stem for p in PAGES}
    assert {
        "index",
        "quickstart",
        "conventions",
        "method",
        "paper_vs_code",
        "beyond_faces",
        "examples",
        "benchmarks",
        "api",
    } <= names


#: Pages whose snippets take seconds (a training run, exports, ResNet-18s): in the full suite only.
SLOW_PAGES = {"beyond_faces.rst", "conventions.rst", "cropping.rst", "deployment.rst", "examples.rst", "quickstart.rst"}


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p for p in PAGES],
    ids=[p.name for p in PAGES],
)
def test_snippets_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchvision", reason="the docs' snippets use torchvision backbones")
    modules, install = NEEDS.get(page.name, ((), ""))
    for module in modules:
        pytest.importorskip(module, reason=f"docs/{page.name} needs {module}: {install}")
    if modules and not {"dynamo", "dynamic_shapes"} <= set(inspect.signature(torch.onnx.export).parameters):
        pytest.skip(f"docs/{page.name} needs torch.onnx.export(dynamic_shapes=...), torch {torch.__version__} lacks it")
    monkeypatch.syspath_prepend(str(ROOT))  # the examples page imports the repository's `examples` package
    result = doctest.testfile(str(page), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} snippets in docs/{page.name} failed (see stdout)"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_only_in_doctests(page: Path) -> None:
    """Python in a plain code block would never run; write it as a ``>>>`` doctest instead."""
    text = page.read_text()
    blocks = re.findall(r"^\s*\.\. (?:code-block|code|sourcecode)::\s*(\S+)", text, flags=re.MULTILINE)
    python = [lang for lang in blocks if lang.lower() in {"python", "py", "python3", "pycon", "ipython"}]
    assert not python, f"docs/{page.name} has Python code blocks that no test runs: use >>> doctests"
