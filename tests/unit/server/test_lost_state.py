"""The pure parts of issue 11 in pyetcd: panics, --force-new-cluster's log, etcd's
isMemberBootstrapped test."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from pyetcd import panic as panic_mod
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.log import RaftLog
from pyetcd.raft.storage import MemoryStorage
from pyetcd.server.membership import Member
from pyetcd.server.storage import force_new_cluster_entries, is_bootstrapped, member_ids_in_log


class ExitedError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _raise_exited(code: int) -> NoReturn:
    raise ExitedError(code)


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panic_mod, "exit_process", _raise_exited)


def test_a_broken_invariant_panics_with_etcds_status(
    exits: None, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ExitedError) as ended:
        panic_mod.panic_on_invariant(AssertionError("tocommit(9) is out of range"), "a heartbeat")
    assert ended.value.code == 2
    assert "panic: tocommit(9) is out of range" in caplog.text
    assert "broken invariant in a heartbeat" in caplog.text


def test_a_panic_reaches_stderr_when_the_log_goes_to_a_file(
    exits: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    log_file = logging.FileHandler(tmp_path / "log")
    try:
        root.handlers = [log_file]
        with pytest.raises(ExitedError):
            panic_mod.panic("lost")
        # Go writes its panic to stderr whatever the logger: the termination message has it.
        assert capsys.readouterr().err == "panic: lost\n"
        # Logged to stderr already: not twice.
        root.handlers = [logging.StreamHandler(sys.stderr)]
        with pytest.raises(ExitedError):
            panic_mod.panic("lost")
        assert capsys.readouterr().err == "panic: lost\n"
    finally:
        root.handlers = saved
        log_file.close()
    assert "panic: lost" in (tmp_path / "log").read_text()


@pytest.mark.parametrize(
    "fault", [OSError("connection reset"), ValueError("bad frame"), TimeoutError()]
)
def test_a_fault_does_not_panic(exits: None, fault: Exception) -> None:
    panic_mod.panic_on_invariant(fault, "a peer connection")  # returns: the caller handles it


def test_raft_raises_etcds_lost_log_message() -> None:
    raft_log = RaftLog(MemoryStorage())
    with pytest.raises(AssertionError) as raised:
        raft_log.commit_to(38)
    assert str(raised.value) == (
        "tocommit(38) is out of range [lastIndex(0)]. "
        "Was the raft log corrupted, truncated, or lost?"
    )
    assert panic_mod.is_invariant(raised.value)


def _cc(
    index: int, kind: raft_pb2.ConfChangeType.ValueType, node_id: int, term: int = 1
) -> raft_pb2.Entry:
    cc = raft_pb2.ConfChange(type=kind, node_id=node_id)
    return raft_pb2.Entry(
        Term=term, Index=index, Type=raft_pb2.EntryConfChange, Data=cc.SerializeToString()
    )


def _normal(index: int, term: int) -> raft_pb2.Entry:
    return raft_pb2.Entry(Term=term, Index=index, Data=b"x")


def test_member_ids_in_log_follow_the_snapshot_then_the_conf_changes() -> None:
    snap = raft_pb2.Snapshot()
    snap.metadata.index = 10
    snap.metadata.conf_state.voters.extend([1, 2, 3])
    entries = [
        _cc(11, raft_pb2.ConfChangeAddLearnerNode, 4),
        _normal(12, 2),
        _cc(13, raft_pb2.ConfChangeRemoveNode, 2),
    ]
    assert member_ids_in_log(snap, entries, fallback=[]) == {1, 3, 4}
    # A snapshot without a configuration: the backend's members stand in.
    bare = raft_pb2.Snapshot()
    assert member_ids_in_log(bare, [], fallback=[7, 8]) == {7, 8}
    assert member_ids_in_log(None, [_cc(1, raft_pb2.ConfChangeAddNode, 5)], fallback=[9]) == {5}


def test_force_new_cluster_drops_the_uncommitted_tail_and_removes_the_others() -> None:
    entries = [_normal(i, 2) for i in range(1, 8)]
    hs = raft_pb2.HardState(term=3, vote=1, commit=5)
    forced, log_after, appended = force_new_cluster_entries(hs, entries, 1, {1, 2, 3})
    assert [e.Index for e in log_after] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.Index for e in log_after[:5]] == [e.Index for e in entries[:5]]
    removed = [raft_pb2.ConfChange.FromString(e.Data) for e in appended]
    assert [(c.type, c.node_id) for c in removed] == [
        (raft_pb2.ConfChangeRemoveNode, 2),
        (raft_pb2.ConfChangeRemoveNode, 3),
    ]
    # Appended in the current term right after the commit index, and committed by fiat.
    assert [(e.Index, e.Term) for e in appended] == [(6, 3), (7, 3)]
    assert (forced.term, forced.vote, forced.commit) == (3, 1, 7)


def test_force_new_cluster_of_a_lone_member_appends_nothing() -> None:
    hs = raft_pb2.HardState(term=2, vote=1, commit=4)
    forced, log_after, appended = force_new_cluster_entries(
        hs, [_normal(i, 2) for i in range(1, 6)], 1, {1}
    )
    assert appended == []
    assert [e.Index for e in log_after] == [1, 2, 3, 4]
    assert forced.commit == 4


def test_a_member_counts_as_bootstrapped_once_it_published_client_urls() -> None:
    assert not is_bootstrapped(None)
    # Added by `member add` (no name) or listed by a new cluster's bootstrap (name only).
    assert not is_bootstrapped(Member(1, ("http://a:2380",)))
    assert not is_bootstrapped(Member(1, ("http://a:2380",), name="m0"))
    assert is_bootstrapped(Member(1, ("http://a:2380",), "m0", ("http://a:2379",)))
