"""The continuous backup's recorder (``backup.recorder``) on real servers and a real S3 server.

A member of each flavour, versitygw as the store (it refuses keys below an object's key, which
the chain's names must avoid). The full backup is ``etcdctl snapshot save`` at revision R; the
recorder extends it while a writer runs. Checked:

- the chain in S3 follows on from R without a hole, and the snapshot plus the chain's events,
  replayed by ``pyetcdutl snapshot restore --replay``, serve exactly the key space the member
  served at the chain's last revision (every key, value, revision, version and lease);
- the recovery point: every acknowledged write is in S3 within the segment interval plus one
  upload (measured, and printed with -s);
- an idle cluster gets an empty segment that proves nothing was written;
- a recorder restarted later resumes at the chain's end (a blind spell, no hole); one started
  after etcd compacted what it had not recorded says the chain is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from etcd_operator.backup.eventlog import Record, read_log, write_records
from etcd_operator.backup.recorder import Chain, ChainBrokenError, Recorder
from etcd_operator.backup.segments import Coverage, StoredSegment, fetch_segment, list_chain
from etcd_operator.backup.store import make_client
from pyetcd.client import EtcdClient
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import PYETCDUTL_BIN, Member
from tests.integration.conftest import start_or_fail
from tests.integration.test_snapshot_interop import (
    CMD_TIMEOUT,
    START_TIMEOUT,
    require_binaries,
    run_ok,
    served,
)
from tools.s3server import S3Server

pytestmark = pytest.mark.integration

BACKUP_KEY = "ns/demo/demo-full.db"
INTERVAL = 1.0


@pytest.fixture(scope="module")
def s3(versitygw: S3Server) -> S3Server:
    return versitygw


def bucket(s3: S3Server) -> str:
    return s3.create_bucket(f"continuous-{uuid.uuid4().hex[:12]}")


async def record_until(
    recorder: Recorder,
    work: Awaitable[None] | None,
    done: Callable[[], bool],
    what: str,
    within: float = 30.0,
) -> None:
    """Run the recorder while ``work`` runs and then until ``done()`` holds (or the recorder
    ends: its error is raised); fails after ``timeout`` seconds."""
    task = asyncio.create_task(recorder.run())
    try:
        if work is not None:
            await work
        deadline = time.monotonic() + within
        while not done() and not task.done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def writer(member: Member, count: int, acked: dict[int, float]) -> None:
    async with EtcdClient([member.host_port]) as client:
        for i in range(count):
            rev = await client.put(f"/w/{i % 50}", f"value {i}")
            acked[rev] = time.time()
            await asyncio.sleep(0.01)


async def chain_log(s3: S3Server, store_bucket: str, base: int) -> bytes:
    store = s3.store(store_bucket)
    client = make_client(store)
    records: list[Record] = []
    for seg in await list_chain(client, store, BACKUP_KEY):
        data = await fetch_segment(client, store, BACKUP_KEY, seg, None)
        records.extend(read_log(data))
    assert base >= 0
    return write_records(records)


def test_a_recorded_chain_restores_what_was_served_and_keeps_its_recovery_point(
    member: Member, s3: S3Server, tmp_path: Path
) -> None:
    require_binaries()
    store_bucket = bucket(s3)
    store = s3.store(store_bucket)
    snapshot = tmp_path / "full.db"
    for i in range(20):
        member.etcdctl("put", f"/before/{i}", "x")
    save = member.etcdctl("snapshot", "save", str(snapshot), timeout=CMD_TIMEOUT)
    assert save.returncode == 0, save.stderr
    base = served(member).revision
    uploads: list[tuple[float, StoredSegment]] = []

    def on_segment(stored: StoredSegment, _: Coverage) -> None:
        uploads.append((time.time(), stored))

    acked: dict[int, float] = {}

    async def scenario() -> None:
        async with EtcdClient([member.host_port]) as etcd:
            recorder = Recorder(
                make_client(store),
                store,
                Chain(BACKUP_KEY, base),
                etcd,
                interval=INTERVAL,
                idle_proof=1.5,
                on_segment=on_segment,
            )
            work = asyncio.ensure_future(writer(member, 600, acked))
            with grpc.insecure_channel(member.host_port) as channel:
                lease = rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(
                    rpc_pb2.LeaseGrantRequest(TTL=900), timeout=10
                )
                rpc_pb2_grpc.KVStub(channel).Put(
                    rpc_pb2.PutRequest(key=b"/leased", value=b"v", lease=lease.ID), timeout=10
                )
            await record_until(
                recorder,
                work,
                lambda: any(s.segment.empty for _, s in uploads),
                "an idle proof after the writes",
            )

    asyncio.run(scenario())
    final = served(member)
    segments = [s.segment for _, s in uploads]
    assert segments[0].after == base
    assert all(a.upto == b.after for a, b in itertools.pairwise(segments))
    assert segments[-1].upto == final.revision
    assert any(s.empty for s in segments), "no idle proof after the writes stopped"
    # Recovery point: each acknowledged write against the upload that carried it.
    lags = []
    for rev, when in acked.items():
        carried = next(t for t, s in uploads if s.segment.after < rev <= s.segment.upto)
        lags.append(carried - when)
    worst = max(lags)
    print(f"recovery point over {len(lags)} writes: worst {worst:.2f} s, interval {INTERVAL} s")
    # Loose for a loaded machine, and still far below the ~6 s the writes take: a recorder
    # that cut only by size, or at the end, fails it.
    assert worst <= INTERVAL + 4.0, f"a write reached S3 {worst:.2f} s after its ack"
    # The snapshot plus the chain restores what the member served.
    log_file = tmp_path / "chain.log"
    log_file.write_bytes(asyncio.run(chain_log(s3, store_bucket, base)))
    restored = Member("pyetcd", tmp_path / "restored", name="restored", cluster_token="c")
    run_ok(
        [
            str(PYETCDUTL_BIN),
            "snapshot",
            "restore",
            str(snapshot),
            f"--name={restored.name}",
            f"--initial-cluster={restored.name}={restored.peer_url}",
            f"--initial-cluster-token={restored.cluster_token}",
            f"--initial-advertise-peer-urls={restored.peer_url}",
            f"--data-dir={restored.data_dir}",
            f"--replay={log_file}",
        ]
    )
    try:
        start_or_fail(restored, START_TIMEOUT)
        now = served(restored)
        assert (now.revision, now.kvs) == (final.revision, final.kvs)
    finally:
        restored.stop()


def test_a_restarted_recorder_resumes_and_a_compacted_one_says_the_chain_broke(
    member: Member, s3: S3Server
) -> None:
    store_bucket = bucket(s3)
    store = s3.store(store_bucket)
    base = served(member).revision

    async def run_once(expect_broken: bool = False) -> Coverage:
        async with EtcdClient([member.host_port]) as etcd:
            recorder = Recorder(
                make_client(store), store, Chain(BACKUP_KEY, base), etcd, interval=0.3
            )
            if expect_broken:
                with pytest.raises(ChainBrokenError) as broken:
                    await record_until(recorder, None, lambda: False, "the chain to break")
                assert "compacted" in str(broken.value)
            else:
                target = served(member).revision + 5
                await record_until(
                    recorder,
                    asyncio.ensure_future(put_some(member, 5)),
                    lambda: recorder.coverage.upto >= target,
                    f"revision {target} in the store",
                )
            return recorder.coverage

    async def put_some(member: Member, n: int) -> None:
        async with EtcdClient([member.host_port]) as client:
            for i in range(n):
                await client.put(f"/r/{i}", "x")

    first = asyncio.run(run_once())
    asyncio.run(put_some(member, 5))  # while no recorder watches
    second = asyncio.run(run_once())
    assert second.gap is None and second.upto == served(member).revision
    assert second.upto > first.upto
    assert len(second.blind_spells) >= 1
    asyncio.run(put_some(member, 5))
    compact_to = served(member).revision
    with grpc.insecure_channel(member.host_port) as channel:
        rpc_pb2_grpc.KVStub(channel).Compact(
            rpc_pb2.CompactionRequest(revision=compact_to), timeout=10
        )
    asyncio.run(run_once(expect_broken=True))
