"""RawNode: the Ready/Advance contract the server loop relies on."""

from __future__ import annotations

import random

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import Config, ProposalDroppedError, StateType
from pyetcd.raft.rawnode import RawNode, StepLocalMsgError, StepPeerNotFoundError
from pyetcd.raft.storage import MemoryStorage


def new_node(voters: list[int], node_id: int = 1) -> tuple[RawNode, MemoryStorage]:
    storage = MemoryStorage(conf_state=raft_pb2.ConfState(voters=voters))
    return RawNode(Config(id=node_id, storage=storage, rng=random.Random(1))), storage


def test_a_campaign_ready_persists_the_vote_before_asking_for_votes() -> None:
    node, _ = new_node([1, 2, 3])
    node.raft.pre_vote = False
    node.campaign()
    rd = node.ready()
    assert rd.hard_state == raft_pb2.HardState(term=1, vote=1, commit=0)
    assert rd.must_sync  # term and vote changed: fsync before sending the vote requests
    assert sorted((m.type, m.to) for m in rd.messages) == [
        (raft_pb2.MsgVote, 2),
        (raft_pb2.MsgVote, 3),
    ]
    assert rd.soft_state is not None and rd.soft_state.raft_state == StateType.CANDIDATE
    node.advance(rd)
    assert not node.has_ready()


def test_a_ready_is_handed_out_once() -> None:
    node, storage = new_node([1])
    node.campaign()
    rd = node.ready()
    assert [e.Data for e in rd.entries] == [b""]
    storage.append(rd.entries)
    node.advance(rd)
    rd2 = node.ready()
    assert rd2.entries == [] and [e.Index for e in rd2.committed_entries] == [1]
    assert rd2.hard_state is not None and rd2.hard_state.commit == 1
    assert not rd2.must_sync  # only the commit index moved
    node.advance(rd2)
    assert not node.has_ready()


def test_proposals_without_a_leader_are_dropped() -> None:
    node, _ = new_node([1, 2, 3])
    with pytest.raises(ProposalDroppedError):
        node.propose(b"x")


def test_local_messages_from_the_network_are_refused() -> None:
    node, _ = new_node([1, 2, 3])
    with pytest.raises(StepLocalMsgError):
        node.step(raft_pb2.Message(type=raft_pb2.MsgHup))


def test_responses_from_unknown_peers_are_refused() -> None:
    node, _ = new_node([1, 2, 3])
    m = raft_pb2.Message(type=raft_pb2.MsgAppResp, to=1, term=1)
    setattr(m, "from", 9)
    with pytest.raises(StepPeerNotFoundError):
        node.step(m)


def test_status_reports_progress_only_on_the_leader() -> None:
    node, storage = new_node([1])
    assert node.status().progress == {}
    node.campaign()
    rd = node.ready()
    storage.append(rd.entries)
    node.advance(rd)
    st = node.status()
    assert st.raft_state == StateType.LEADER and st.lead == 1
    assert st.progress[1].match == 1 and st.voters == [1]


def test_bootstrap_writes_the_membership_as_committed_conf_changes() -> None:
    storage = MemoryStorage()
    node = RawNode(Config(id=1, storage=storage, rng=random.Random(1)))
    node.bootstrap([1, 2, 3])
    rd = node.ready()
    assert [e.Type for e in rd.entries] == [raft_pb2.EntryConfChange] * 3
    assert rd.hard_state == raft_pb2.HardState(term=1, vote=0, commit=3)
    storage.append(rd.entries)
    storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    rd2 = node.ready()
    assert [e.Index for e in rd2.committed_entries] == [1, 2, 3]
    assert node.status().voters == [1, 2, 3]
    with pytest.raises(ValueError):
        node.bootstrap([1])


def test_a_restarted_node_resumes_from_its_storage() -> None:
    node, storage = new_node([1])
    node.campaign()
    for _ in range(3):
        rd = node.ready()
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        node.advance(rd)
        if rd.entries:
            node.propose(b"x")
    restarted = RawNode(Config(id=1, storage=storage, applied=0, rng=random.Random(2)))
    assert restarted.raft.term == node.raft.term
    assert restarted.raft.raft_log.committed == storage.hard_state.commit
    assert restarted.raft.state == StateType.FOLLOWER
