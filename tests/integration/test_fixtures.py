"""Proof of the process fixtures themselves: start, readiness, restart, kill -9, failures.

These run against upstream etcd (and, through the parametrized ``member`` fixture, against
pyetcd too), so that a broken harness cannot hide behind a broken server or the reverse.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.integration import cluster
from tests.integration.cluster import BinaryMissingError, Cluster, Member, MemberError
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration


def test_member_serves_kv(member: Member) -> None:
    put = member.etcdctl("put", "fixture-key", "fixture-value")
    assert put.returncode == 0, put.stderr
    assert put.stdout == "OK\n"
    got = member.etcdctl("get", "fixture-key", "--print-value-only")
    assert got.stdout == "fixture-value\n"


def test_upstream_survives_restart_and_kill9(upstream: Member) -> None:
    assert upstream.etcdctl("put", "durable", "1").returncode == 0
    upstream.restart()
    assert upstream.starts == 2
    assert upstream.etcdctl("get", "durable", "--print-value-only").stdout == "1\n"
    assert upstream.etcdctl("put", "durable", "2").returncode == 0
    upstream.restart(sig=signal.SIGKILL)
    assert upstream.proc is not None
    assert upstream.etcdctl("get", "durable", "--print-value-only").stdout == "2\n"
    # the log file accumulates both runs
    assert upstream.log_path.read_text().count("==== start #") == 3


def test_stop_returns_exit_code_and_is_idempotent(upstream: Member) -> None:
    code = upstream.stop()
    assert code is not None
    assert not upstream.running
    assert upstream.stop() == code


def test_early_exit_reports_log_tail(tmp_path: Path) -> None:
    member = Member("etcd", tmp_path / "bad", extra_flags=["--no-such-flag"])
    try:
        with pytest.raises(MemberError) as info:
            member.start_and_wait(timeout=20)
    finally:
        member.stop()
    message = str(info.value)
    assert "exited early" in message
    assert "no-such-flag" in message  # etcd's own complaint, from the log tail


def test_missing_pyetcd_binary_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "PYETCD_BIN", tmp_path / "nowhere" / "pyetcd")
    member = Member("pyetcd", tmp_path / "m")
    with pytest.raises(BinaryMissingError, match="make setup"):
        member.start()
    assert member.proc is None


def test_missing_binary_fails_through_the_fixture(
    members: MemberRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "PYETCD_BIN", tmp_path / "nowhere" / "pyetcd")
    with pytest.raises(pytest.fail.Exception, match="make setup"):
        members.new("pyetcd")


def test_three_member_upstream_cluster(tmp_path: Path) -> None:
    group = Cluster("etcd", tmp_path, size=3)
    try:
        group.start()
        first, _, last = group.members
        listed = json.loads(first.etcdctl("member", "list", "-w", "json").stdout)
        assert sorted(m["name"] for m in listed["members"]) == ["m0", "m1", "m2"]
        assert first.etcdctl("put", "replicated", "yes").returncode == 0
        deadline = time.monotonic() + 10
        while True:  # serializable reads on a follower catch up asynchronously
            got = last.etcdctl("get", "replicated", "--consistency=s", "--print-value-only")
            if got.stdout == "yes\n" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got.stdout == "yes\n"
    finally:
        group.stop()
