"""Single-step membership changes and learners (Raft thesis 4.1-4.2.1, etcd's ConfChange v1)."""

from __future__ import annotations

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.confchange import Changer, ConfChangeError
from pyetcd.raft.raft import StateType
from pyetcd.raft.tracker import ProgressTracker

from tests.unit.raft.network import Network


def cc(kind: raft_pb2.ConfChangeType.ValueType, node: int) -> raft_pb2.ConfChange:
    return raft_pb2.ConfChange(type=kind, node_id=node)


def change(net: Network, leader: int, conf: raft_pb2.ConfChange) -> None:
    net[leader].raw.propose_conf_change(conf)
    net.stabilize()


def conf(net: Network, i: int) -> tuple[list[int], list[int]]:
    return list(net[i].conf_state.voters), list(net[i].conf_state.learners)


def test_a_new_voter_joins_catches_up_and_counts_towards_the_quorum() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"before")
    net.stabilize()
    net.add_member(4)
    change(net, 1, cc(raft_pb2.ConfChangeAddNode, 4))
    net.tick_and_stabilize(2)
    assert all(conf(net, i) == ([1, 2, 3, 4], []) for i in (1, 2, 3, 4))
    assert net[4].applied_data() == [b"before"]
    # Four voters: a quorum is three, so the leader and 4 alone cannot commit.
    commit = net[1].raw.raft.raft_log.committed
    net.partition([1, 4], [2, 3])
    net.propose(1, b"needs three")
    net.stabilize()
    assert net[1].raw.raft.raft_log.committed == commit
    net.heal()
    net.tick_and_stabilize(2)
    assert net[4].applied_data() == [b"before", b"needs three"]


def test_a_removed_voter_no_longer_counts_towards_the_quorum() -> None:
    net = Network([1, 2, 3, 4])
    net.elect(1)
    change(net, 1, cc(raft_pb2.ConfChangeRemoveNode, 4))
    change(net, 1, cc(raft_pb2.ConfChangeRemoveNode, 3))
    assert conf(net, 1) == ([1, 2], [])
    net.isolate(3)
    net.isolate(4)
    net.propose(1, b"two of two")
    net.stabilize()
    assert net[2].applied_data() == [b"two of two"]


def test_a_removed_leader_steps_down_and_the_rest_elect_a_new_one() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    change(net, 1, cc(raft_pb2.ConfChangeRemoveNode, 1))
    assert net.state(1) == StateType.FOLLOWER
    net.crash(1)
    lead = net.tick_until_leader()
    assert lead in (2, 3)
    assert conf(net, lead) == ([2, 3], [])
    assert net.propose(lead, b"after")
    net.stabilize()
    assert net[2].applied_data() == net[3].applied_data() == [b"after"]


def test_conf_changes_are_applied_one_at_a_time() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.add_member(4)
    net.add_member(5)
    leader = net[1].raw
    # The second change is proposed before the first is applied: it becomes a no-op entry.
    leader.propose_conf_change(cc(raft_pb2.ConfChangeAddNode, 4))
    leader.propose_conf_change(cc(raft_pb2.ConfChangeAddNode, 5))
    net.tick_and_stabilize(3)
    assert conf(net, 1) == ([1, 2, 3, 4], [])
    conf_entries = [
        e
        for e in net[1].log_entries()
        if e.Type == raft_pb2.EntryConfChange and e.Index > 3  # after the bootstrap entries
    ]
    assert len(conf_entries) == 1
    # Once applied, the next change goes through.
    change(net, 1, cc(raft_pb2.ConfChangeAddNode, 5))
    net.tick_and_stabilize(2)
    assert conf(net, 5) == ([1, 2, 3, 4, 5], [])


def test_a_learner_receives_entries_but_never_counts_for_commit() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    assert net[4].applied_data() == [b"x"]
    commit = net[1].raw.raft.raft_log.committed
    net.partition([1, 4], [2, 3])
    net.propose(1, b"leader and learner are not a quorum")
    net.tick_and_stabilize(3)
    assert net[1].raw.raft.raft_log.committed == commit


def test_a_learner_never_campaigns() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    term = net.term(4)
    net.isolate(4)
    net.tick_and_stabilize(100)
    assert net.state(4) == StateType.FOLLOWER and net.term(4) == term
    net[4].raw.campaign()
    assert net.state(4) == StateType.FOLLOWER


def test_a_learner_vote_does_not_count() -> None:
    net = Network([1, 2, 3], learners=[4], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.partition([2, 4], [1, 3])
    net.campaign(2)  # 2 campaigns with only the learner reachable
    net.stabilize()
    asked = [m for rd in net[2].readies for m in rd.messages if m.type == raft_pb2.MsgVote]
    assert sorted(m.to for m in asked) == [1, 3]  # candidates only ask voters
    assert net.state(2) == StateType.CANDIDATE
    # Even a granted vote from the learner (one that does not know it is a learner) does not
    # count: {2, 4} is no quorum of the voters {1, 2, 3}.
    vote = raft_pb2.Message(type=raft_pb2.MsgVoteResp, to=2, term=net.term(2))
    setattr(vote, "from", 4)
    net[2].raw.step(vote)
    assert net.state(2) == StateType.CANDIDATE


def test_a_promoted_learner_becomes_a_voter() -> None:
    net = Network([1, 2, 3], learners=[4])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    change(net, 1, cc(raft_pb2.ConfChangeAddNode, 4))
    assert all(conf(net, i) == ([1, 2, 3, 4], []) for i in (1, 2, 3, 4))
    assert not net[4].raw.raft.is_learner
    # Now it counts: 1, 4 and 2 make a quorum of four while 3 is away.
    net.isolate(3)
    net.propose(1, b"y")
    net.stabilize()
    assert net[4].applied_data() == [b"x", b"y"]
    # And it may lead.
    net.heal()
    net[1].raw.transfer_leadership(4)
    net.tick_and_stabilize(3)
    assert net.leader() == 4


def test_a_new_learner_joins_through_a_conf_change() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.add_member(4)
    change(net, 1, cc(raft_pb2.ConfChangeAddLearnerNode, 4))
    net.tick_and_stabilize(2)
    assert conf(net, 4) == ([1, 2, 3], [4])
    assert net[4].raw.raft.is_learner


def test_the_changer_refuses_to_remove_every_voter() -> None:
    trk = ProgressTracker(max_inflight=4)
    cfg, prs = Changer(trk, 0).simple(cc(raft_pb2.ConfChangeAddNode, 1))
    trk.config, trk.progress = cfg, prs
    with pytest.raises(ConfChangeError):
        Changer(trk, 0).simple(cc(raft_pb2.ConfChangeRemoveNode, 1))
    # The tracker was not touched by the refused change.
    assert trk.config.voters == {1}


def test_the_changer_demotes_and_promotes_keeping_progress() -> None:
    trk = ProgressTracker(max_inflight=4)
    for i in (1, 2, 3):
        cfg, prs = Changer(trk, 10).simple(cc(raft_pb2.ConfChangeAddNode, i))
        trk.config, trk.progress = cfg, prs
    trk.progress[3].match = 7
    cfg, prs = Changer(trk, 10).simple(cc(raft_pb2.ConfChangeAddLearnerNode, 3))
    assert (cfg.voters, cfg.learners, prs[3].is_learner, prs[3].match) == ({1, 2}, {3}, True, 7)
    assert not trk.progress[3].is_learner  # computed on a copy
