"""Log compaction and snapshots (Raft paper section 7): InstallSnapshot as MsgSnap."""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.tracker import ProgressState

from tests.unit.raft.network import Network


def snaps_received(net: Network, i: int) -> list[raft_pb2.Snapshot]:
    return [rd.snapshot for rd in net[i].readies if rd.snapshot is not None]


def test_a_follower_behind_the_compacted_log_receives_a_snapshot() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(10):
        net.propose(1, b"%d" % k)
    net.stabilize()
    index = net.compact(1)
    assert net[1].storage.first_index() == index + 1
    net.heal()
    net.tick_and_stabilize(3)
    snaps = snaps_received(net, 3)
    assert len(snaps) == 1 and snaps[0].metadata.index >= index
    assert net[3].storage.snapshot().metadata.index == snaps[0].metadata.index
    assert net[3].applied == net[1].applied
    assert list(net[3].conf_state.voters) == [1, 2, 3]
    # Replication resumes from the log after the snapshot.
    net.propose(1, b"after")
    net.stabilize()
    assert net[3].applied_data()[-1] == b"after"


def test_a_failed_snapshot_transfer_is_retried() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.stabilize()
    net.compact(1)
    net.heal()
    lost: list[raft_pb2.Message] = []

    def lose_first_snapshot(m: raft_pb2.Message) -> bool:
        if m.type == raft_pb2.MsgSnap and not lost:
            lost.append(m)
            return True
        return False

    net.block(lose_first_snapshot)
    pr = net[1].raw.raft.trk.progress[3]
    net.tick_and_stabilize(1)
    assert lost and pr.state == ProgressState.PROBE  # the failure was reported
    net.tick_and_stabilize(3)
    assert len(snaps_received(net, 3)) == 1
    assert net[3].applied == net[1].applied


def test_a_member_restarts_from_its_snapshot_and_log() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for k in range(6):
        net.propose(1, b"%d" % k)
        net.stabilize()
    net.compact(2, keep=2)
    net.propose(1, b"tail")
    net.stabilize()
    net.crash(2)
    net.restart(2)
    net.tick_and_stabilize(2)
    assert net[2].applied == net[1].applied
    assert net[2].raw.raft.raft_log.committed == net[1].raw.raft.raft_log.committed


def test_a_stale_snapshot_is_ignored() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    for k in range(3):
        net.propose(1, b"%d" % k)
    net.stabilize()
    net.compact(1)
    snap = net[1].storage.snapshot()
    follower = net[2].raw
    committed = follower.raft.raft_log.committed
    msg = raft_pb2.Message(type=raft_pb2.MsgSnap, to=2, term=net.term(1), snapshot=snap)
    setattr(msg, "from", 1)
    follower.step(msg)
    # 2 already has everything the snapshot covers: no restore, just an acknowledgement.
    assert follower.raft.raft_log.unstable.snapshot is None
    assert follower.raft.raft_log.committed == committed
    reply = follower.raft.msgs[-1]
    assert reply.type == raft_pb2.MsgAppResp and not reply.reject


def test_a_member_added_after_compaction_starts_from_a_snapshot() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"old")
    net.stabilize()
    net.compact(1)
    net.add_member(4)
    net[1].raw.propose_conf_change(raft_pb2.ConfChange(type=raft_pb2.ConfChangeAddNode, node_id=4))
    net.tick_and_stabilize(3)
    assert snaps_received(net, 4)
    assert net[4].applied_data() == [b"old"]
    assert list(net[4].conf_state.voters) == [1, 2, 3, 4]
