"""Shared fixtures: the same suite runs on CPU here and on CUDA wherever a GPU is present.

``--device cuda`` (or ``REGION_ATTENTION_TEST_DEVICE=cuda``) selects the device; by default the tests run
on the CPU, plus a CUDA copy of the ``device``-parametrised tests when a GPU is visible.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from .background import KEY, Background

# CI runs the same examples every time (a red build must be reproducible); locally hypothesis explores freely.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        action="append",
        default=None,
        help="device(s) to run device-parametrised tests on (cpu, cuda); default: cpu, and cuda when available",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the selected tests' background checks (``tests/background.py``) while the rest of the suite runs."""
    background = session.config.stash[KEY] = Background()
    if not session.config.option.collectonly:
        for item in session.items:
            background.start(item)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    line = config.stash[KEY].summary() if KEY in config.stash else None
    if line:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if KEY in config.stash:
        config.stash[KEY].close()


@pytest.fixture(scope="session")
def background(request: pytest.FixtureRequest) -> Background:
    """The session's background checks: ``background.result(request.node)`` (see ``tests/background.py``)."""
    if KEY not in request.config.stash:
        request.config.stash[KEY] = Background()
    return request.config.stash[KEY]


def _devices(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--device")
    if not chosen:
        env = os.environ.get("REGION_ATTENTION_TEST_DEVICE")
        chosen = env.split(",") if env else ["cpu", "cuda"]
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        params = []
        for name in _devices(metafunc.config):
            marks = [pytest.mark.cuda] if name.startswith("cuda") else []
            if name.startswith("cuda") and not torch.cuda.is_available():
                marks.append(pytest.mark.skip(reason="CUDA is not available"))
            params.append(pytest.param(name, marks=marks, id=name))
        metafunc.parametrize("device", params)


#: Absolute/relative tolerances per dtype, for comparisons against float64 references.
TOLERANCES = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (1e-5, 1e-4),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (2e-3, 2e-3),
}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> dict[str, float]:
    atol, rtol = TOLERANCES[dtype]
    return {"atol": atol, "rtol": rtol}
