"""Fixtures of the linearizability suite: the porcupine checker binary, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.linearizability.checker_build import CheckerBuildError, build_checker


@pytest.fixture(scope="session")
def checker() -> Path:
    """The checker binary (``go build`` on first use, then cached by source hash)."""
    try:
        return build_checker()
    except CheckerBuildError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)
