"""A member down during 100k writes catches up through a snapshot, at full scale.

A 3-member pyetcd cluster runs with etcd's snapshot settings scaled for a test
(``--snapshot-count=10000`` and the default ``--experimental-snapshot-catchup-entries`` of 5000):
the leader saves a snapshot every 10,000 applied entries and then compacts its in-memory log to
5,000 entries behind it. One follower is killed with SIGKILL, 100,000 keys are written through
the leader by concurrent gRPC clients, and the follower is started again on its old data dir.
By then the entries it misses are long gone from the leader's log, so it can only catch up
through a snapshot: the test reads that from both logs (``sending snapshot``/``sent snapshot`` on
the leader, ``receiving snapshot``/``applied snapshot`` on the follower) and waits, with a
deadline, until the follower's own (serializable) view is the leader's: the same revision, the
same ``HashKV`` at that revision, the same key count, and the same values for sampled keys.

The write and catch-up times are printed (``pytest -s``); they are a report, not an assertion.
Every process is stopped in a ``finally``; waiting is polling with a deadline.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Cluster, Member, MemberError, Timing, status, wait_for
from tests.integration.test_cluster3 import leader

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


WRITES = 100_000
SNAPSHOT_COUNT = 10_000  # --snapshot-count
CATCHUP_ENTRIES = 5_000  # the default --experimental-snapshot-catchup-entries, left unset
PREFIX = b"/catchup/"
VALUE_SIZE = 64
# Requests in flight and the channels they share: enough to keep the leader's group commit
# full (measured: more than 256 in flight adds latency, not throughput, on two cores).
IN_FLIGHT = 256
CHANNELS = 16
PUT_TIMEOUT = 30.0
PUT_ATTEMPTS = 8
# Between attempts of one put: a channel whose connection dropped (a clean-clone run under
# load met "Socket closed") fails every call at once until it has reconnected, so immediate
# retries would all fail; this backs off 0.1 s, 0.2 s, ... up to 3.2 s (6.3 s in all).
RETRY_BACKOFF = 0.1
WRITE_DEADLINE = 300.0
CATCHUP_DEADLINE = 180.0
SAMPLES = 200
# etcd's default ticks: a busy two-core machine must not cause elections during the writes.
TIMING = Timing(heartbeat_ms=100, election_ms=1000)
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
}


def key_of(i: int) -> bytes:
    return PREFIX + b"%06d" % i


def value_of(i: int) -> bytes:
    return (b"%06d:" % i).ljust(VALUE_SIZE, b"v")


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- the writers ----------------------------------------------------------------------------


@dataclass
class WriteStats:
    seconds: float = 0.0
    retries: int = 0


async def write_keys(endpoint: str, count: int, deadline: float) -> WriteStats:
    """Put keys ``0..count-1`` through ``endpoint`` with ``IN_FLIGHT`` concurrent requests.

    A put that fails with a transient error is retried (a put is idempotent here: same key,
    same value); any other error, or ``PUT_ATTEMPTS`` failures of one key, fails the test."""
    stats = WriteStats()
    # One subchannel (one TCP connection) per channel: grpc would share one between channels
    # with the same target and arguments.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(endpoint, options=options) for _ in range(CHANNELS)]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    next_key = 0

    async def put(stub: rpc_pb2_grpc.KVAsyncStub, i: int) -> None:
        request = rpc_pb2.PutRequest(key=key_of(i), value=value_of(i))
        for attempt in range(1, PUT_ATTEMPTS + 1):
            try:
                await stub.Put(request, timeout=PUT_TIMEOUT)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == PUT_ATTEMPTS:
                    raise AssertionError(
                        f"put {key_of(i)!r} failed after {attempt} attempt(s): "
                        f"{exc.code().name} {exc.details()}"
                    ) from None
                stats.retries += 1
                await asyncio.sleep(min(RETRY_BACKOFF * 2 ** (attempt - 1), 3.2))

    async def worker(index: int) -> None:
        nonlocal next_key
        stub = stubs[index % CHANNELS]
        while next_key < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {next_key} of {count} puts before the deadline")
            i = next_key
            next_key += 1
            await put(stub, i)

    began = time.monotonic()
    try:
        await asyncio.gather(*(worker(n) for n in range(IN_FLIGHT)))
    finally:
        for ch in channels:
            await ch.close()
    stats.seconds = time.monotonic() - began
    return stats


# -- reading a member's own view ------------------------------------------------------------


def hash_kv(member: Member, revision: int) -> rpc_pb2.HashKVResponse:
    with grpc.insecure_channel(member.host_port) as channel:
        resp: rpc_pb2.HashKVResponse = rpc_pb2_grpc.MaintenanceStub(channel).HashKV(
            rpc_pb2.HashKVRequest(revision=revision), timeout=60
        )
        return resp


def serializable_count(member: Member) -> int:
    with grpc.insecure_channel(member.host_port) as channel:
        resp = rpc_pb2_grpc.KVStub(channel).Range(
            rpc_pb2.RangeRequest(
                key=PREFIX, range_end=prefix_end(PREFIX), count_only=True, serializable=True
            ),
            timeout=60,
        )
        return int(resp.count)


def serializable_values(member: Member, indexes: list[int]) -> dict[int, bytes | None]:
    out: dict[int, bytes | None] = {}
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for i in indexes:
            resp = kv.Range(rpc_pb2.RangeRequest(key=key_of(i), serializable=True), timeout=10)
            out[i] = resp.kvs[0].value if resp.kvs else None
    return out


def revision_of(member: Member) -> int | None:
    st = status(member)
    return None if st is None else int(st.header.revision)


# -- the scenario ---------------------------------------------------------------------------

SENDING = re.compile(r"sending snapshot at index (\d+) \((\d+) bytes\) to peer ([0-9a-f]+)")
SENT = re.compile(r"sent snapshot at index (\d+) to peer ([0-9a-f]+)")
RECEIVING = re.compile(r"receiving snapshot at index (\d+) \((\d+) bytes\) from ([0-9a-f]+)")
APPLIED = re.compile(r"applied snapshot at index (\d+) \(revision (\d+)\)")
SAVED = re.compile(r"saved snapshot at index (\d+)")


def log_text(member: Member) -> str:
    return member.log_path.read_text(errors="replace")


def test_a_member_down_during_100k_writes_catches_up_through_a_snapshot(tmp_path: Path) -> None:
    cluster = Cluster(
        "pyetcd",
        tmp_path / "pyetcd",
        3,
        timing=TIMING,
        extra_flags=(f"--snapshot-count={SNAPSHOT_COUNT}",),
    )
    try:
        cluster.start()
        lead = leader(cluster)
        follower = next(m for m in cluster.members if m is not lead)
        lead_st = wait_for("the leader's status", lambda: status(lead), 30)
        follower_st = wait_for("the follower's status", lambda: status(follower), 30)
        lead_id, follower_id = lead_st.header.member_id, follower_st.header.member_id
        behind_at = int(follower_st.raftAppliedIndex)
        follower.kill(signal.SIGKILL)

        stats = asyncio.run(write_keys(lead.host_port, WRITES, time.monotonic() + WRITE_DEADLINE))
        print(
            f"\n{WRITES} puts through the leader in {stats.seconds:.1f} s "
            f"({WRITES / stats.seconds:,.0f}/s, {IN_FLIGHT} in flight, {stats.retries} retried)"
        )
        alive = [m for m in cluster.members if m is not follower]
        for m in alive:
            m.check_alive()
        # Nothing writes from here on: the leader's revision is the one to reach.
        lead_st = wait_for("the leader's status", lambda: status(lead), 30, *alive)
        assert lead_st.leader == lead_id, "the leadership moved during the writes"
        target_rev = int(lead_st.header.revision)
        assert target_rev >= WRITES + 1, target_rev
        # The leader snapshotted (and so compacted its log) far past where the follower stopped.
        # (one snapshot per SNAPSHOT_COUNT applied entries, give or take an apply batch)
        saved = [int(i) for i in SAVED.findall(log_text(lead))]
        assert len(saved) >= WRITES // SNAPSHOT_COUNT // 2, saved
        assert max(saved) - CATCHUP_ENTRIES > behind_at, (saved, behind_at)

        restarted = time.monotonic()
        follower.start()
        wait_for(
            f"the follower to reach revision {target_rev}",
            lambda: True if revision_of(follower) == target_rev else None,
            CATCHUP_DEADLINE,
            follower,
            *alive,
        )
        caught_up = time.monotonic() - restarted
        expected = hash_kv(lead, target_rev)
        got = hash_kv(follower, target_rev)
        assert (got.hash, got.compact_revision, got.hash_revision) == (
            expected.hash,
            expected.compact_revision,
            expected.hash_revision,
        ), (got, expected)
        assert serializable_count(follower) == WRITES
        rng = random.Random(WRITES)
        sample = sorted({0, WRITES - 1, *rng.sample(range(WRITES), SAMPLES)})
        values = serializable_values(follower, sample)
        wrong = {i: v for i, v in values.items() if v != value_of(i)}
        assert not wrong, f"{len(wrong)} sampled keys differ on the follower: {list(wrong)[:5]}"

        # It came through a snapshot, sent by the leader to this follower.
        peer = f"{follower_id:x}"
        sent = wait_for(
            "the leader to log the snapshot as sent",
            lambda: [m for m in SENT.findall(log_text(lead)) if m[1] == peer] or None,
            30,
            *alive,
        )
        sending = [m for m in SENDING.findall(log_text(lead)) if m[2] == peer]
        follower_log = log_text(follower).split(f"==== start #{follower.starts}:", 1)[-1]
        receiving = [m for m in RECEIVING.findall(follower_log) if m[2] == f"{lead_id:x}"]
        applied = APPLIED.findall(follower_log)
        assert sending, f"the leader never sent a snapshot to {peer}:\n{lead.log_tail(60)}"
        assert receiving, f"the follower received no snapshot:\n{follower.log_tail(60)}"
        assert applied, f"the follower applied no snapshot:\n{follower.log_tail(60)}"
        snap_index, snap_bytes = int(receiving[-1][0]), int(receiving[-1][1])
        assert snap_index >= WRITES, receiving
        assert snap_index in {int(s[0]) for s in sent}, (sent, receiving)
        assert snap_index in {int(a[0]) for a in applied}, (applied, receiving)
        print(
            f"follower caught up {caught_up:.1f} s after its restart, through a snapshot at "
            f"index {snap_index} ({snap_bytes / 2**20:.1f} MiB); revision {target_rev}"
        )

        # And it is a full member again: a write through it is read back linearizably.
        put = follower.etcdctl("put", "/catchup-done", "yes", "--command-timeout=15s")
        assert put.returncode == 0, put.stderr
        got_back = lead.etcdctl("get", "/catchup-done", "--print-value-only")
        assert got_back.stdout == "yes\n", got_back
    except MemberError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        cluster.stop()
