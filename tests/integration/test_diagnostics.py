"""What a member tells an operator about itself without a debugger: SIGUSR1 dumps its tasks."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration


def test_sigusr1_logs_every_task_and_the_member_keeps_serving(members: MemberRegistry) -> None:
    member = members.new("pyetcd")
    assert member.proc is not None
    member.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "SIGUSR1:" not in member.log_tail(400):
        assert time.monotonic() < deadline, member.log_tail()
        time.sleep(0.05)
    dump = member.log_tail(400)
    for task in ("raft loop", "tick loop", "backend loop"):
        assert task in dump, dump
    assert "etcdserver.py:" in dump  # frames with file and line
    assert member.etcdctl("put", "/after", "dump").returncode == 0
    member.check_alive()
