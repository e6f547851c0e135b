"""ReadIndex (thesis 6.4): a read point confirmed by a heartbeat quorum in the leader's term."""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import StateType
from pyetcd.raft.read_only import ReadOnlyOption, ReadState

from tests.unit.raft.network import Network


def test_read_index_is_answered_only_after_a_heartbeat_quorum() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    commit = net[1].raw.raft.raft_log.committed
    net.block(lambda m: m.type == raft_pb2.MsgHeartbeatResp)
    net[1].raw.read_index(b"r1")
    net.stabilize()
    assert net[1].read_states == []  # heartbeats went out, no quorum acknowledged them
    hb = [m for rd in net[1].readies for m in rd.messages if m.type == raft_pb2.MsgHeartbeat]
    assert hb and hb[-1].context == b"r1"
    net.unblock()
    net.tick_and_stabilize(1)  # the next heartbeat round carries r1 and gets acknowledged
    assert net[1].read_states == [ReadState(commit, b"r1")]


def test_one_acknowledgement_plus_the_leader_is_a_quorum_of_three() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net[1].raw.read_index(b"r")
    net.stabilize()
    assert [rs.request_ctx for rs in net[1].read_states] == [b"r"]


def test_a_deposed_leader_cannot_serve_a_read_index() -> None:
    # The reason ReadIndex needs the heartbeat round: an old leader that does not know it was
    # replaced must not serve reads at its stale commit index.
    net = Network([1, 2, 3], check_quorum=False, pre_vote=False)
    net.elect(1)
    net.isolate(1)
    net.campaign(2)
    net.stabilize()
    net.propose(2, b"newer")
    net.stabilize()
    assert net.state(1) == StateType.LEADER  # it does not know
    net[1].raw.read_index(b"stale?")
    net.tick_and_stabilize(5)
    assert net[1].read_states == []


def test_read_index_waits_until_the_leader_committed_an_entry_of_its_term() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    # 2 becomes leader, but its term's empty entry is not acknowledged yet.
    net.block(lambda m: m.type == raft_pb2.MsgAppResp)
    net[1].raw.transfer_leadership(2)
    net.stabilize()
    assert net.leader() == 2
    r2 = net[2].raw.raft
    assert r2.raft_log.committed < r2.raft_log.last_index()
    net[2].raw.read_index(b"r")
    net.tick_and_stabilize(2)
    assert net[2].read_states == []  # its commit index may still be behind the old leader's
    net.unblock()
    net.tick_and_stabilize(2)
    assert len(net[2].read_states) == 1
    rs = net[2].read_states[0]
    # The read index covers the new term's entry, hence everything the old leader committed.
    assert rs.index == r2.raft_log.last_index() and r2.raft_log.term(rs.index) == r2.term


def test_read_index_on_a_follower_is_answered_by_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    net[3].raw.read_index(b"on 3")
    net.stabilize()
    assert net[3].read_states == [ReadState(net[1].raw.raft.raft_log.committed, b"on 3")]


def test_several_pending_reads_are_confirmed_by_one_heartbeat_round() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.block(lambda m: m.type == raft_pb2.MsgHeartbeatResp)
    for ctx in (b"a", b"b", b"c"):
        net[1].raw.read_index(ctx)
        net.stabilize()
    net.unblock()
    net.tick_and_stabilize(1)
    assert [rs.request_ctx for rs in net[1].read_states] == [b"a", b"b", b"c"]


def test_a_single_voter_answers_read_index_without_a_round_trip() -> None:
    net = Network([1])
    net.elect(1)
    net[1].raw.read_index(b"solo")
    net.stabilize()
    assert [rs.request_ctx for rs in net[1].read_states] == [b"solo"]


def test_lease_based_reads_are_answered_at_once() -> None:
    net = Network([1, 2, 3], read_only_option=ReadOnlyOption.LEASE_BASED)
    net.elect(1)
    net.isolate(1)
    net[1].raw.read_index(b"lease")
    net.drain()
    assert [rs.request_ctx for rs in net[1].read_states] == [b"lease"]
