"""Snapshot interop between pyetcd and upstream etcd, with real processes and real etcdctl.

A source server of each flavour (``/usr/bin/etcd``, ``.venv/bin/pyetcd``) gets the same few
hundred writes (puts, overwrites, deletes, a delete-range, a txn, a lease, a large value), and
``etcdctl snapshot save`` takes its snapshot; this happens once per module. Then every test
restores a snapshot with one tool (``etcdctl snapshot restore`` of etcd 3.4 or ``pyetcdutl
snapshot restore``), starts a server of one flavour on the result, and checks that it serves
exactly the keys the source served (key, value, create/mod revision, version, lease), at the same
revision, keeps the lease, lists the new member, and accepts a new write. ``snapshot status`` of
both tools must agree byte for byte on every snapshot. Damaged snapshots must be refused by
``pyetcdutl`` with one clear line and no data dir left behind.

Every process is stopped in a finalizer; waits poll with deadlines. A missing binary fails the
test with the command that installs it (``make setup``); nothing is skipped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pyetcd.snap.snapshotter import read_snap_file
from pyetcd.wal.wal import WAL, valid_snapshot_entries

from tests.integration.cluster import (
    ETCD_BIN,
    ETCDCTL_BIN,
    PYETCD_BIN,
    PYETCDUTL_BIN,
    Flavour,
    Member,
    MemberError,
    etcdctl_env,
)
from tests.integration.conftest import start_or_fail

pytestmark = pytest.mark.integration

RESTORED_NAME = "restored"
RESTORED_TOKEN = "restore-token"
LEASE_TTL = 3600  # long enough never to expire during the module
KEY_COUNT = 300
START_TIMEOUT = 30.0
CMD_TIMEOUT = 60.0

Tool = str  # "etcdctl" | "pyetcdutl"


def require_binaries() -> None:
    """Fail (never skip) when a binary the module needs is missing."""
    missing = [
        str(p)
        for p in (ETCD_BIN, ETCDCTL_BIN, PYETCD_BIN, PYETCDUTL_BIN)
        if not (p.is_file() and os.access(p, os.X_OK))
    ]
    if missing:
        pytest.fail(
            f"missing binaries: {', '.join(missing)}; run `make setup` (it installs etcd and "
            "etcdctl from Debian and the pyetcd console scripts into .venv)",
            pytrace=False,
        )


# ------------------------------------------------------------------------------------------------
# Tools


def run(cmd: list[str], *, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        env=etcdctl_env(),
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )


def run_ok(cmd: list[str]) -> str:
    result = run(cmd)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def snapshot_status(tool: Tool, path: Path) -> dict[str, int]:
    binary = ETCDCTL_BIN if tool == "etcdctl" else PYETCDUTL_BIN
    status: dict[str, int] = json.loads(
        run_ok([str(binary), "snapshot", "status", str(path), "-w", "json"])
    )
    return status


def restore(tool: Tool, snapshot: Path, target: Member) -> None:
    binary = ETCDCTL_BIN if tool == "etcdctl" else PYETCDUTL_BIN
    run_ok(
        [
            str(binary),
            "snapshot",
            "restore",
            str(snapshot),
            f"--name={target.name}",
            f"--initial-cluster={target.name}={target.peer_url}",
            f"--initial-cluster-token={target.cluster_token}",
            f"--initial-advertise-peer-urls={target.peer_url}",
            f"--data-dir={target.data_dir}",
        ]
    )


# ------------------------------------------------------------------------------------------------
# What a server serves


@dataclass(frozen=True)
class Served:
    """The keyspace as `etcdctl get "" --prefix -w json` shows it, and the store revision."""

    revision: int
    kvs: tuple[tuple[bytes, bytes, int, int, int, int], ...]  # key value create mod version lease

    @property
    def keys(self) -> set[bytes]:
        return {kv[0] for kv in self.kvs}


def served(member: Member) -> Served:
    result = member.etcdctl("get", "", "--prefix", "-w", "json")
    assert result.returncode == 0, f"get failed on {member}: {result.stderr}"
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


def lease_ttl(member: Member, lease_id: int) -> int:
    result = member.etcdctl("lease", "timetolive", f"{lease_id:x}", "-w", "json")
    assert result.returncode == 0, f"lease timetolive failed on {member}: {result.stderr}"
    ttl: int = json.loads(result.stdout)["ttl"]
    return ttl


# ------------------------------------------------------------------------------------------------
# The workload


def write_workload(endpoint: str) -> int:
    """A few hundred writes of every kind over gRPC; returns the lease ID it granted."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        lease = rpc_pb2_grpc.LeaseStub(channel)
        lease_id: int = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL), timeout=10).ID

        def put(key: bytes, value: bytes, lease: int = 0) -> None:
            kv.Put(rpc_pb2.PutRequest(key=key, value=value, lease=lease), timeout=10)

        def key(i: int) -> bytes:
            return f"/interop/k{i:03d}".encode()

        for i in range(KEY_COUNT):
            put(key(i), f"value-{i}-".encode() + b"x" * (i % 64), lease_id if i % 50 == 3 else 0)
        for i in range(0, KEY_COUNT, 7):  # overwrites: version 2, new mod revision
            put(key(i), f"overwritten-{i}".encode())
        for i in range(0, KEY_COUNT, 11):  # deletes leave tombstones in the key bucket
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key(i)), timeout=10)
        # A range delete of /interop/k29x.
        kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"/interop/k29", range_end=b"/interop/k2:"), timeout=10
        )
        # One txn revision with several changes (sub revisions 0..3).
        kv.Txn(
            rpc_pb2.TxnRequest(
                compare=[
                    rpc_pb2.Compare(
                        key=key(1),
                        target=rpc_pb2.Compare.VERSION,
                        result=rpc_pb2.Compare.EQUAL,
                        version=1,
                    )
                ],
                success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/txn/a", value=b"1")),
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/txn/b", value=b"2")),
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key(2), value=b"t")),
                    rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key(4))),
                ],
            ),
            timeout=10,
        )
        put(b"/bin/\x00\xff", bytes(range(256)))  # binary key and value
        put(b"/empty", b"")
        put(b"/large", hashlib.shake_256(b"large").digest(200 * 1024))  # overflow pages
        put(b"/interop/last", b"last")
    return lease_id


@dataclass(frozen=True)
class Source:
    """A snapshot taken with `etcdctl snapshot save` from one flavour, and what it held."""

    flavour: Flavour
    snapshot: Path
    served: Served
    lease_id: int


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[Flavour, Source]:
    """One snapshot per source flavour; the source servers are stopped before any test runs."""
    require_binaries()
    base = tmp_path_factory.mktemp("sources")
    out: dict[Flavour, Source] = {}
    flavours: tuple[Flavour, ...] = ("etcd", "pyetcd")
    for flavour in flavours:
        member = Member(flavour, base / flavour, name=f"src-{flavour}")
        try:
            member.start_and_wait(START_TIMEOUT)
            lease_id = write_workload(member.host_port)
            before = served(member)
            snapshot = base / f"{flavour}.db"
            save = member.etcdctl("snapshot", "save", str(snapshot), timeout=CMD_TIMEOUT)
            assert save.returncode == 0, f"snapshot save from {member}: {save.stderr}"
            out[flavour] = Source(flavour, snapshot, before, lease_id)
        except MemberError as exc:
            pytest.fail(str(exc), pytrace=False)
        finally:
            member.stop()
    return out


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[list[Member]]:
    """Servers started by a test; all are stopped at teardown, also when the test fails."""
    started: list[Member] = []
    try:
        yield started
    finally:
        for member in reversed(started):
            member.stop()


def start_target(targets: list[Member], member: Member) -> None:
    targets.append(member)
    start_or_fail(member, START_TIMEOUT)


# ------------------------------------------------------------------------------------------------
# Tests


def test_workload_shape(sources: dict[Flavour, Source]) -> None:
    """Both sources hold the same keyspace (so that the restores below compare real data)."""
    etcd, py = sources["etcd"].served, sources["pyetcd"].served
    assert etcd.revision == py.revision
    assert [kv[:5] for kv in etcd.kvs] == [kv[:5] for kv in py.kvs]
    assert len(etcd.kvs) > 200
    assert sum(1 for kv in etcd.kvs if kv[5]) == 4  # keys still attached to the lease


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_snapshot_status_agrees(sources: dict[Flavour, Source], flavour: Flavour) -> None:
    """`etcdctl snapshot status` reads the file, at the source's revision, and `pyetcdutl
    snapshot status` prints the same hash, revision, key count and size."""
    source = sources[flavour]
    upstream = snapshot_status("etcdctl", source.snapshot)
    assert upstream["revision"] == source.served.revision
    assert upstream["totalKey"] > KEY_COUNT
    assert upstream["totalSize"] == source.snapshot.stat().st_size - 32
    assert snapshot_status("pyetcdutl", source.snapshot) == upstream


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(("pyetcd", "etcdctl", "etcd"), id="pyetcd-etcdctl-etcd"),
        pytest.param(("etcd", "pyetcdutl", "pyetcd"), id="etcd-pyetcdutl-pyetcd"),
        pytest.param(("pyetcd", "pyetcdutl", "etcd"), id="pyetcd-pyetcdutl-etcd"),
        pytest.param(("etcd", "pyetcdutl", "etcd"), id="etcd-pyetcdutl-etcd"),
        pytest.param(("pyetcd", "pyetcdutl", "pyetcd"), id="pyetcd-pyetcdutl-pyetcd"),
        pytest.param(("etcd", "etcdctl", "pyetcd"), id="etcd-etcdctl-pyetcd"),
    ],
)
def test_restore_and_serve(
    sources: dict[Flavour, Source],
    targets: list[Member],
    tmp_path: Path,
    route: tuple[Flavour, Tool, Flavour],
) -> None:
    """Restore a snapshot with `tool`, boot `target` on it: the same keyspace and revision, the
    lease, the new single-member cluster, and new writes. `route` = (source, tool, target)."""
    source, tool, target = route
    src = sources[source]
    member = Member(target, tmp_path / "target", name=RESTORED_NAME, cluster_token=RESTORED_TOKEN)
    restore(tool, src.snapshot, member)
    start_target(targets, member)

    after = served(member)
    assert after.revision == src.served.revision
    assert after.kvs == src.served.kvs
    assert 0 < lease_ttl(member, src.lease_id) <= LEASE_TTL

    members = json.loads(run_ok(member.etcdctl_cmd("member", "list", "-w", "json")))["members"]
    assert [(m.get("name"), m["peerURLs"]) for m in members] == [(RESTORED_NAME, [member.peer_url])]

    put = member.etcdctl("put", "/after-restore", "new")
    assert put.returncode == 0, put.stderr
    now = served(member)
    assert now.revision == src.served.revision + 1
    assert now.keys == src.served.keys | {b"/after-restore"}
    overwrite = member.etcdctl("put", "/interop/last", "again")
    assert overwrite.returncode == 0, overwrite.stderr
    before = {kv[0]: kv for kv in src.served.kvs}[b"/interop/last"]
    last = {kv[0]: kv for kv in served(member).kvs}[b"/interop/last"]
    # Same create revision, next mod revision, next version: the key index survived the restore.
    assert last[1:5] == (b"again", before[2], src.served.revision + 2, before[4] + 1)


@dataclass(frozen=True)
class RestoredFiles:
    """What a restore wrote, decoded: the parts both tools must agree on."""

    snap_name: str
    snap_meta: tuple[int, int, tuple[int, ...]]
    v2_store: dict[str, Any]
    wal_metadata: bytes
    hard_state: tuple[int, int, int]
    entries: list[tuple[int, int, int, bytes]]
    wal_snapshots: list[tuple[int, int]]
    consistent_index: int


def restored_files(data_dir: Path) -> RestoredFiles:
    (snap_path,) = (data_dir / "member" / "snap").glob("*.snap")
    snap = read_snap_file(str(snap_path))
    store = json.loads(snap.data)
    wal_dir = str(data_dir / "member" / "wal")
    with WAL.open(wal_dir, None) as wal:
        metadata, hs, entries = wal.read_all()
    backend = BoltBackend(str(data_dir / "member" / "snap" / "db"))
    try:
        ci = int.from_bytes(backend.get(b"meta", b"consistent_index") or b"", "big")
    finally:
        backend.close()
    return RestoredFiles(
        snap_name=snap_path.name,
        snap_meta=(
            snap.metadata.index,
            snap.metadata.term,
            tuple(snap.metadata.conf_state.voters),
        ),
        v2_store={k: store[k] for k in ("Root", "CurrentIndex", "CurrentVersion")},
        wal_metadata=metadata,
        hard_state=(hs.term, hs.vote, hs.commit),
        entries=[(e.Index, e.Term, e.Type, e.Data) for e in entries],
        wal_snapshots=[(w.index, w.term) for w in valid_snapshot_entries(wal_dir)],
        consistent_index=ci,
    )


def test_pyetcdutl_writes_what_etcdctl_writes(
    sources: dict[Flavour, Source], tmp_path: Path
) -> None:
    """Both tools restore the same snapshot for the same three-member cluster: the same .snap
    (name, metadata, v2 store tree), the same WAL (metadata, HardState, bootstrap entries,
    snapshot records) and the same consistent index."""
    cluster = ",".join(f"m{i}=http://127.0.0.1:{2380 + i}" for i in range(3))
    written = {}
    for tool in ("etcdctl", "pyetcdutl"):
        binary = ETCDCTL_BIN if tool == "etcdctl" else PYETCDUTL_BIN
        data_dir = tmp_path / tool
        run_ok(
            [
                str(binary),
                "snapshot",
                "restore",
                str(sources["pyetcd"].snapshot),
                "--name=m1",
                f"--initial-cluster={cluster}",
                "--initial-cluster-token=tok",
                "--initial-advertise-peer-urls=http://127.0.0.1:2381",
                f"--data-dir={data_dir}",
            ]
        )
        written[tool] = restored_files(data_dir)
    assert written["pyetcdutl"] == written["etcdctl"]
    assert written["pyetcdutl"].snap_meta[:2] == (3, 1)


# ------------------------------------------------------------------------------------------------
# Damaged input


def restore_fails(tmp_path: Path, snapshot: Path, *extra: str) -> str:
    """Run `pyetcdutl snapshot restore` expecting a failure: exit 1, one `Error:` line, no
    traceback, and neither the data dir nor any temporary directory left in its parent."""
    parent = tmp_path / "restore-parent"
    parent.mkdir(exist_ok=True)
    data_dir = parent / "data"
    result = run(
        [
            str(PYETCDUTL_BIN),
            "snapshot",
            "restore",
            str(snapshot),
            "--name=x",
            "--initial-cluster=x=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            f"--data-dir={data_dir}",
            *extra,
        ]
    )
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()
    assert list(parent.iterdir()) == []
    return lines[0]


def status_fails(snapshot: Path) -> str:
    result = run([str(PYETCDUTL_BIN), "snapshot", "status", str(snapshot)])
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _with_trailer(db: bytes) -> bytes:
    return db + hashlib.sha256(db).digest()


def test_truncated_snapshot_is_refused(sources: dict[Flavour, Source], tmp_path: Path) -> None:
    good = sources["pyetcd"].snapshot.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(good[: len(good) // 2 + 100])
    assert restore_fails(tmp_path, cut) == (
        "Error: snapshot missing hash but --skip-hash-check=false"
    )
    message = restore_fails(tmp_path, cut, "--skip-hash-check")
    assert message.startswith(f"Error: cannot read snapshot {cut}: ")
    assert status_fails(cut).startswith(f"Error: cannot read snapshot {cut}: ")
    # Cut at a page boundary with a matching trailer: the hash passes, the db does not.
    db = good[:-32]
    paged = tmp_path / "paged.db"
    paged.write_bytes(_with_trailer(db[: (len(db) // 2) // 4096 * 4096]))
    assert restore_fails(tmp_path, paged).startswith(f"Error: cannot read snapshot {paged}: ")
    assert status_fails(paged).startswith(f"Error: cannot read snapshot {paged}: ")


def test_wrong_sha256_trailer_is_refused(sources: dict[Flavour, Source], tmp_path: Path) -> None:
    good = sources["etcd"].snapshot.read_bytes()
    bad = tmp_path / "bad-sha.db"
    bad.write_bytes(good[:-32] + bytes(32))
    got = hashlib.sha256(good[:-32]).hexdigest()
    assert restore_fails(tmp_path, bad) == f"Error: expected sha256 {'00' * 32}, got {got}"


def test_random_file_is_refused(tmp_path: Path) -> None:
    require_binaries()
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(10_000))
    assert restore_fails(tmp_path, noise) == (
        "Error: snapshot missing hash but --skip-hash-check=false"
    )
    assert restore_fails(tmp_path, noise, "--skip-hash-check").startswith(
        f"Error: cannot read snapshot {noise}: "
    )
    assert status_fails(noise).startswith(f"Error: cannot read snapshot {noise}: ")
    # Random pages with a valid trailer: only the bbolt checks can refuse it.
    framed = tmp_path / "framed.db"
    framed.write_bytes(_with_trailer(os.urandom(4 * 4096)))
    assert restore_fails(tmp_path, framed).startswith(f"Error: cannot read snapshot {framed}: ")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert restore_fails(tmp_path, empty, "--skip-hash-check") == (
        f"Error: cannot restore snapshot {empty}: the file is empty"
    )
    assert status_fails(empty) == f"Error: cannot read snapshot {empty}: the file is empty"


def test_corrupt_pages_are_refused(sources: dict[Flavour, Source], tmp_path: Path) -> None:
    """Every page after the two metas gets a wrong page id in its header."""
    db = bytearray(sources["etcd"].snapshot.read_bytes()[:-32])
    for offset in range(2 * 4096, len(db), 4096):
        db[offset : offset + 8] = (0xDEAD).to_bytes(8, "little")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(_with_trailer(bytes(db)))
    assert restore_fails(tmp_path, corrupt).startswith(f"Error: cannot read snapshot {corrupt}: ")
    assert status_fails(corrupt).startswith(f"Error: cannot read snapshot {corrupt}: ")


def test_restore_refuses_a_non_empty_data_dir(
    sources: dict[Flavour, Source], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "member").mkdir(parents=True)
    result = run(
        [
            str(PYETCDUTL_BIN),
            "snapshot",
            "restore",
            str(sources["etcd"].snapshot),
            "--name=x",
            "--initial-cluster=x=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            f"--data-dir={data_dir}",
        ]
    )
    assert result.returncode == 1
    assert result.stderr == f'Error: data-dir "{data_dir}" not empty or could not be read\n'
    assert [p.name for p in data_dir.iterdir()] == ["member"]
