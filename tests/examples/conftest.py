"""Put the repository root on ``sys.path`` so the tests can import ``examples.*``; shared fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
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
