"""Fixtures the chart and image tests share: the tool binaries and a copy of the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.chart_copy import copy_chart
from tools.tools import INSTALL_HINT, ToolError, Tools, ensure_tools


@pytest.fixture(scope="session")
def tools() -> Tools:
    """helm, kubectl and hadolint from .tools (tools/tools.py)."""
    try:
        return ensure_tools()
    except ToolError as err:
        pytest.fail(
            f"helm or hadolint is not available: {err}\nInstall it: {INSTALL_HINT}", pytrace=False
        )


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart, rendered by the tests (a placeholder CRD if gencrd has not run)."""
    return copy_chart(tmp_path_factory.mktemp("chart"))
