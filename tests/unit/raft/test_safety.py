"""The Raft paper's safety properties (figure 3), checked on adversarial schedules.

The network asserts the properties on every Ready (see network.py); these tests drive schedules
aimed at each property, and first prove that the checks can fail at all.
"""

from __future__ import annotations

import pytest
from pyetcd.proto.raftpb import raft_pb2

from tests.unit.raft.network import Network, SafetyViolationError


def test_the_checkers_detect_a_state_machine_safety_violation() -> None:
    net = Network([1, 2, 3])
    net._record_committed(1, 10, (2, raft_pb2.EntryNormal, b"a"))
    with pytest.raises(SafetyViolationError):
        net._record_committed(2, 10, (2, raft_pb2.EntryNormal, b"b"))


def test_the_checkers_detect_two_leaders_in_one_term() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.leaders_by_term[net.term(1)] = 2
    with pytest.raises(SafetyViolationError):
        net._check_new_leader(net[1])


def test_the_checkers_detect_a_log_matching_violation() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.stabilize()
    # Corrupt 3's persisted log behind Raft's back: same last index and term, different data.
    net.crash(3)
    entries = net[3].log_entries()
    forged = raft_pb2.Entry()
    forged.CopyFrom(entries[-2])
    forged.Data = b"forged"
    net[3].storage.append([forged, entries[-1]])
    with pytest.raises(SafetyViolationError):
        net.check_log_matching()


def test_election_safety_at_most_one_leader_per_term_under_split_votes() -> None:
    for seed in range(20):
        net = Network([1, 2, 3, 4, 5], seed=seed, pre_vote=False, check_quorum=False)
        net.reorder = True
        for _ in range(3):
            for i in range(1, 6):
                net.campaign(i)
            net.stabilize()
            net.tick_and_stabilize(25)
        assert len(net.leaders_by_term) >= 1  # each checked unique as it was elected


def test_leader_append_only_and_log_matching_across_leader_changes() -> None:
    net = Network([1, 2, 3, 4, 5], check_quorum=False, pre_vote=False)
    for round_ in range(6):
        lead = net.tick_until_leader()
        minority = [i for i in net.members if i != lead][:2]
        net.partition([lead], minority)
        for k in range(3):
            net.propose(lead, b"r%d-%d" % (round_, k))  # stranded on the old leader
        net.stabilize()
        net.heal()
        net.isolate(lead)
        net.tick_until_leader()
        net.heal()
        net.tick_and_stabilize(5)
        net.check_log_matching()
    net.check_applied_prefixes()


def test_leader_completeness_committed_entries_survive_every_leader_change() -> None:
    net = Network([1, 2, 3])
    committed: list[bytes] = []
    for k in range(8):
        lead = net.tick_until_leader()
        data = b"c%d" % k
        net.propose(lead, data)
        net.stabilize()
        committed.append(data)
        # Depose the leader; the next one must hold everything committed so far (checked by
        # the network on election) and keep it applied everywhere.
        net.crash(lead)
        net.tick_until_leader()
        net.restart(lead)
        net.tick_and_stabilize(3)
    for m in net.members.values():
        assert m.applied_data() == committed


@pytest.mark.parametrize(
    ("drop", "dup", "reorder"),
    [(0.3, 0.0, False), (0.0, 0.3, False), (0.0, 0.0, True), (0.2, 0.2, True)],
    ids=["dropped", "duplicated", "reordered", "all-three"],
)
def test_dropped_duplicated_or_reordered_messages_never_break_safety(
    drop: float, dup: float, reorder: bool
) -> None:
    for seed in range(5):
        net = Network([1, 2, 3], seed=seed)
        net.drop_rate, net.dup_rate, net.reorder = drop, dup, reorder
        sent = []
        for k in range(30):
            net.tick()
            if k % 3 == 0:
                lead = net.leader()
                if lead is not None and net.propose(lead, b"%d-%d" % (seed, k)):
                    sent.append(b"%d-%d" % (seed, k))
            net.stabilize()
        net.check_log_matching()
        net.check_applied_prefixes()
        # Faults stop: every member converges on one history.
        net.drop_rate = net.dup_rate = 0.0
        lead = net.tick_until_leader()
        net.propose(lead, b"end")
        for _ in range(20):
            net.tick_and_stabilize()
        histories = [m.applied for m in net.members.values()]
        assert all(h == histories[0] for h in histories)
        assert b"end" in net[1].applied_data()
