"""`pyetcdutl snapshot restore --replay`: a snapshot plus the watch events after it, with real
servers.

Per source flavour (Debian's etcd 3.4, pyetcd), once per module: a server gets the interop
workload, ``etcdctl snapshot save`` takes its snapshot at revision R, and then a history of
every kind of change follows (overwrites, a txn of puts and a delete, a range delete, a key on a
lease granted after the snapshot, a revoked lease that takes its key with it, plain puts). A
read of the whole key space at every revision from R to the end is taken before anything can
be compacted: the answer a restore to that revision must give. The events after R come from a
raw Watch, written as the operator's continuous backup writes them (``backup.eventlog``, which
this test holds to ``pyetcd.mvcc.replay``).

Each restore replays the log cut at a target revision, starts a server of either engine on
the result, and compares etcdctl's view with the read taken at the target: every key, value,
create and mod revision, version and lease, and the revision itself; the next write gets the
revision after it. A log with a hole is refused and leaves no data dir; events already in the
snapshot are skipped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from etcd_operator.backup.eventlog import EventLog
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pyetcd.proto.mvccpb import kv_pb2

from tests.integration.cluster import PYETCDUTL_BIN, Flavour, Member, MemberError
from tests.integration.conftest import start_or_fail
from tests.integration.test_restore_bump import served_at
from tests.integration.test_snapshot_interop import (
    CMD_TIMEOUT,
    START_TIMEOUT,
    Served,
    require_binaries,
    run,
    run_ok,
    served,
    write_workload,
)

pytestmark = pytest.mark.integration

LATE_LEASE_TTL = 1800
NAME = "replayed"
TOKEN = "replay-token"


@dataclass(frozen=True)
class History:
    """A snapshot at ``base``, the events after it, and the key space at every revision."""

    snapshot: Path
    base: int
    events: tuple[kv_pb2.Event, ...]
    reads: dict[int, Served]  # the key space at each revision (header: the source's last)
    leases: dict[int, int]  # granted after the snapshot: ID -> TTL
    late_lease: int  # the one still there at the end

    @property
    def last(self) -> int:
        return max(self.reads)

    def log(self, upto: int, *, drop: int | None = None, since: int | None = None) -> bytes:
        """The log of events in (``since`` or base, ``upto``], without revision ``drop``."""
        log = EventLog()
        log.mark_time(1_700_000_000_000)
        announced: set[int] = set()
        for event in self.events:
            rev = event.kv.mod_revision
            if rev > upto or rev == drop or rev <= (self.base if since is None else since):
                continue
            lease = event.kv.lease
            if lease in self.leases and lease not in announced:
                log.add_lease(lease, self.leases[lease])
                announced.add(lease)
            log.add_event(event)
        return log.to_bytes()


def write_history(endpoint: str) -> dict[int, int]:
    """Changes of every kind after the snapshot; returns the leases it granted (ID -> TTL),
    the one that lives on first."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        leases = rpc_pb2_grpc.LeaseStub(channel)

        def put(key: bytes, value: bytes, lease: int = 0) -> None:
            kv.Put(rpc_pb2.PutRequest(key=key, value=value, lease=lease), timeout=10)

        put(b"/interop/k001", b"after the snapshot")  # an overwrite
        doomed = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10).ID
        put(b"/late/doomed", b"goes with its lease", doomed)
        kv.Txn(
            rpc_pb2.TxnRequest(
                success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/late/a", value=b"1")),
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/late/b", value=b"2")),
                    rpc_pb2.RequestOp(
                        request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"/interop/k002")
                    ),
                ]
            ),
            timeout=10,
        )
        late = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=LATE_LEASE_TTL), timeout=10).ID
        put(b"/late/leased", b"on a lease granted after the snapshot", late)
        kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"/interop/k01", range_end=b"/interop/k02"), timeout=10
        )
        leases.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=doomed), timeout=10)
        put(b"/late/a", b"1 again")
        for i in range(10):
            put(f"/late/n{i}".encode(), f"v{i}".encode())
        return {int(late): LATE_LEASE_TTL, int(doomed): 600}


def watch_events(member: Member, start: int, last: int) -> tuple[kv_pb2.Event, ...]:
    """Every event of revisions ``start``..``last``, from a raw Watch of the whole key space."""
    done = threading.Event()

    def requests() -> Iterator[rpc_pb2.WatchRequest]:
        yield rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=b"\0", range_end=b"\0", start_revision=start
            )
        )
        done.wait(30)

    events: list[kv_pb2.Event] = []
    with grpc.insecure_channel(member.host_port) as channel:
        call = rpc_pb2_grpc.WatchStub(channel).Watch(requests(), timeout=30)
        try:
            for resp in call:
                assert not resp.canceled, resp.cancel_reason
                events.extend(resp.events)
                if events and events[-1].kv.mod_revision >= last:
                    break
        finally:
            done.set()
            call.cancel()
    return tuple(events)


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[Flavour, History]:
    require_binaries()
    base_dir = tmp_path_factory.mktemp("replay-sources")
    out: dict[Flavour, History] = {}
    flavours: tuple[Flavour, ...] = ("etcd", "pyetcd")
    for flavour in flavours:
        member = Member(flavour, base_dir / flavour, name=f"src-{flavour}")
        try:
            member.start_and_wait(START_TIMEOUT)
            write_workload(member.host_port)
            snapshot = base_dir / f"{flavour}.db"
            save = member.etcdctl("snapshot", "save", str(snapshot), timeout=CMD_TIMEOUT)
            assert save.returncode == 0, f"snapshot save from {member}: {save.stderr}"
            base = served(member).revision
            leases = write_history(member.host_port)
            last = served(member).revision
            reads = {rev: served_at(member, rev) for rev in range(base, last + 1)}
            # Reading back from two revisions before the snapshot shows the skip.
            events = watch_events(member, base - 1, last)
            out[flavour] = History(snapshot, base, events, reads, leases, next(iter(leases)))
        except MemberError as exc:
            pytest.fail(str(exc), pytrace=False)
        finally:
            member.stop()
    return out


@pytest.fixture
def started() -> Iterator[list[Member]]:
    members: list[Member] = []
    try:
        yield members
    finally:
        for member in reversed(members):
            member.stop()


def restore_command(snapshot: Path, log: Path, member: Member) -> list[str]:
    return [
        str(PYETCDUTL_BIN),
        "snapshot",
        "restore",
        str(snapshot),
        f"--name={member.name}",
        f"--initial-cluster={member.name}={member.peer_url}",
        f"--initial-cluster-token={member.cluster_token}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        f"--data-dir={member.data_dir}",
        f"--replay={log}",
    ]


def replayed(
    tmp_path: Path, started: list[Member], history: History, engine: Flavour, log: bytes
) -> tuple[Member, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    member = Member(engine, tmp_path / engine, name=NAME, cluster_token=TOKEN)
    log_file = tmp_path / "events.log"
    log_file.write_bytes(log)
    printed = run_ok(restore_command(history.snapshot, log_file, member))
    started.append(member)
    start_or_fail(member, START_TIMEOUT)
    return member, printed


def the_middle(history: History) -> int:
    """A revision whose key space differs from both ends: the late lease's key is there."""
    leased = [e.kv.mod_revision for e in history.events if e.kv.lease == history.late_lease]
    return leased[0] + 1


@pytest.mark.parametrize("engine", ["etcd", "pyetcd"])
@pytest.mark.parametrize("source", ["etcd", "pyetcd"])
def test_a_restore_to_a_revision_serves_exactly_that_revision(
    histories: dict[Flavour, History],
    tmp_path: Path,
    started: list[Member],
    source: Flavour,
    engine: Flavour,
) -> None:
    history = histories[source]
    for target in (the_middle(history), history.last):
        member, printed = replayed(
            tmp_path / str(target), started, history, engine, history.log(target)
        )
        assert f"revisions {history.base + 1}..{target}" in printed, printed
        now = served(member)
        assert now.revision == target
        assert now.kvs == history.reads[target].kvs, f"restored to {target} on {engine}"
        late = member.etcdctl("lease", "timetolive", f"{history.late_lease:x}", "-w", "json")
        assert late.returncode == 0, late.stderr
        assert json.loads(late.stdout)["granted-ttl"] == LATE_LEASE_TTL
        put = member.etcdctl("put", "/after/restore", "x", "-w", "json")
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout)["header"]["revision"] == target + 1
        member.stop()


def test_events_already_in_the_snapshot_are_skipped(
    histories: dict[Flavour, History], tmp_path: Path, started: list[Member]
) -> None:
    history = histories["pyetcd"]
    log = history.log(history.last, since=history.base - 2)
    member, printed = replayed(tmp_path, started, history, "pyetcd", log)
    skipped = sum(1 for e in history.events if history.base - 2 < e.kv.mod_revision <= history.base)
    assert f"{skipped} were in the snapshot already" in printed, printed
    assert served(member).kvs == history.reads[history.last].kvs


def test_a_log_with_a_hole_is_refused_and_leaves_no_data_dir(
    histories: dict[Flavour, History], tmp_path: Path
) -> None:
    history = histories["etcd"]
    hole = history.base + 3
    log_file = tmp_path / "holed.log"
    log_file.write_bytes(history.log(history.last, drop=hole))
    member = Member("pyetcd", tmp_path / "m", name=NAME, cluster_token=TOKEN)
    done = run(restore_command(history.snapshot, log_file, member), timeout=CMD_TIMEOUT)
    assert done.returncode == 1, done
    assert f"skips revisions {hole}..{hole}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not member.data_dir.exists()


def test_a_truncated_log_is_refused(histories: dict[Flavour, History], tmp_path: Path) -> None:
    history = histories["pyetcd"]
    log_file = tmp_path / "cut.log"
    log_file.write_bytes(history.log(history.last)[:-3])
    member = Member("pyetcd", tmp_path / "m", name=NAME, cluster_token=TOKEN)
    done = run(restore_command(history.snapshot, log_file, member), timeout=CMD_TIMEOUT)
    assert done.returncode == 1, done
    assert "is truncated" in done.stderr, done.stderr
    assert not member.data_dir.exists()
