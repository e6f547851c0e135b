"""Leadership transfer (Raft thesis 3.10): MsgTransferLeader, catch-up, MsgTimeoutNow."""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import StateType

from tests.unit.raft.network import Network


def test_leadership_moves_to_an_up_to_date_follower_at_once() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    term = net.term(1)
    net[1].raw.transfer_leadership(2)
    rd_msgs = [m for m in net[1].raw.raft.msgs]
    assert [m.type for m in rd_msgs] == [raft_pb2.MsgTimeoutNow]
    net.stabilize()
    assert net.leader() == 2 and net.term(2) == term + 1
    assert net.state(1) == StateType.FOLLOWER


def test_a_lagging_transferee_is_caught_up_before_it_is_told_to_campaign() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.stabilize()
    net.heal()
    net[1].raw.transfer_leadership(3)
    # Catch-up first (at the latest on the next heartbeat response), no TimeoutNow yet.
    assert raft_pb2.MsgTimeoutNow not in [m.type for m in net[1].raw.raft.msgs]
    assert not net.propose(1, b"during transfer")  # proposals wait for the new leader
    net.stabilize()
    net.tick_and_stabilize(2)
    assert net.leader() == 3
    timeout_now = [
        m for rd in net[1].readies for m in rd.messages if m.type == raft_pb2.MsgTimeoutNow
    ]
    assert len(timeout_now) == 1
    assert net[3].applied_data() == [b"%d" % k for k in range(5)]
    assert net.propose(3, b"after")
    net.stabilize()
    assert all(m.applied_data()[-1] == b"after" for m in net.members.values())


def test_transfer_can_be_requested_on_a_follower() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net[2].raw.transfer_leadership(2)  # forwarded to the leader
    net.stabilize()
    assert net.leader() == 2


def test_a_transfer_to_an_unreachable_member_is_abandoned_after_an_election_timeout() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.stabilize()
    net[1].raw.transfer_leadership(3)
    assert net[1].raw.raft.lead_transferee == 3
    net.tick_and_stabilize(10)
    assert net[1].raw.raft.lead_transferee == 0
    assert net.leader() == 1 and net.propose(1, b"accepted again")


def test_a_transfer_bypasses_the_leader_lease_of_the_voters() -> None:
    # Voters ignore campaigns while they hear from a leader, except one the leader asked for.
    net = Network([1, 2, 3], check_quorum=True, pre_vote=True)
    net.elect(1)
    net.tick_and_stabilize(2)
    net[1].raw.transfer_leadership(3)
    net.stabilize()
    assert net.leader() == 3


def test_a_transfer_to_a_learner_is_ignored() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    net[1].raw.transfer_leadership(4)
    net.stabilize()
    assert net.leader() == 1 and net[1].raw.raft.lead_transferee == 0
