"""Put the repository root on ``sys.path`` so the tests can import ``examples.*``; shared fixtures."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test: two busy cores make its thread pool crawl, one thread keeps example
    runs fast and bit-reproducible. Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_line_error(capsys: pytest.CaptureFixture[str]) -> Callable[[str], AbstractContextManager[None]]:
    """``with one_line_error(PATTERN): main(...)``: the script must exit with status 2 and one line on stderr
    (warnings aside) matching ``PATTERN``, without a traceback."""

    @contextmanager
    def check(pattern: str) -> Iterator[None]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            yield
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
        assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert re.search(pattern, lines[0]), lines[0]

    return check
