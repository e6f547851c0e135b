"""`pyetcdutl analyze` on real snapshots and data dirs of Debian's etcd 3.4 and of pyetcd.

Once per module, a member of each flavour gets planted data over gRPC: three big values, junk
under `/junk/spam/` (500 keys in txns of 100, so sub revisions too), three keys on a lease and
an empty lease, a hot key written 200 times whose history is then compacted down to the last
51 revisions (a physical compaction), and a key put and deleted (a tombstone). `etcdctl
snapshot save` takes a snapshot; `pyetcdutl analyze` runs on the data dir while the member
holds it (refused), then the member is stopped.

The tests run `.venv/bin/pyetcdutl analyze` (the real CLI) on each snapshot and on each stopped
member's data dir and check the planted answers in its JSON: the top prefix, the hot key and
its revision count, the biggest key, the leases with and without keys, the key counts, the
revision and the compaction; the snapshot and the data dir must give the same analysis. Then
bad inputs made from a real snapshot, each refused with one `Error:` line and exit status 1.

Every process is stopped in a finalizer; nothing is skipped (a missing binary fails the test).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import PYETCDUTL_BIN, Flavour, Member, MemberError
from tests.integration.test_snapshot_interop import (
    CMD_TIMEOUT,
    START_TIMEOUT,
    require_binaries,
    run,
)

pytestmark = pytest.mark.integration

FLAVOURS: tuple[Flavour, ...] = ("etcd", "pyetcd")
HOT_KEY = b"/app/hot"
HOT_WRITES = 200
HOT_KEPT = 51  # compacted at the 150th write: that revision and the 50 after it remain
BIG = {b"/app/big/1": 200_000, b"/app/big/2": 150_000, b"/app/big/3": 100_000}
JUNK_KEYS = 500
JUNK_VALUE = 2_000  # 500 x 2 kB: /junk/spam/ outweighs every other prefix
JUNK_TXN = 100  # puts per txn (etcd's --max-txn-ops is 128)
SESSION_KEYS = (b"/app/session/a", b"/app/session/b", b"/app/session/c")
HELD_TTL = 600
EMPTY_TTL = 900
GONE_KEY = b"/app/gone"
LIVE_KEYS = 1 + len(BIG) + JUNK_KEYS + len(SESSION_KEYS)
REVISIONS = HOT_KEPT + len(BIG) + JUNK_KEYS + len(SESSION_KEYS) + 2  # /app/gone: put + tombstone


@dataclass(frozen=True)
class Planted:
    """A member's data after planting, and what the server said about it."""

    snapshot: Path
    data_dir: Path
    revision: int  # the server's revision after the last write
    compact_revision: int
    held_lease: int
    empty_lease: int
    while_running: subprocess.CompletedProcess[str]  # analyze of the data dir of a live member


def plant(endpoint: str) -> tuple[int, int, int, int]:
    """Write the planted data; returns (revision, compact revision, held lease, empty lease)."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        leases = rpc_pb2_grpc.LeaseStub(channel)

        def put(key: bytes, value: bytes, lease: int = 0) -> int:
            resp = kv.Put(rpc_pb2.PutRequest(key=key, value=value, lease=lease), timeout=10)
            return int(resp.header.revision)

        for key, size in BIG.items():
            put(key, b"B" * size)
        for first in range(0, JUNK_KEYS, JUNK_TXN):
            ops = [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(
                        key=b"/junk/spam/%05d" % i, value=b"j" * JUNK_VALUE
                    )
                )
                for i in range(first, first + JUNK_TXN)
            ]
            assert kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=10).succeeded
        held = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=HELD_TTL), timeout=10).ID
        empty = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=EMPTY_TTL), timeout=10).ID
        for key in SESSION_KEYS:
            put(key, b"session", held)
        hot = [put(HOT_KEY, b"renewed-%03d" % i) for i in range(HOT_WRITES)]
        compact = hot[HOT_WRITES - HOT_KEPT]
        kv.Compact(rpc_pb2.CompactionRequest(revision=compact, physical=True), timeout=30)
        put(GONE_KEY, b"soon gone")
        revision = int(kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=GONE_KEY)).header.revision)
    return revision, compact, int(held), int(empty)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return run([str(PYETCDUTL_BIN), "analyze", *args], timeout=CMD_TIMEOUT)


def analyze_json(path: Path, *args: str) -> dict[str, Any]:
    result = analyze(str(path), "--format", "json", *args)
    assert result.returncode == 0, f"analyze {path} failed:\n{result.stderr}"
    assert result.stderr == ""
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[Flavour, Planted]:
    require_binaries()
    base = tmp_path_factory.mktemp("analyze")
    out: dict[Flavour, Planted] = {}
    for flavour in FLAVOURS:
        member = Member(flavour, base / flavour, name=f"analyze-{flavour}")
        try:
            member.start_and_wait(START_TIMEOUT)
            revision, compact, held, empty = plant(member.host_port)
            snapshot = base / f"{flavour}.snapshot.db"
            save = member.etcdctl("snapshot", "save", str(snapshot), timeout=CMD_TIMEOUT)
            assert save.returncode == 0, f"snapshot save from {member}: {save.stderr}"
            while_running = analyze(str(member.data_dir), "--format", "json")
        except MemberError as exc:
            pytest.fail(str(exc), pytrace=False)
        finally:
            member.stop()
        out[flavour] = Planted(
            snapshot, member.data_dir, revision, compact, held, empty, while_running
        )
    return out


def check_planted(doc: dict[str, Any], p: Planted) -> None:
    totals = doc["totals"]
    assert doc["schemaVersion"] == 1
    assert totals["revision"] == p.revision
    assert totals["compactRevision"] == totals["scheduledCompactRevision"] == p.compact_revision
    assert totals["liveKeys"] == LIVE_KEYS
    assert totals["revisions"] == REVISIONS
    assert totals["tombstones"] == 1
    assert totals["liveBytes"] > JUNK_KEYS * JUNK_VALUE + sum(BIG.values())
    assert totals["storedBytes"] > totals["liveBytes"]
    assert 0 < totals["dbSizeInUse"] <= totals["dbSize"]

    top = doc["prefixes"][0]
    assert top["prefix"] == "/junk/spam/"
    assert (top["liveKeys"], top["revisions"]) == (JUNK_KEYS, JUNK_KEYS)
    app = next(x for x in doc["prefixes"] if x["prefix"] == "/app/big/")
    assert (app["liveKeys"], app["revisions"]) == (len(BIG), len(BIG))
    for field in ("liveKeys", "liveBytes", "revisions", "storedBytes"):
        listed = sum(x[field] for x in doc["prefixes"]) + doc["otherPrefixes"][field]
        assert listed == totals[field], field

    hot = doc["hotKeys"][0]
    assert (hot["key"], hot["revisions"], hot["live"]) == (HOT_KEY.decode(), HOT_KEPT, True)
    assert hot["version"] == HOT_WRITES
    gone = next(k for k in doc["hotKeys"] if k["key"] == GONE_KEY.decode())
    assert (gone["revisions"], gone["live"], gone["modRevision"]) == (2, False, p.revision)

    assert [(k["key"], k["valueSize"]) for k in doc["biggestKeys"][:3]] == [
        (key.decode(), size) for key, size in BIG.items()
    ]

    leases = {x["id"]: x for x in doc["leases"]}
    assert set(leases) == {p.held_lease, p.empty_lease}
    assert (leases[p.held_lease]["liveKeys"], leases[p.held_lease]["ttl"]) == (3, HELD_TTL)
    assert (leases[p.empty_lease]["liveKeys"], leases[p.empty_lease]["ttl"]) == (0, EMPTY_TTL)
    assert leases[p.held_lease]["idHex"] == f"{p.held_lease:x}"
    assert totals["leasesWithoutKeys"] == 1
    assert doc["missingLeases"] == []
    assert sum(band["liveKeys"] for band in doc["ages"]) == LIVE_KEYS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_snapshot(planted: dict[Flavour, Planted], flavour: Flavour) -> None:
    p = planted[flavour]
    doc = analyze_json(p.snapshot)
    assert doc["source"]["kind"] == "snapshot"
    assert doc["source"]["sha256"] == "verified"
    assert doc["totals"]["dbSize"] == p.snapshot.stat().st_size - 32
    check_planted(doc, p)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_data_dir_of_a_stopped_member(planted: dict[Flavour, Planted], flavour: Flavour) -> None:
    p = planted[flavour]
    doc = analyze_json(p.data_dir)
    assert doc["source"] == {
        "path": str(p.data_dir),
        "kind": "dataDir",
        "db": str(p.data_dir / "member" / "snap" / "db"),
        "sha256": "absent",
    }
    check_planted(doc, p)
    # The same analysis as the snapshot's; only the file's own sizes may differ.
    snap = analyze_json(p.snapshot)
    for doc_ in (doc, snap):
        del doc_["source"]
        for field in ("dbSize", "dbSizeInUse"):
            del doc_["totals"][field]
    assert doc == snap


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_data_dir_of_a_running_member_is_refused(
    planted: dict[Flavour, Planted], flavour: Flavour
) -> None:
    result = planted[flavour].while_running
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: cannot analyze {planted[flavour].data_dir}: database is locked by another "
        "process (is a member running on it?)\n"
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_table(planted: dict[Flavour, Planted], flavour: Flavour) -> None:
    p = planted[flavour]
    result = analyze(str(p.snapshot), "--depth", "1", "--top", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"source     {p.snapshot} (snapshot, sha256 verified)"
    assert lines[1] == f"revision   {p.revision} (compacted at {p.compact_revision})"
    cells = {row[0]: row for row in (re.split(r"\s{2,}", line) for line in lines)}
    # PREFIX, LIVE KEYS, LIVE BYTES, REVISIONS, STORED BYTES, SHARE
    assert cells["/junk/"][1] == str(JUNK_KEYS)
    assert cells["/junk/"][3] == str(JUNK_KEYS)
    assert cells["/app/"][1] == str(LIVE_KEYS - JUNK_KEYS)
    assert cells["/app/"][3] == str(REVISIONS - JUNK_KEYS)
    assert cells["(total)"][1] == str(LIVE_KEYS)
    hot = next(line for line in lines if line.startswith(HOT_KEY.decode() + " "))
    assert hot.split()[1] == str(HOT_KEPT)


def _error(path: Path, *args: str) -> str:
    result = analyze(str(path), *args)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.rstrip("\n")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bad_inputs(planted: dict[Flavour, Planted], flavour: Flavour, tmp_path: Path) -> None:
    snapshot = planted[flavour].snapshot
    whole = snapshot.read_bytes()
    bad = tmp_path / "bad.db"

    bad.write_bytes(whole[:-32] + bytes(32))
    assert _error(bad).startswith(f"Error: cannot analyze {bad}: expected sha256 {'0' * 64}, got ")
    assert analyze(str(bad), "--skip-hash-check", "--format", "json").returncode == 0

    bad.write_bytes(whole[: len(whole) // 2])
    assert _error(bad).startswith(f"Error: cannot analyze {bad}: truncated: the database needs ")

    bad.write_bytes(whole[:-5])
    assert _error(bad) == (
        f"Error: cannot analyze {bad}: truncated: its size {len(whole) - 5} is neither whole "
        "512-byte blocks (a db) nor that plus a 32-byte SHA-256 (a snapshot)"
    )

    bad.write_bytes(b"this is not an etcd snapshot\n" * 300)
    assert _error(bad).startswith(f"Error: cannot analyze {bad}: not a bbolt database: ")

    bad.write_bytes(b"")
    assert _error(bad) == f"Error: cannot analyze {bad}: the file is empty"

    missing = tmp_path / "missing.db"
    assert _error(missing) == f"Error: cannot analyze {missing}: No such file or directory"

    no_db = tmp_path / "data"
    shutil.copytree(planted[flavour].data_dir / "member" / "wal", no_db / "member" / "wal")
    assert _error(no_db) == (
        f"Error: cannot analyze {no_db}: not a data dir: it has no member/snap/db"
    )
