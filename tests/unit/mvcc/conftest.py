"""Fixtures of the mvcc unit tests.

``make_backend`` is the one place that decides which backends the tests run on: every test runs
on the small in-memory backend (fast, and it fails loudly if a range iterator is held across a
write) and on the real bbolt file backend. ``backend`` is one fresh backend from it; tests that
need two (e.g. comparing the hashes of two stores) call ``make_backend`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.backend.contract import Backend

from tests.unit.mvcc.memory_backend import MemoryBackend

BackendFactory = Callable[[], Backend]


@pytest.fixture(params=["memory", "bbolt"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    made: list[Backend] = []

    def make() -> Backend:
        b: Backend
        if request.param == "memory":
            b = MemoryBackend()
        else:
            b = BoltBackend(str(tmp_path / f"db{len(made)}"))
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def backend(make_backend: BackendFactory) -> Backend:
    return make_backend()
