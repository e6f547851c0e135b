"""`tools/gobuild.py` and the Go tools it builds (etcdutl, versitygw): where a build is cached and
when it counts as built.

The builds themselves (Go, the module proxy) run in `make etcdutl` / `make versitygw`; here only
the cache rules: a binary counts only next to a stamp naming its version, so a half-finished or
older build is rebuilt rather than used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import etcdutl, versitygw
from tools.gobuild import STAMP, GoTool

TOOLS = [pytest.param(etcdutl.TOOL, id="etcdutl"), pytest.param(versitygw.TOOL, id="versitygw")]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYETCD_E2E_CACHE", str(tmp_path))
    return tmp_path


def _put_binary(tool: GoTool) -> Path:
    tool.cache_dir().mkdir(parents=True, exist_ok=True)
    path = tool.binary_path()
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("tool", TOOLS)
def test_cache_layout_follows_the_e2e_cache(cache: Path, tool: GoTool) -> None:
    assert tool.binary_path("v9.9.9") == cache / f"{tool.name}-v9.9.9" / tool.name
    assert f"make {tool.name}" in tool.hint


@pytest.mark.parametrize("tool", TOOLS)
def test_a_binary_counts_only_with_a_matching_stamp(cache: Path, tool: GoTool) -> None:
    path = _put_binary(tool)
    stamp = tool.cache_dir() / STAMP
    assert tool.cached_binary() is None  # no stamp: an interrupted build
    stamp.write_text(json.dumps({"version": "v0.0.1"}))
    assert tool.cached_binary() is None  # another version's stamp
    stamp.write_text(json.dumps({"version": tool.version}))
    assert tool.cached_binary() == path
    path.chmod(0o644)
    assert tool.cached_binary() is None  # not executable


@pytest.mark.parametrize("tool", TOOLS)
def test_ensure_binary_does_not_rebuild_a_cached_one(cache: Path, tool: GoTool) -> None:
    path = _put_binary(tool)
    (tool.cache_dir() / STAMP).write_text(json.dumps({"version": tool.version}))
    assert tool.ensure_binary(log=False) == (path, False)


def test_the_modules_name_their_pinned_tools() -> None:
    assert etcdutl.cached_binary == etcdutl.TOOL.cached_binary
    assert (etcdutl.TOOL.version, versitygw.TOOL.version) == (
        etcdutl.ETCDUTL_VERSION,
        versitygw.VERSITYGW_VERSION,
    )
