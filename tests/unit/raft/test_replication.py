"""Log replication and the commit rule (Raft paper 5.3, 5.4.2), flow control and batching."""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import StateType, msg_from, set_from
from pyetcd.raft.tracker import Progress, ProgressState

from tests.unit.raft.network import Network


def state(pr: Progress) -> ProgressState:
    # A function call, so that mypy does not narrow the state across steps that change it.
    return pr.state


def sent(net: Network, frm: int, since: int = 0) -> list[raft_pb2.Message]:
    return [m for rd in net[frm].readies[since:] for m in rd.messages]


def test_an_entry_is_committed_once_a_majority_persisted_it() -> None:
    net = Network([1, 2, 3, 4, 5])
    net.elect(1)
    net.partition([1, 2, 3], [4, 5])
    assert net.propose(1, b"x")
    net.stabilize()
    for i in (1, 2, 3):
        assert net[i].applied_data() == [b"x"]
    assert net[4].applied_data() == [] and net[5].applied_data() == []
    net.heal()
    net.tick_and_stabilize(2)
    assert all(net[i].applied_data() == [b"x"] for i in net.members)


def test_an_entry_is_not_committed_without_a_majority() -> None:
    net = Network([1, 2, 3, 4, 5], check_quorum=False)
    net.elect(1)
    commit = net[1].raw.raft.raft_log.committed
    net.partition([1, 2], [3, 4, 5])
    assert net.propose(1, b"x")
    net.tick_and_stabilize(5)
    assert net[1].raw.raft.raft_log.committed == commit
    assert net[1].applied_data() == []


def test_proposals_on_a_follower_are_forwarded_to_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    assert net.propose(3, b"via 3")
    net.stabilize()
    assert all(net[i].applied_data() == [b"via 3"] for i in net.members)


def test_followers_learn_the_commit_index_from_heartbeats() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    # Let the entry reach 2 and 3 but lose every later MsgApp, which would carry the new commit.
    net.propose(1, b"x")
    net.drain()
    net.deliver_all()  # MsgApp -> 2, 3
    net.drain()
    net.deliver_all()  # MsgAppResp -> 1: committed on the leader
    net.block(lambda m: m.type == raft_pb2.MsgApp)
    net.stabilize()
    assert net[1].applied_data() == [b"x"]
    assert net[2].applied_data() == [] and net[3].applied_data() == []
    net.tick_and_stabilize(1)  # a heartbeat round
    assert net[2].applied_data() == [b"x"] and net[3].applied_data() == [b"x"]


def test_figure_8_a_leader_does_not_commit_an_older_term_entry_by_counting_replicas() -> None:
    # Raft paper, figure 8. Five members; pre-vote and check-quorum off so terms move as in the
    # paper. One entry per MsgApp, so an old-term entry can travel without the new-term one.
    net = Network([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, max_size_per_msg=0)
    net.elect(1)  # term 2, empty entry at 6 (5 bootstrap entries before it)
    base = net[1].raw.raft.raft_log.last_index()
    # (a) Leader 1 of term 2 replicates entry X (index base+1) to 2 only.
    net.partition([1, 2], [3, 4, 5])
    net.propose(1, b"X")
    net.stabilize()
    x_index = base + 1
    assert net[2].raw.raft.raft_log.term(x_index) == 2
    # (b) 1 crashes; 5 is elected for term 3 by 3, 4, 5 and appends an entry at X's index,
    # which reaches nobody.
    net.crash(1)
    net.partition([2], [3, 4, 5])
    net.block(lambda m: msg_from(m) == 5 and m.type == raft_pb2.MsgApp)
    net.elect(5)
    assert net.term(5) == 3
    assert net[5].raw.raft.raft_log.term(x_index) == 3
    net.crash(5)
    net.unblock()
    # (c) 1 restarts and is elected for term 4 by 2, 3 (and 4); it replicates X (term 2) to 3,
    # but its own term-4 entry does not get through. X is now on a majority (1, 2, 3)...
    net.restart(1)
    net.heal()

    def holds_x(i: int) -> bool:
        return net[i].raw.raft.raft_log.term_or_zero(x_index) == 2

    # Followers get X (after rejecting the first probe), never the term-4 entry after it.
    net.block(
        lambda m: (
            m.type == raft_pb2.MsgApp
            and any(e.Term == 4 for e in m.entries)
            and net[m.to].alive
            and holds_x(m.to)
        )
    )
    net.stabilize()
    net.campaign(1)
    net.stabilize()
    if net.leader() != 1:
        net.campaign(1)
        net.stabilize()
    assert net.leader() == 1 and net.term(1) == 4
    net.tick_and_stabilize(3)
    holders = [i for i in (1, 2, 3, 4) if net[i].raw.raft.raft_log.term_or_zero(x_index) == 2]
    assert len(holders) >= 3
    # ...but it must not be committed: it is not of the leader's term.
    assert net[1].raw.raft.raft_log.committed < x_index
    assert all(b"X" not in net[i].applied_data() for i in (1, 2, 3, 4))
    # (d) Indeed 1 crashes, 5 restarts and can still be elected (its last term 3 beats X's 2)
    # and overwrites X everywhere. Had X been committed, this would lose a committed entry.
    net.crash(1)
    net.unblock()
    net.restart(5)
    for _ in range(3):
        if net.leader() == 5:
            break
        net.campaign(5)
        net.stabilize()
    assert net.leader() == 5
    net.tick_and_stabilize(3)
    for i in (2, 3, 4, 5):
        assert net[i].raw.raft.raft_log.term(x_index) == 3
        assert b"X" not in net[i].applied_data()


def test_figure_8_once_an_entry_of_its_term_commits_the_older_ones_commit_with_it() -> None:
    net = Network([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.partition([1, 2], [3, 4, 5])
    net.propose(1, b"X")  # term 2, only on 1 and 2
    net.stabilize()
    net.crash(1)
    net.heal()
    net.isolate(5)
    net.elect(2)  # 2 holds X: X is in the new leader's log, and commits with its term-3 entry
    net.tick_and_stabilize(2)
    assert all(net[i].applied_data() == [b"X"] for i in (2, 3, 4))


def test_a_conflicting_uncommitted_tail_is_replaced_with_few_round_trips() -> None:
    net = Network([1, 2, 3], check_quorum=False, pre_vote=False)
    net.elect(1)
    net.isolate(1)
    for k in range(20):
        net.propose(1, b"lost %d" % k)  # appended on 1 only, never committed
    net.stabilize()
    net.campaign(2)
    net.stabilize()
    kept = [b"kept %d" % k for k in range(30)]
    for data in kept:
        net.propose(2, data)
    net.stabilize()
    # A new leader (3, term 4) whose log is longer than 1's: it first probes 1 at its last index,
    # far beyond where 1's log diverges.
    net.campaign(3)
    net.stabilize()
    assert net.leader() == 3
    net.heal()
    net.tick_and_stabilize(3)
    assert net.state(1) == StateType.FOLLOWER
    assert [e.Term for e in net[1].log_entries()] == [e.Term for e in net[3].log_entries()]
    assert net[1].applied_data() == kept
    # The rejection hint skips the whole stale term at once: one rejection, not thirty.
    rejects = [m for m in sent(net, 1) if m.type == raft_pb2.MsgAppResp and m.reject]
    assert len(rejects) == 1


def test_a_full_inflights_window_pauses_replication() -> None:
    net = Network([1, 2, 3], max_inflight_msgs=2)
    net.elect(1)
    pr = net[1].raw.raft.trk.progress[2]
    assert state(pr) == ProgressState.REPLICATE
    net.cut.add((2, 1))  # acknowledgements from 2 are lost
    mark = len(net[1].readies)
    for k in range(5):
        net.propose(1, b"%d" % k)
        net.stabilize()
    apps = [m for m in sent(net, 1, mark) if m.type == raft_pb2.MsgApp and m.to == 2]
    assert len([m for m in apps if m.entries]) == 2
    assert pr.inflights.full() and pr.is_paused()
    # 3 acknowledged everything: commit does not depend on the paused follower.
    assert len(net[1].applied_data()) == 5
    net.heal()
    net.tick_and_stabilize(3)  # heartbeat responses unblock the window
    assert net[2].applied_data() == [b"%d" % k for k in range(5)]
    assert not pr.inflights.full()


def test_an_unreachable_follower_is_probed_one_message_at_a_time() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    pr = net[1].raw.raft.trk.progress[3]
    net.isolate(3)
    net.propose(1, b"a")
    net.stabilize()  # the MsgApp to 3 is lost; the transport reports 3 unreachable
    assert state(pr) == ProgressState.PROBE
    mark = len(net[1].readies)
    for k in range(3):
        net.propose(1, b"b%d" % k)
        net.stabilize()
    apps = [m for m in sent(net, 1, mark) if m.type == raft_pb2.MsgApp and m.to == 3]
    assert len(apps) <= 1  # a probe is outstanding: no more until it is answered
    net.heal()
    net.tick_and_stabilize(2)
    assert state(pr) == ProgressState.REPLICATE
    assert net[3].applied_data() == [b"a", b"b0", b"b1", b"b2"]


def test_a_rejected_append_moves_a_replicating_follower_to_probe() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    leader = net[1].raw
    pr = leader.raft.trk.progress[2]
    assert state(pr) == ProgressState.REPLICATE
    last = leader.raft.raft_log.last_index()
    # 2 rejects an append at the last index (e.g. it lost its tail): hint = where it matches.
    reject = raft_pb2.Message(
        type=raft_pb2.MsgAppResp,
        to=1,
        term=leader.raft.term,
        index=last,
        reject=True,
        rejectHint=last - 1,
    )
    set_from(reject, 2)
    pr.match = last - 2  # pretend the leader only knew an older match
    leader.step(reject)
    assert state(pr) == ProgressState.PROBE
    assert pr.next == last - 1
    # A stale rejection (for an index we already know matches) changes nothing.
    stale = raft_pb2.Message()
    stale.CopyFrom(reject)
    stale.index = last - 3
    leader.step(stale)
    assert pr.next == last - 1
    net.stabilize()
    net.tick_and_stabilize(1)
    assert state(pr) == ProgressState.REPLICATE and pr.match == last


def test_max_size_per_msg_batches_entries() -> None:
    payload = b"p" * 100
    one = raft_pb2.Entry(Type=raft_pb2.EntryNormal, Term=2, Index=10, Data=payload).ByteSize()
    net = Network([1, 2, 3], max_size_per_msg=3 * one)
    net.elect(1)
    net.isolate(3)
    for _ in range(10):
        net.propose(1, payload)
    net.stabilize()
    mark = len(net[1].readies)
    net.heal()
    net.tick_and_stabilize(3)
    apps = [m for m in sent(net, 1, mark) if m.type == raft_pb2.MsgApp and m.to == 3 and m.entries]
    assert apps and all(sum(e.ByteSize() for e in m.entries) <= 3 * one for m in apps)
    assert max(len(m.entries) for m in apps) == 3
    assert net[3].applied_data() == [payload] * 10


def test_duplicated_and_reordered_appends_leave_the_follower_log_intact() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"a")
    net.drain()
    old_apps = [m for m in net.in_flight if m.type == raft_pb2.MsgApp]
    net.stabilize()
    for k in range(3):
        net.propose(1, b"n%d" % k)
    net.stabilize()
    # Replay the stale MsgApps (duplicates delivered late): the followers' logs must not shrink.
    for m in old_apps:
        net.deliver(m)
    net.stabilize()
    for i in (2, 3):
        assert net[i].raw.raft.raft_log.last_index() == net[1].raw.raft.raft_log.last_index()
    assert all(net[i].applied_data() == [b"a", b"n0", b"n1", b"n2"] for i in net.members)
