"""Point-in-time restore on real servers: a full backup, its continuous backup recorded while a
writer runs, and ``etcd-restore --to-revision`` / ``--to-time`` (the members' restore init
container) into a member that then serves exactly the key space of that point.

Per source flavour (etcd 3.4, pyetcd), versitygw as the store, zstd + AES like an encrypted
cluster's backups. The writer puts, overwrites and deletes keys, attaches some to a lease, and
pauses until the recorder has every write so far, so that a time inside the pause has one
right answer: the last revision before it.
Checked: a restore to a revision in the middle of the history serves what the source served at
that revision (read before any compaction); a restore to a time serves the revision before the
pause; a target past the chain's end is refused with one line that says how far it reaches.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from etcd_operator.backup.recorder import Chain, Recorder
from etcd_operator.backup.segments import coverage, list_chain
from etcd_operator.backup.store import make_client
from etcd_operator.restore import RestoreError, parse_args, restore
from pyetcd.client import EtcdClient
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import PYETCDUTL_BIN, Member
from tests.integration.conftest import start_or_fail
from tests.integration.test_analysis import ENCRYPTION_KEY, back_up
from tests.integration.test_restore_bump import served_at
from tests.integration.test_snapshot_interop import START_TIMEOUT, require_binaries, served
from tools.s3server import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(versitygw: S3Server) -> S3Server:
    return versitygw


async def write_history(member: Member, recorded: Callable[[], int]) -> tuple[int, float]:
    """Two bursts of writes around a pause that lasts until the recorder has the first burst
    (``recorded``: how far it reached); returns the last revision before the pause and a
    moment inside it (unix seconds)."""
    with grpc.insecure_channel(member.host_port) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(
            rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10
        )
        for i in range(0, 120, 11):
            rpc_pb2_grpc.KVStub(channel).Put(
                rpc_pb2.PutRequest(key=b"/pitr/leased/%d" % i, value=b"l", lease=lease.ID),
                timeout=10,
            )
    async with EtcdClient([member.host_port]) as client:
        for i in range(120):
            if i % 7 == 3:
                await client.delete(f"/pitr/{(i - 3) % 40}")
            else:
                await client.put(f"/pitr/{i % 40}", f"a{i}")
        before = (await client.status(member.host_port)).revision
        deadline = time.monotonic() + 30
        while recorded() < before:
            assert time.monotonic() < deadline, f"revision {before} never reached S3"
            await asyncio.sleep(0.05)
        # Every write so far arrived before this moment, and every later one after it.
        inside = time.time()
        for i in range(120):
            await client.put(f"/pitr/{i % 40}", f"b{i}")
        return before, inside


def restore_into(s3: S3Server, location: str, into: Member, base: int, *target: str) -> str:
    opts = parse_args(
        [
            f"--data-dir={into.data_dir}",
            f"--name={into.name}",
            f"--initial-advertise-peer-urls={into.peer_url}",
            f"--initial-cluster-token={into.cluster_token}",
            f"--location={location}",
            f"--endpoint={s3.url}",
            "--force-path-style",
            f"--base-revision={base}",
            f"--pyetcdutl={PYETCDUTL_BIN}",
            *target,
        ]
    )
    env = {
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER": f"{into.name}={into.peer_url}",
        "RESTORE_ACCESS_KEY_ID": s3.admin.access_key_id,
        "RESTORE_SECRET_ACCESS_KEY": s3.admin.secret_access_key,
        "RESTORE_ENCRYPTION_KEY": base64.b64encode(ENCRYPTION_KEY).decode(),
    }
    return restore(opts, env)


def test_a_restore_to_a_revision_or_a_time_serves_exactly_that_point(
    member: Member, s3: S3Server, tmp_path: Path
) -> None:
    require_binaries()
    bucket = s3.create_bucket(f"pitr-{uuid.uuid4().hex[:12]}")
    for i in range(40):
        member.etcdctl("put", f"/pitr/{i}", "base")
    backup = back_up(member, s3, bucket, "demo-full", encrypted=True)
    base = backup.result.metadata.snapshot.revision
    assert base is not None
    store = backup.store
    key = backup.result.key

    async def record() -> tuple[int, float]:
        async with EtcdClient([member.host_port]) as etcd:
            recorder = Recorder(
                make_client(store), store, Chain(key, base, encryption_key=ENCRYPTION_KEY), etcd,
                interval=0.5,
            )  # fmt: skip
            task = asyncio.create_task(recorder.run())
            try:
                before, pause = await write_history(member, lambda: recorder.coverage.upto)
                last = served(member).revision
                deadline = time.monotonic() + 30
                while recorder.coverage.upto < last:
                    assert not task.done(), task.exception()
                    assert time.monotonic() < deadline, f"revision {last} never reached S3"
                    await asyncio.sleep(0.05)
                return before, pause
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    before, pause = asyncio.run(record())
    last = served(member).revision
    middle = (base + before) // 2
    expected_middle = served_at(member, middle)
    expected_before = served_at(member, before)
    chain = coverage(base, asyncio.run(list_chain(make_client(store), store, key)))
    # Several segments (how many depends on how fast the store takes uploads): the cut at a
    # target is made inside a chain, not at its only segment.
    assert chain.gap is None and chain.upto == last and len(chain.segments) >= 2, chain

    # To a revision in the middle of the history.
    restored = Member("pyetcd", tmp_path / "by-revision", name="restored", cluster_token="pitr")
    said = restore_into(s3, backup.result.location, restored, base, f"--to-revision={middle}")
    assert f"to revision {middle} (asked: revision {middle})" in said, said
    assert_serves(restored, expected_middle.kvs, middle)

    # To a time in the pause: the last revision before it.
    when = datetime.fromtimestamp(pause, UTC).isoformat()
    restored = Member(member.flavour, tmp_path / "by-time", name="restored", cluster_token="pitr")
    said = restore_into(s3, backup.result.location, restored, base, f"--to-time={when}")
    assert f"to revision {before} (asked:" in said, said
    assert_serves(restored, expected_before.kvs, before)

    # Past the end: refused, and nothing is left behind.
    past = Member("pyetcd", tmp_path / "past", name="restored", cluster_token="pitr")
    with pytest.raises(RestoreError, match=f"reaches revision {last}, not {last + 10}"):
        restore_into(s3, backup.result.location, past, base, f"--to-revision={last + 10}")
    assert sorted(p.name for p in past.workdir.iterdir()) == [], "the failed restore left files"


def assert_serves(restored: Member, kvs: object, revision: int) -> None:
    try:
        start_or_fail(restored, START_TIMEOUT)
        now = served(restored)
        assert now.revision == revision
        assert now.kvs == kvs
    finally:
        restored.stop()
