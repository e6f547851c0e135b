"""Leader election (paper 5.2, 5.4.1; thesis 4.2.3, 9.6): timeouts, votes, pre-vote, leases."""

from __future__ import annotations

import random

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import Config, StateType, set_from
from pyetcd.raft.rawnode import RawNode
from pyetcd.raft.storage import MemoryStorage

from tests.unit.raft.network import Network


def lone_node(seed: int, election_tick: int = 10) -> RawNode:
    storage = MemoryStorage(conf_state=raft_pb2.ConfState(voters=[1, 2, 3]))
    return RawNode(
        Config(id=1, storage=storage, election_tick=election_tick, rng=random.Random(seed))
    )


def ticks_until_campaign(node: RawNode) -> int:
    for n in range(1, 1000):
        node.tick()
        if node.raft.state != StateType.FOLLOWER:
            return n
    raise AssertionError("never campaigned")


def test_a_follower_that_hears_no_leader_campaigns_after_a_randomized_timeout() -> None:
    timeouts = {ticks_until_campaign(lone_node(seed)) for seed in range(50)}
    # Drawn from [election_tick, 2 * election_tick), and really spread over it.
    assert min(timeouts) >= 10 and max(timeouts) < 20
    assert len(timeouts) >= 5


def test_the_election_timeout_is_drawn_from_the_injected_rng_only() -> None:
    assert ticks_until_campaign(lone_node(7)) == ticks_until_campaign(lone_node(7))


def test_a_candidate_wins_with_votes_from_a_majority() -> None:
    net = Network([1, 2, 3, 4, 5], pre_vote=False)
    net.crash(4)
    net.crash(5)
    net.elect(1)
    assert net.term(1) == 2
    assert {net[i].raw.raft.lead for i in (1, 2, 3)} == {1}


def test_a_candidate_without_a_majority_does_not_become_leader() -> None:
    net = Network([1, 2, 3, 4, 5], pre_vote=False)
    for i in (3, 4, 5):
        net.crash(i)
    net.campaign(1)
    net.stabilize()
    assert net.state(1) == StateType.CANDIDATE
    assert net.leader() is None


def test_each_server_votes_for_at_most_one_candidate_per_term() -> None:
    net = Network([1, 2, 3], pre_vote=False)
    net.isolate(3)
    net.campaign(1)  # term 2: 2 votes for 1
    net.stabilize()
    net.heal()
    r2 = net[2].raw.raft
    assert (r2.term, r2.vote) == (2, 1)
    # Candidate 3 at the same term 2 asks 2 for its vote.
    vote = raft_pb2.Message(type=raft_pb2.MsgVote, to=2, term=2, index=99, logTerm=99)
    set_from(vote, 3)
    net[2].raw.step(vote)
    reply = net[2].raw.raft.msgs[-1]
    assert reply.type == raft_pb2.MsgVoteResp and reply.reject
    assert r2.vote == 1


def test_a_voter_denies_a_candidate_whose_log_is_less_up_to_date() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"only on 1 and 2")
    net.stabilize()
    net.heal()
    # 3 missed the entry: 1 and 2 refuse to elect it, whatever its term.
    net.block(lambda m: m.type in (raft_pb2.MsgApp, raft_pb2.MsgHeartbeat))
    net.campaign(3)
    net.stabilize()
    assert net.state(3) != StateType.LEADER
    granted = [
        m
        for i in (1, 2)
        for rd in net[i].readies
        for m in rd.messages
        if m.type == raft_pb2.MsgVoteResp and m.to == 3 and not m.reject
    ]
    assert granted == []
    net.unblock()
    # The up-to-date members elect one of themselves and 3 gets the entry.
    lead = net.tick_until_leader()
    assert lead in (1, 2)
    net.tick_and_stabilize(3)
    assert b"only on 1 and 2" in net[3].applied_data()


def test_a_candidate_steps_down_when_a_leader_of_its_term_appends() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)  # term 2
    net.isolate(2)
    net.campaign(2)  # 2: candidate of term 3, alone
    net.stabilize()
    assert (net.state(2), net.term(2)) == (StateType.CANDIDATE, 3)
    net.campaign(3)  # 3 wins term 3 with 1's vote
    net.stabilize()
    assert net.state(3) == StateType.LEADER and net.term(3) == 3
    net.heal()
    net.tick_and_stabilize(2)
    # 2 hears from the leader of its own term: it becomes its follower without a new election.
    assert (net.state(2), net.term(2), net[2].raw.raft.lead) == (StateType.FOLLOWER, 3, 3)


def test_a_stale_leader_steps_down_when_it_sees_a_higher_term() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.campaign(2)
    net.stabilize()
    assert net.leader() == 2 and net.state(1) == StateType.LEADER
    net.heal()
    net.tick_and_stabilize(2)
    assert net.state(1) == StateType.FOLLOWER
    assert net.term(1) == net.term(2)


def test_a_single_voter_elects_itself_and_commits_on_persist() -> None:
    net = Network([1])
    net.elect(1)
    assert net.propose(1, b"a")
    node = net[1].raw
    rd = node.ready()
    assert [e.Data for e in rd.entries] == [b"a"]
    assert rd.committed_entries == []  # not durable yet, hence not committed
    net[1].storage.append(rd.entries)
    node.advance(rd)
    rd2 = node.ready()
    assert [e.Data for e in rd2.committed_entries] == [b"a"]
    assert rd2.hard_state is not None and rd2.hard_state.commit == rd.entries[-1].Index


def test_split_votes_are_resolved_by_randomized_timeouts() -> None:
    for seed in range(10):
        net = Network([1, 2, 3, 4, 5], seed=seed, pre_vote=False)
        # Everyone campaigns at once: votes split, then random timeouts break the tie.
        for i in range(1, 6):
            net.campaign(i)
        net.stabilize()
        lead = net.tick_until_leader()
        assert net.leaders_by_term[net.term(lead)] == lead


def test_pre_vote_keeps_a_rejoining_partitioned_node_from_disrupting_the_leader() -> None:
    net = Network([1, 2, 3], pre_vote=True)
    net.elect(1)
    term = net.term(1)
    net.isolate(3)
    net.tick_and_stabilize(100)  # 3 keeps pre-campaigning, alone
    assert net.term(3) == term  # a failed pre-vote does not bump the term
    net.heal()
    net.tick_and_stabilize(30)
    assert net.leader() == 1 and net.term(1) == term
    assert net.state(3) == StateType.FOLLOWER


def test_without_pre_vote_a_rejoining_partitioned_node_disrupts_the_leader() -> None:
    # The contrast that shows what pre-vote is for.
    net = Network([1, 2, 3], pre_vote=False)
    net.elect(1)
    term = net.term(1)
    net.isolate(3)
    net.tick_and_stabilize(100)
    assert net.term(3) > term
    net.heal()
    net.tick_and_stabilize(30)
    assert net.term(1) > term  # the old leader was deposed by 3's higher term


def test_check_quorum_makes_an_isolated_leader_step_down() -> None:
    net = Network([1, 2, 3], check_quorum=True)
    net.elect(1)
    net.isolate(1)
    # Within one election timeout it still leads; after two checks without a quorum it steps down.
    net.tick_and_stabilize(21)
    assert net.state(1) == StateType.FOLLOWER
    assert not net.propose(1, b"no leader here")
    lead = net.tick_until_leader()
    assert lead in (2, 3)


def test_without_check_quorum_an_isolated_leader_stays_leader() -> None:
    net = Network([1, 2, 3], check_quorum=False, pre_vote=False)
    net.elect(1)
    net.isolate(1)
    net.tick_and_stabilize(50)
    assert net.state(1) == StateType.LEADER


def test_leader_lease_voters_ignore_a_candidate_while_they_hear_from_a_leader() -> None:
    net = Network([1, 2, 3], check_quorum=True, pre_vote=False)
    net.elect(1)
    term = net.term(1)
    # 3 is cut from the leader only (asymmetric partition): it times out and campaigns.
    net.cut |= {(1, 3), (3, 1)}
    net.tick_and_stabilize(25)
    assert net.term(3) > term
    # 2 still hears from 1, so it ignores 3's higher term: no vote, no term change.
    assert net.term(2) == term
    assert net.leader() == 1 and net.state(1) == StateType.LEADER
