"""`tools/gobuild.py` and the Go tools it builds (etcdutl, versitygw, etcd35): where a build is
cached and when it counts as built.

The builds themselves (Go, the module proxy) run in `make etcdutl` / `make versitygw` / `make
etcd35`; here only the cache rules: a binary counts only next to a stamp naming its version (and,
for a tool of several binaries, next to all of them), so a half-finished or older build is
rebuilt rather than used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import etcd35, etcdutl, versitygw
from tools.gobuild import STAMP, GoTool

TOOLS = [
    pytest.param(etcdutl.TOOL, id="etcdutl"),
    pytest.param(versitygw.TOOL, id="versitygw"),
    pytest.param(etcd35.TOOL, id="etcd35"),
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYETCD_E2E_CACHE", str(tmp_path))
    return tmp_path


def _put_binary(tool: GoTool) -> Path:
    """Every binary of the tool in its cache dir; the main one's path."""
    tool.cache_dir().mkdir(parents=True, exist_ok=True)
    for binary in tool.binaries:
        path = tool.binary_path(binary=binary)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return tool.binary_path()


@pytest.mark.parametrize("tool", TOOLS)
def test_cache_layout_follows_the_e2e_cache(cache: Path, tool: GoTool) -> None:
    main = next(iter(tool.binaries))
    assert tool.binary_path("v9.9.9") == cache / f"{tool.name}-v9.9.9" / main
    assert f"make {tool.name}" in tool.hint
    assert f"python -m tools.{tool.name} build" in tool.hint


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
    assert (etcdutl.TOOL.version, versitygw.TOOL.version, etcd35.TOOL.version) == (
        etcdutl.ETCDUTL_VERSION,
        versitygw.VERSITYGW_VERSION,
        etcd35.ETCD35_VERSION,
    )


def test_etcd35_builds_the_server_as_etcd_and_etcdctl_beside_it(cache: Path) -> None:
    assert etcd35.TOOL.binaries == {
        "etcd": "go.etcd.io/etcd/server/v3",
        "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
    }
    directory = cache / f"etcd35-{etcd35.ETCD35_VERSION}"
    assert etcd35.binary_path() == directory / "etcd"
    assert etcd35.binary_path(binary="etcdctl") == directory / "etcdctl"


def test_a_build_missing_one_of_its_binaries_does_not_count(cache: Path) -> None:
    tool = etcd35.TOOL
    path = _put_binary(tool)
    (tool.cache_dir() / STAMP).write_text(json.dumps({"version": tool.version}))
    assert tool.cached_binary() == path
    assert etcd35.cached_etcdctl() == tool.cache_dir() / "etcdctl"
    (tool.cache_dir() / "etcdctl").unlink()  # an interrupted build between the two binaries
    assert tool.cached_binary() is None
    assert etcd35.cached_etcdctl() is None
