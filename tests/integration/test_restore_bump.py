"""`snapshot restore --bump-revision N --mark-compacted`, with real servers and real etcdctl.

A source server of each flavour (Debian's etcd 3.4, pyetcd) gets the interop workload (keys with
several revisions, deletes, a txn, a lease; see ``test_snapshot_interop.write_workload``) and
``etcdctl snapshot save`` takes its snapshot, once per module. Each test restores a snapshot with
``pyetcdutl snapshot restore --bump-revision 1000000 --mark-compacted``, starts a server on the
result and checks through etcdctl (and a raw gRPC Watch where etcdctl hides the detail) what
etcd 3.5 shows after its own restore (``etcdutl/snapshot/v3_snapshot.go``
``modifyLatestRevision``; seen by hand on etcd 3.5.36, see ``pyetcd.utl``): the same keys,
values, create/mod revisions, versions and leases; ``endpoint status`` at old + N; reads and
watches below old + N refused with ``mvcc: required revision has been compacted`` (the watch
reports compact revision old + N); a read and a watch at old + N accepted; the next write at
old + N + 1. Debian's etcd 3.4 is started on pyetcdutl's output too: it reads the same format.

``test_side_by_side_with_etcdutl_35`` restores the same snapshot with upstream ``etcdutl``
v3.5.x (built from the Go module proxy by ``tools/etcdutl.py``, ``make etcdutl``) and with
``pyetcdutl``, for the same member: the two dbs hold the same buckets byte for byte (``snapshot
status`` hash), and a pyetcd started on each shows etcdctl the same things.

Every process is stopped in a finalizer. A missing binary fails the test with how to get it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import PYETCDUTL_BIN, Flavour, Member, MemberError
from tests.integration.conftest import start_or_fail
from tests.integration.test_snapshot_interop import (
    CMD_TIMEOUT,
    LEASE_TTL,
    START_TIMEOUT,
    Served,
    lease_ttl,
    require_binaries,
    run_ok,
    served,
    write_workload,
)
from tools import etcdutl as etcdutl_build

pytestmark = pytest.mark.integration

BUMP = 1_000_000
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE = "etcdserver: mvcc: required revision is a future revision"
NAME = "restored"
TOKEN = "bump-token"
PROBE_KEY = "/interop/last"  # written last by the workload: it has history below the snapshot


@dataclass(frozen=True)
class Source:
    """A snapshot taken with `etcdctl snapshot save`, and what the source served then."""

    snapshot: Path
    served: Served
    lease_id: int


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[Flavour, Source]:
    require_binaries()
    base = tmp_path_factory.mktemp("bump-sources")
    out: dict[Flavour, Source] = {}
    flavours: tuple[Flavour, ...] = ("etcd", "pyetcd")
    for flavour in flavours:
        member = Member(flavour, base / flavour, name=f"src-{flavour}")
        try:
            member.start_and_wait(START_TIMEOUT)
            lease_id = write_workload(member.host_port)
            before = served(member)
            # The history the bump must hide is really there before the restore.
            old = member.etcdctl("get", PROBE_KEY, f"--rev={before.revision - 1}")
            assert old.returncode == 0, old.stderr
            snapshot = base / f"{flavour}.db"
            save = member.etcdctl("snapshot", "save", str(snapshot), timeout=CMD_TIMEOUT)
            assert save.returncode == 0, f"snapshot save from {member}: {save.stderr}"
            out[flavour] = Source(snapshot, before, lease_id)
        except MemberError as exc:
            pytest.fail(str(exc), pytrace=False)
        finally:
            member.stop()
    return out


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Member]]:
    """Servers a test starts; all are stopped at teardown, also when the test fails."""
    members: list[Member] = []
    try:
        yield members
    finally:
        for member in reversed(members):
            member.stop()


def start(started: list[Member], member: Member) -> None:
    started.append(member)
    start_or_fail(member, START_TIMEOUT)


def restore_bumped(binary: Path, snapshot: Path, member: Member) -> str:
    return run_ok(
        [
            str(binary),
            "snapshot",
            "restore",
            str(snapshot),
            f"--name={member.name}",
            f"--initial-cluster={member.name}={member.peer_url}",
            f"--initial-cluster-token={member.cluster_token}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--data-dir={member.data_dir}",
            f"--bump-revision={BUMP}",
            "--mark-compacted",
        ]
    )


# ------------------------------------------------------------------------------------------------
# What a client sees


def served_at(member: Member, rev: int) -> Served:
    """`served` (test_snapshot_interop) at a given revision: `get "" --prefix --rev=<rev>`."""
    result = member.etcdctl("get", "", "--prefix", "-w", "json", f"--rev={rev}")
    assert result.returncode == 0, f"get --rev={rev} failed on {member}: {result.stderr}"
    doc: dict[str, Any] = json.loads(result.stdout)
    kvs = tuple(
        (
            base64.b64decode(kv["key"]),
            base64.b64decode(kv.get("value", "")),
            int(kv.get("create_revision", 0)),
            int(kv.get("mod_revision", 0)),
            int(kv.get("version", 0)),
            int(kv.get("lease", 0)),
        )
        for kv in doc.get("kvs", [])
    )
    return Served(int(doc["header"]["revision"]), kvs)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """etcdctl's `Error: ...` line (etcdctl 3.4 also logs client retries on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    return lines[-1] if lines else f"exit {result.returncode}, no error: {result.stdout!r}"


def watch(
    member: Member, start_rev: int, then: Callable[[], None] | None = None
) -> list[rpc_pb2.WatchResponse]:
    """A Watch on prefix `/` from `start_rev`: the responses up to the first one that is not
    just `created` (events, or a cancel). `then` runs once the watch is created."""
    done = threading.Event()

    def requests() -> Iterator[rpc_pb2.WatchRequest]:
        yield rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=b"/", range_end=b"0", start_revision=start_rev
            )
        )
        done.wait(30)  # keep the stream open until the test has read what it needs

    got: list[rpc_pb2.WatchResponse] = []
    with grpc.insecure_channel(member.host_port) as channel:
        call = rpc_pb2_grpc.WatchStub(channel).Watch(requests(), timeout=30)
        try:
            for resp in call:
                got.append(resp)
                if resp.events or resp.canceled or resp.compact_revision:
                    break
                if resp.created and then is not None:
                    then()
        finally:
            done.set()
            call.cancel()
    return got


@dataclass(frozen=True)
class Seen:
    """What etcdctl (and a raw Watch) show on a freshly restored, bumped member."""

    served: Served
    status_revision: int
    old_reads: tuple[str, ...]  # the error of `get --rev=r` for revisions below the bump
    read_at_bump: Served
    future_read: str
    etcdctl_watch: tuple[bool, bool]  # (exited non-zero, said "compacted")
    watch_compact: tuple[int, bool]  # (compact_revision, canceled) of a watch from old
    watch_at_bump: tuple[tuple[bytes, int, int], ...]  # events after a watch from old + N
    hashkv_compact: int
    compact_again: str
    put_revision: int
    overwrite: tuple[bytes, int, int, int]  # value, create, mod, version after a new put
    lease_alive: bool


def seen(member: Member, old: int) -> Seen:
    """Everything in :class:`Seen`, in an order that leaves the reads before the writes."""
    bumped = old + BUMP
    now = served(member)
    status = json.loads(run_ok(member.etcdctl_cmd("endpoint", "status", "-w", "json")))
    old_reads = tuple(
        error_line(member.etcdctl("get", PROBE_KEY, f"--rev={rev}"))
        for rev in (2, old // 2, old - 1, old, bumped - 1)
    )
    read_at_bump = served_at(member, bumped)
    future = error_line(member.etcdctl("get", PROBE_KEY, f"--rev={bumped + 1}"))
    cli_watch = member.etcdctl("watch", PROBE_KEY, f"--rev={old}", timeout=15)
    compacted = watch(member, old)
    hashkv = json.loads(run_ok(member.etcdctl_cmd("endpoint", "hashkv", "-w", "json")))
    compact_again = error_line(member.etcdctl("compact", str(bumped)))

    def put_after_created() -> None:
        result = member.etcdctl("put", "/after-bump", "new")
        assert result.returncode == 0, result.stderr

    from_bump = watch(member, bumped, then=put_after_created)
    put_doc = json.loads(run_ok(member.etcdctl_cmd("get", "/after-bump", "-w", "json")))
    assert member.etcdctl("put", PROBE_KEY, "again").returncode == 0
    last = {kv[0]: kv for kv in served(member).kvs}[PROBE_KEY.encode()]
    return Seen(
        served=now,
        status_revision=int(status[0]["Status"]["header"]["revision"]),
        old_reads=old_reads,
        read_at_bump=read_at_bump,
        future_read=future,
        etcdctl_watch=(
            cli_watch.returncode != 0,
            "required revision has been compacted" in cli_watch.stdout + cli_watch.stderr,
        ),
        watch_compact=(compacted[-1].compact_revision, compacted[-1].canceled),
        watch_at_bump=tuple(
            (ev.kv.key, ev.kv.create_revision, ev.kv.mod_revision)
            for resp in from_bump
            for ev in resp.events
        ),
        hashkv_compact=int(hashkv[0]["HashKV"]["compact_revision"]),
        compact_again=compact_again,
        put_revision=int(put_doc["kvs"][0]["mod_revision"]),
        overwrite=(last[1], last[2], last[3], last[4]),
        lease_alive=False,  # filled in by the caller, which knows the lease
    )


def check_seen(got: Seen, src: Source) -> None:
    """The expectations of etcd 3.5's behaviour after `--bump-revision N --mark-compacted`."""
    old = src.served.revision
    bumped = old + BUMP
    assert got.served.kvs == src.served.kvs  # nothing in the key space rewritten
    assert got.served.revision == bumped
    assert got.status_revision == bumped
    assert got.old_reads == (f"Error: {COMPACTED}",) * 5
    assert got.read_at_bump.revision == bumped
    assert got.read_at_bump.kvs == src.served.kvs
    assert got.future_read == f"Error: {FUTURE}"
    assert got.etcdctl_watch == (True, True)
    assert got.watch_compact == (bumped, True)
    # The marker at old + N is no event for any key; the first write is old + N + 1.
    assert got.watch_at_bump == ((b"/after-bump", bumped + 1, bumped + 1),)
    assert got.hashkv_compact == bumped
    assert got.compact_again == f"Error: {COMPACTED}"
    assert got.put_revision == bumped + 1
    before = {kv[0]: kv for kv in src.served.kvs}[PROBE_KEY.encode()]
    # The key keeps its create revision and version count: the key index survived.
    assert got.overwrite == (b"again", before[2], bumped + 2, before[4] + 1)


def observe(member: Member, src: Source) -> Seen:
    got = seen(member, src.served.revision)
    ttl = lease_ttl(member, src.lease_id)
    return dataclasses.replace(got, lease_alive=0 < ttl <= LEASE_TTL)


# ------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(("etcd", "pyetcd"), id="etcd-pyetcdutl-pyetcd"),
        pytest.param(("pyetcd", "pyetcd"), id="pyetcd-pyetcdutl-pyetcd"),
        pytest.param(("pyetcd", "etcd"), id="pyetcd-pyetcdutl-etcd"),
        pytest.param(("etcd", "etcd"), id="etcd-pyetcdutl-etcd"),
    ],
)
def test_bumped_restore(
    sources: dict[Flavour, Source],
    started: list[Member],
    tmp_path: Path,
    route: tuple[Flavour, Flavour],
) -> None:
    """Restore with pyetcdutl, bumped and compacted; boot `target` on it. route = (source,
    target): a pyetcd snapshot and an etcd 3.4 one, served by pyetcd and by etcd 3.4."""
    source, target = route
    src = sources[source]
    member = Member(target, tmp_path / "target", name=NAME, cluster_token=TOKEN)
    out = restore_bumped(PYETCDUTL_BIN, src.snapshot, member)
    old = src.served.revision
    assert f"bumped the latest revision {old} by {BUMP} to {old + BUMP}" in out
    start(started, member)
    got = observe(member, src)
    check_seen(got, src)
    assert got.lease_alive


def etcdutl_binary() -> Path:
    """Upstream etcdutl 3.5 (ETCDUTL35_BIN, else the cached build); fails if missing."""
    override = os.environ.get("ETCDUTL35_BIN")
    path = Path(override) if override else etcdutl_build.cached_binary()
    if path is None or not (path.is_file() and os.access(path, os.X_OK)):
        where = override or etcdutl_build.binary_path()
        pytest.fail(
            f"etcdutl {etcdutl_build.ETCDUTL_VERSION} not found at {where}; {etcdutl_build.HINT}",
            pytrace=False,
        )
    return path


def db_status(binary: Path, data_dir: Path) -> dict[str, int]:
    status: dict[str, int] = json.loads(
        run_ok(
            [
                str(binary),
                "snapshot",
                "status",
                str(data_dir / "member" / "snap" / "db"),
                "-w",
                "json",
            ]
        )
    )
    return status


@pytest.mark.parametrize("source", ["etcd", "pyetcd"])
def test_side_by_side_with_etcdutl_35(
    sources: dict[Flavour, Source],
    started: list[Member],
    tmp_path: Path,
    source: Flavour,
) -> None:
    """The same snapshot, the same member, restored by etcdutl 3.5 and by pyetcdutl: the same db
    contents, and pyetcd on either shows etcdctl the same things."""
    etcdutl = etcdutl_binary()
    src = sources[source]
    upstream = Member("pyetcd", tmp_path / "etcdutl", name=NAME, cluster_token=TOKEN)
    ours = Member(
        "pyetcd",
        tmp_path / "pyetcdutl",
        name=NAME,
        cluster_token=TOKEN,
        client_port=upstream.client_port,
        peer_port=upstream.peer_port,  # the same member ID, so the membership buckets match
    )
    restore_bumped(etcdutl, src.snapshot, upstream)
    restore_bumped(PYETCDUTL_BIN, src.snapshot, ours)
    # Every bucket, key and value the same (CRC-32C over all of them), read by etcdutl itself;
    # not the size, which counts pages and so depends on how each writer allocates them.
    theirs_status = db_status(etcdutl, upstream.data_dir)
    assert theirs_status["revision"] == src.served.revision + BUMP
    ours_status = db_status(etcdutl, ours.data_dir)
    assert {k: v for k, v in ours_status.items() if k != "totalSize"} == {
        k: v for k, v in theirs_status.items() if k != "totalSize"
    }

    views: dict[str, Seen] = {}
    for label, member in (("etcdutl", upstream), ("pyetcdutl", ours)):
        start(started, member)
        views[label] = observe(member, src)
        member.stop()
    check_seen(views["etcdutl"], src)
    assert views["pyetcdutl"] == views["etcdutl"]
