"""Acknowledged writes survive kill -9: concurrent writers, a SIGKILL mid-load, a restart.

Every write a client saw acknowledged must be there after the restart, with its value, and no key
may appear that no client tried to write. Several rounds run on the same data dir, so a later
crash must not lose what an earlier round acknowledged. A last round leaves a torn record at the
WAL tail, as a crash in the middle of a write does, and the member must start cleanly from it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Flavour, Member, wait_for
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

WRITERS = 8
ROUNDS = 3
ACKED_BEFORE_KILL = 400
PREFIX = b"/durability/"


@dataclass
class Ledger:
    """What the clients know: acknowledged writes and writes whose outcome is unknown."""

    acked: dict[bytes, bytes] = field(default_factory=dict)
    uncertain: dict[bytes, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def writer(endpoint: str, name: str, ledger: Ledger, stop: threading.Event) -> None:
    seq = 0
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        while not stop.is_set():
            key = PREFIX + f"{name}/{seq:07d}".encode()
            value = os.urandom(16).hex().encode()
            try:
                kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                # The server died with this request in flight: it may or may not have landed.
                with ledger.lock:
                    ledger.uncertain[key] = value
                return
            with ledger.lock:
                ledger.acked[key] = value
            seq += 1


def read_all(member: Member) -> dict[bytes, bytes]:
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        end = PREFIX[:-1] + bytes([PREFIX[-1] + 1])
        resp = kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=end), timeout=30)
        return {kv.key: kv.value for kv in resp.kvs}


def load_then_kill(
    member: Member, ledger: Ledger, round_no: int, sig: int = signal.SIGKILL
) -> None:
    """Write under load until enough writes are acknowledged, then send ``sig``: SIGKILL
    crashes the member; SIGTERM stops it gracefully, which must end with exit code 0."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=writer, args=(member.host_port, f"r{round_no}w{i}", ledger, stop), daemon=True
        )
        for i in range(WRITERS)
    ]
    start_count = ledger.count()
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while ledger.count() - start_count < ACKED_BEFORE_KILL:
        assert time.monotonic() < deadline, "writers made no progress:\n" + member.log_tail()
        member.check_alive()
        time.sleep(0.01)
    if sig == signal.SIGKILL:
        member.kill(signal.SIGKILL)
    else:
        code = member.stop()
        assert code == 0, f"stopping under load exited with {code}:\n{member.log_tail()}"
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a writer did not notice the dead server"


def check(member: Member, ledger: Ledger) -> None:
    check_stored(read_all(member), ledger, member.name)


def check_stored(stored: dict[bytes, bytes], ledger: Ledger, who: str) -> None:
    """Every acknowledged write is in ``stored`` with its value, and nothing nobody wrote."""
    missing = [k for k in ledger.acked if k not in stored]
    assert not missing, f"{who}: {len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    wrong = [k for k, v in ledger.acked.items() if stored[k] != v]
    assert not wrong, f"{who}: acknowledged writes with the wrong value: {wrong[:3]}"
    unexpected = [
        k for k, v in stored.items() if ledger.acked.get(k) != v and ledger.uncertain.get(k) != v
    ]
    assert not unexpected, f"{who}: keys nobody wrote (or wrong values): {unexpected[:3]}"


def wal_tail_offset(path: Path) -> int:
    """Offset just after the last record of a WAL segment (etcd's framing: LE length with the
    padding size in the top byte, the record, zero padding; a zero length ends the data)."""
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        field_ = int.from_bytes(data[offset : offset + 8], "little")
        if field_ == 0:
            break
        length = field_ & 0x00FF_FFFF_FFFF_FFFF
        pad = (field_ >> 56) & 0x7 if field_ >> 63 else 0
        offset += 8 + length + pad
    return offset


def tear_wal_tail(data_dir: Path) -> None:
    """Leave half a record after the last one, as a crash in the middle of a write would."""
    tail = sorted((data_dir / "member" / "wal").glob("*.wal"))[-1]
    offset = wal_tail_offset(tail)
    assert offset > 0
    # A length field promising 1 KiB, then only part of it. Sectors are written whole or not
    # at all, so the bytes that made it end at a sector boundary and the record's later sectors
    # read as zeros: that is what tells a torn write from corruption (etcd's isTornEntry).
    start = offset + 8
    written = min(100, 512 - start % 512)
    frame = (1024).to_bytes(8, "little") + os.urandom(written)
    with tail.open("r+b") as f:
        f.seek(offset)
        f.write(frame)
        f.flush()
        os.fsync(f.fileno())


def test_acknowledged_writes_survive_kill_9(members: MemberRegistry) -> None:
    member = members.new("pyetcd")
    ledger = Ledger()
    for round_no in range(ROUNDS):
        load_then_kill(member, ledger, round_no)
        member.restart()
        check(member, ledger)
    assert len(ledger.acked) >= ROUNDS * ACKED_BEFORE_KILL


def test_starts_cleanly_from_a_torn_wal_tail(members: MemberRegistry) -> None:
    member = members.new("pyetcd")
    ledger = Ledger()
    load_then_kill(member, ledger, 0)
    tear_wal_tail(member.data_dir)
    member.restart()
    check(member, ledger)
    # The repaired log keeps working: a new write after the repair survives another crash.
    load_then_kill(member, ledger, 1)
    member.restart()
    check(member, ledger)
    assert "Traceback" not in member.log_tail(200)


def test_kill_9_with_frequent_raft_snapshots(members: MemberRegistry) -> None:
    # Snapshots every 100 entries: restarts begin from a .snap file and a purged WAL.
    member = members.new("pyetcd", extra_flags=["--snapshot-count=100"])
    ledger = Ledger()
    for round_no in range(2):
        load_then_kill(member, ledger, round_no)
        member.restart()
        check(member, ledger)
    snaps = list((member.data_dir / "member" / "snap").glob("*.snap"))
    assert snaps, "no Raft snapshot was taken"
    assert len(snaps) <= 5, "old snapshots are not purged"


def test_a_graceful_stop_under_load_is_clean_and_keeps_every_write(
    members: MemberRegistry,
) -> None:
    # SIGTERM arrives while backend commits and WAL writes run on their executor threads: the
    # member must let them finish before it closes the files (it once raised "close while the
    # commit of txid N is in flight" at exit).
    member = members.new("pyetcd", extra_flags=["--backend-batch-interval=1ms"])
    ledger = Ledger()
    for round_no in range(ROUNDS):
        load_then_kill(member, ledger, round_no, signal.SIGTERM)
        assert "Traceback" not in member.log_tail(400), member.log_tail(400)
        member.start_and_wait()
        check(member, ledger)


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_restarts_once_purge_removed_the_first_wal_segments(
    members: MemberRegistry, flavour: Flavour
) -> None:
    # A member that has written more than --max-wals segments (64 MB each) since its first
    # snapshot no longer has the segment that starts at index 0. pyetcd once looked for it
    # when reading the WAL's snapshot records at boot, and refused every restart from then on:
    # "wal: no segment ... covers snapshot index 0".
    member = members.new(flavour, extra_flags=["--snapshot-count=20", "--max-wals=1"])
    wal_dir = member.data_dir / "member" / "wal"
    big = 1_400_000  # under etcd's default --max-request-bytes (1.5 MiB)
    acked: dict[bytes, bytes] = {}
    with grpc.insecure_channel(
        member.host_port, options=[("grpc.max_send_message_length", 2 * big)]
    ) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)

        def first_segment_purged() -> bool | None:
            for _ in range(10):
                key = PREFIX + b"big/%02d" % (len(acked) % 20)
                value = os.urandom(big)
                kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=30)
                acked[key] = value
            names = sorted(p.name for p in wal_dir.glob("*.wal"))
            return (names and not names[0].startswith("0000000000000000-")) or None

        # etcd purges on a 30 s timer, pyetcd after each snapshot.
        wait_for("the first WAL segment purged", first_segment_purged, 180, member)
    member.restart(sig=signal.SIGKILL)
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for key, value in acked.items():
            got = kv.Range(rpc_pb2.RangeRequest(key=key), timeout=30).kvs
            assert got and got[0].value == value, f"{key!r} lost or changed after the restart"
