"""`tools/versitygw.py`: where the versitygw build is cached and when it counts as built.

The build itself (Go, the module proxy) runs in `make versitygw`; here only the cache rules: a
binary counts only next to a stamp naming its version, so a half-finished or older build is
rebuilt rather than used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import versitygw


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYETCD_E2E_CACHE", str(tmp_path))
    return tmp_path


def _put_binary(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "versitygw"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_cache_layout_follows_the_e2e_cache(cache: Path) -> None:
    assert versitygw.binary_path("v1.9.9") == cache / "versitygw-v1.9.9" / "versitygw"


def test_a_binary_counts_only_with_a_matching_stamp(cache: Path) -> None:
    directory = versitygw.cache_dir()
    path = _put_binary(directory)
    assert versitygw.cached_binary() is None  # no stamp: an interrupted build
    (directory / versitygw.STAMP).write_text(json.dumps({"version": "v1.0.0"}))
    assert versitygw.cached_binary() is None  # another version's stamp
    (directory / versitygw.STAMP).write_text(json.dumps({"version": versitygw.VERSITYGW_VERSION}))
    assert versitygw.cached_binary() == path
    path.chmod(0o644)
    assert versitygw.cached_binary() is None  # not executable


def test_ensure_binary_does_not_rebuild_a_cached_one(cache: Path) -> None:
    directory = versitygw.cache_dir()
    path = _put_binary(directory)
    (directory / versitygw.STAMP).write_text(json.dumps({"version": versitygw.VERSITYGW_VERSION}))
    assert versitygw.ensure_binary(log=False) == (path, False)
