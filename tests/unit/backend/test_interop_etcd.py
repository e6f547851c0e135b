"""Interop with the real bbolt inside Debian's upstream etcd 3.4 (/usr/bin/etcd, etcdctl).

(a) etcd writes a db, BoltBackend reads it (buckets, KeyValues, etcd's own Hash RPC value), and a
    db defragmented by BoltBackend is served again by etcd;
(b) BoltBackend writes etcd's buckets, and ``etcdctl snapshot status`` (bbolt ``tx.Check``) accepts
    its snapshot; ``etcdctl snapshot restore`` + etcd serve the keys from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.backend.contract import ALL_BUCKETS
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pyetcd.proto.mvccpb import kv_pb2

from tools.ports import free_port

from .helpers import rev_key

pytestmark = pytest.mark.integration

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
ENV = {**os.environ, "ETCDCTL_API": "3"}


class Etcd:
    """One upstream etcd member on loopback; ``stop()`` is SIGTERM and wait."""

    def __init__(self, data_dir: Path, log: Path, peer: str = "") -> None:
        self.client = f"http://127.0.0.1:{free_port()}"
        peer = peer or f"http://127.0.0.1:{free_port()}"
        self.endpoint = self.client.removeprefix("http://")
        self.log = log
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--name=t",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.client}",
                f"--advertise-client-urls={self.client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=t={peer}",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, deadline_s: float = 60.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            health = subprocess.run(
                [
                    ETCDCTL,
                    f"--endpoints={self.client}",
                    "--command-timeout=2s",
                    "endpoint",
                    "health",
                ],
                env=ENV,
                capture_output=True,
                check=False,
            )
            if health.returncode == 0:
                return
            try:  # pace the polls by waiting on the process itself: an early exit fails fast
                code = self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"etcd exited with {code}: {self.log.read_text()[-3000:]}")
        raise AssertionError(f"etcd not healthy in {deadline_s}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


EtcdFactory = Callable[..., Etcd]


@pytest.fixture
def etcd_factory(tmp_path: Path) -> Iterator[EtcdFactory]:
    """Starts etcd members; every one is stopped at teardown, also when the test failed."""
    started: list[Etcd] = []

    def start(data_dir: Path, peer: str = "") -> Etcd:
        etcd = Etcd(data_dir, tmp_path / "etcd.log", peer)
        started.append(etcd)
        return etcd

    yield start
    for e in started:
        e.stop()


def test_boltbackend_reads_a_db_written_by_etcd(tmp_path: Path, etcd_factory: EtcdFactory) -> None:
    data_dir = tmp_path / "etcd"
    etcd = etcd_factory(data_dir)
    etcd.wait_ready()
    rnd = random.Random(1)
    written: dict[int, tuple[bytes, bytes]] = {}
    with grpc.insecure_channel(etcd.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for _ in range(3000):
            key = b"/registry/k%05d" % rnd.randint(0, 1500)
            value = rnd.randbytes(rnd.randint(0, 400))
            resp = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
            written[resp.header.revision] = (key, value)
        deleted = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/k00001"), timeout=10)
        etcd_hash = rpc_pb2_grpc.MaintenanceStub(ch).Hash(rpc_pb2.HashRequest(), timeout=10).hash
    etcd.stop()
    assert etcd.proc.returncode in (0, -signal.SIGTERM)

    db = data_dir / "member" / "snap" / "db"
    with BoltBackend(str(db)) as b:
        assert set(ALL_BUCKETS) <= set(b.bucket_names())
        assert b.size() == db.stat().st_size
        assert len(b.get(b"meta", b"consistent_index") or b"") == 8
        for rev, (key, value) in written.items():
            raw = b.get(b"key", rev_key(rev))
            assert raw is not None, rev
            kv_ = kv_pb2.KeyValue.FromString(raw)
            assert (kv_.key, kv_.value, kv_.mod_revision) == (key, value, rev)
        tombstone = b.get(b"key", rev_key(deleted.header.revision) + b"t")
        if deleted.deleted:
            assert tombstone is not None
        revs = [k for k, _ in b.range(b"key", b"")]
        assert revs == sorted(revs) and len(revs) >= len(written)
        # etcd's Hash RPC: every bucket, minus meta/consistent_index (3.4's DefaultIgnores).
        assert b.hash(ignore={(b"meta", b"consistent_index")}) == etcd_hash
        before = b.hash()
        b.defrag()  # rewrite every page with our writer; etcd must serve it again
        assert b.hash() == before

    etcd2 = etcd_factory(data_dir)
    etcd2.wait_ready()
    with grpc.insecure_channel(etcd2.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        last = max(written)
        got = kv.Range(rpc_pb2.RangeRequest(key=written[last][0]), timeout=10)
        assert got.kvs[0].value == written[last][1]
        everything = kv.Range(
            rpc_pb2.RangeRequest(key=b"/registry/", range_end=b"/registry0"), timeout=10
        )
        assert len(everything.kvs) == len({k for k, _ in written.values()} - {b"/registry/k00001"})
        assert kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"defrag"), timeout=10).header.revision
    etcd2.stop()
    assert etcd2.proc.returncode in (0, -signal.SIGTERM)


def build_etcd_db(path: str, n: int) -> tuple[int, dict[bytes, bytes], int]:
    """An etcd-shaped db: n puts of 1000 keys, a third deleted; returns (revision, live, keys)."""
    rnd = random.Random(2)
    live: dict[bytes, bytes] = {}
    versions: dict[bytes, tuple[int, int]] = {}
    with BoltBackend(path) as b:
        for name in ALL_BUCKETS:
            b.create_bucket(name)
        b.put(b"cluster", b"clusterVersion", b"3.4.0")
        b.put(b"members", b"8211f1d0f64f3269", b'{"id":9372538179322589801,"peerURLs":[]}')
        b.put(b"auth", b"authRevision", (1).to_bytes(8, "big"))
        rev = 1
        for i in range(n):
            rev += 1
            key = b"/registry/pods/p%04d" % rnd.randint(0, 999)
            value = rnd.randbytes(rnd.randint(50, 300))
            create, version = versions.get(key, (rev, 0))
            kv = kv_pb2.KeyValue(
                key=key, create_revision=create, mod_revision=rev, version=version + 1, value=value
            )
            versions[key] = (create, version + 1)
            b.put(b"key", rev_key(rev), kv.SerializeToString(), seq=True)
            live[key] = value
            if i % 3000 == 2999:
                b.put(b"meta", b"consistent_index", rev.to_bytes(8, "big"))
                b.commit()
        # Compaction-like deletes of old revisions leave free pages in the middle of the file.
        for r in range(2, n // 3):
            b.delete(b"key", rev_key(r))
        b.put(b"meta", b"consistent_index", rev.to_bytes(8, "big"))
        b.commit()
        total = sum(len(list(b.range(name, b""))) for name in b.bucket_names())
        assert b.free_page_count() + b._freelist.pending_count() > 100
        assert b._buckets[b"key"].root is not None and not b._buckets[b"key"].root.is_leaf
    return rev, live, total


def test_etcdctl_accepts_a_snapshot_written_by_boltbackend(
    tmp_path: Path, etcd_factory: EtcdFactory
) -> None:
    db = str(tmp_path / "db")
    rev, live, total = build_etcd_db(db, 20000)
    with BoltBackend(db) as b:
        expect_hash = b.hash()
        with b.snapshot() as snap:
            data = b"".join(iter(lambda: snap.read(32 * 1024), b""))
        assert len(data) == snap.size
    snap_file = tmp_path / "snapshot.db"
    snap_file.write_bytes(data + hashlib.sha256(data).digest())

    status = subprocess.run(
        [ETCDCTL, "snapshot", "status", str(snap_file), "-w", "json"],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["totalKey"] == total
    assert report["revision"] == rev
    assert report["totalSize"] == len(data)
    assert report["hash"] == expect_hash

    # Restore it and let etcd serve it: bbolt opens it read-write and mvcc rebuilds its index.
    data_dir = tmp_path / "restored"
    peer = f"http://127.0.0.1:{free_port()}"
    restore = subprocess.run(
        [
            *(ETCDCTL, "snapshot", "restore", str(snap_file), f"--data-dir={data_dir}"),
            *("--name=t", f"--initial-cluster=t={peer}", f"--initial-advertise-peer-urls={peer}"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr
    etcd = etcd_factory(data_dir, peer)
    etcd.wait_ready()
    with grpc.insecure_channel(etcd.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        resp = kv.Range(
            rpc_pb2.RangeRequest(key=b"/registry/", range_end=b"/registry0"), timeout=10
        )
        assert {k.key: k.value for k in resp.kvs} == live
        assert resp.header.revision >= rev
    etcd.stop()
    assert etcd.proc.returncode in (0, -signal.SIGTERM)
