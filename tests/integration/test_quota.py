"""The backend quota: NOSPACE is raised, refused writes lose nothing, etcd's recovery works.

Each flavour runs once with a small ``--quota-backend-bytes`` (2 MiB: above the size of a fresh
database of either flavour, 20-25 KiB). The test writes new versions of one key over gRPC until
a Put fails, and checks that the failing Put got etcd's error and wrote nothing. From there the
same etcdctl steps run on both flavours and are compared step by step, normalised as in the
etcdctl compatibility suite (``compat.py``): the alarm is listed (``memberID:<id1>
alarm:NOSPACE``) and shown in ``endpoint status``; reads and deletes work; puts, put-carrying
txns and lease grants keep failing; then etcd's documented recovery (compact to the current
revision, defragment, disarm the alarm) makes writes work again.

How many Puts fit before the first failure is not compared: it depends on when the backend
commits (batch interval) and on page allocation, both of which legitimately differ (upstream
stopped after about 40, pyetcd after about 60 in one run). So no compared step prints the big
key's version or create revision, and revisions are relative to the revision after the failure.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Flavour, Member
from tests.integration.compat import Outcome, Run, Runner, Scenario, compare
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

QUOTA = 2 * 1024 * 1024
VALUE = b"q" * (64 * 1024)
BIG_KEY = b"/q/big"
MAX_PUTS = 400  # 25 MiB of history: far beyond the quota of either flavour
FILL_DEADLINE = 60.0
RPC_TIMEOUT = 10.0
NO_SPACE = (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")


def R(*args: str, stdin: str | None = None, fails: bool = False, label: str = "") -> Run:
    return Run(tuple(args), stdin=stdin, fails=fails, label=label)


SCENARIO = Scenario(
    "quota",
    (
        R("put", "/q/small", "1", fails=True, label="a small put fails while NOSPACE is raised"),
        R("alarm", "list"),
        R("alarm", "list", "-w", "json"),
        R("endpoint", "status", label="status shows the alarm in ERRORS"),
        R("endpoint", "status", "-w", "json"),
        R("endpoint", "health"),
        R("get", "/q/big", "--keys-only", label="reads still work"),
        R("get", "/q/small", label="the refused put wrote nothing"),
        R("txn", stdin="\nput /q/txn 1\n\n\n", fails=True, label="a txn with a put fails"),
        R("txn", stdin="\nget /q/big --keys-only\n\n\n", label="a read-only txn works"),
        R("lease", "grant", "60", fails=True, label="a lease grant fails"),
        R("del", "/q/big", label="deletes still work"),
        R("put", "/q/small", "2", fails=True, label="puts keep failing after a delete"),
        R("get", "--prefix", "/q/", "-w", "json", label="only the delete was written"),
        R("compaction", "--physical", "{base+1}", label="compact to the current revision"),
        R("defrag"),
        R("put", "/q/small", "3", fails=True, label="puts fail until the alarm is disarmed"),
        R("alarm", "disarm"),
        R("alarm", "list", label="no alarm after disarm"),
        R("endpoint", "status", label="no errors after disarm"),
        R("put", "/q/small", "4", label="writes work again"),
        R("lease", "grant", "60", label="lease grants work again"),
        R("get", "--prefix", "/q/", "-w", "json"),
    ),
)

# The outputs that matter, pinned on upstream (so that the comparison cannot pass vacuously).
EXPECTED_UPSTREAM: dict[str, str] = {
    "alarm list": "memberID:<id1> alarm:NOSPACE \n",  # sic: etcdctl prints a trailing space
    "status shows the alarm in ERRORS": (
        "<client>, <id1>, <version>, <size>, true, false, <raft_term>, <raft_index>, "
        "<raft_index>, memberID:<id1> alarm:NOSPACE\n"
    ),
    "reads still work": "/q/big\n\n",
    "the refused put wrote nothing": "",
    "deletes still work": "1\n",
    "alarm disarm": "memberID:<id1> alarm:NOSPACE \n",
    "no alarm after disarm": "",
    "writes work again": "OK\n",
}


def fill(member: Member) -> tuple[int, tuple[grpc.StatusCode, str]]:
    """Put new versions of BIG_KEY until one fails; return (puts acknowledged, the error).

    Also checks that the failed Put wrote nothing: same store revision, same value. A put that
    timed out (a loaded machine: etcd's "request timed out", or the RPC deadline) may still
    apply, so it is not the refusal: the fill goes on, and the checks allow for it.
    """
    unsure = 0
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        deadline = time.monotonic() + FILL_DEADLINE
        for acked in range(MAX_PUTS):
            value = b"%06d" % acked + VALUE
            try:
                kv.Put(rpc_pb2.PutRequest(key=BIG_KEY, value=value), timeout=RPC_TIMEOUT)
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                error = (exc.code(), exc.details() or "")
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED or "timed out" in error[1]:
                    unsure += 1
                    continue
                break
            assert time.monotonic() < deadline, f"{member}: {acked} puts and no NOSPACE yet"
        else:
            pytest.fail(f"{member}: {MAX_PUTS} puts of {len(VALUE)} bytes never hit the quota")
        got = kv.Range(rpc_pb2.RangeRequest(key=BIG_KEY), timeout=RPC_TIMEOUT)
        (stored,) = got.kvs
        assert acked - unsure <= stored.version <= acked, f"{member}: a refused put was written"
        if unsure == 0:
            assert stored.value[:6] == b"%06d" % (acked - 1)
        assert stored.value[:6] != b"%06d" % acked, f"{member}: the refused put's value is stored"
        assert got.header.revision == stored.mod_revision, f"{member}: revision moved"
    return acked, error


def run_flavour(
    members: MemberRegistry, flavour: Flavour
) -> tuple[list[Outcome], tuple[grpc.StatusCode, str]]:
    member = members.new(flavour, name="quota", extra_flags=[f"--quota-backend-bytes={QUOTA}"])
    status = member.etcdctl("endpoint", "status", "-w", "json")
    db_size = json.loads(status.stdout)[0]["Status"]["dbSize"]
    assert db_size < QUOTA // 4, (
        f"{flavour}: a fresh db of {db_size} bytes is too close to the quota"
    )
    acked, error = fill(member)
    assert acked > 0, f"{flavour}: the very first put failed: {error}"
    outcomes = Runner(member).run_scenario(SCENARIO)
    member.stop()  # one server at a time on two cores
    return outcomes, error


@pytest.mark.integration
def test_nospace_alarm_and_recovery(members: MemberRegistry) -> None:
    flavours: tuple[Flavour, Flavour] = ("etcd", "pyetcd")
    runs = {flavour: run_flavour(members, flavour) for flavour in flavours}
    errors = {flavour: error for flavour, (_, error) in runs.items()}
    assert errors == {"etcd": NO_SPACE, "pyetcd": NO_SPACE}
    upstream = {o.title: o.stdout for o in runs["etcd"][0]}
    assert {title: upstream[title] for title in EXPECTED_UPSTREAM} == EXPECTED_UPSTREAM
    problems = compare("quota", flavours, runs["etcd"][0], runs["pyetcd"][0], {})
    assert not problems, f"{len(problems)} difference(s):\n\n" + "\n\n".join(problems)
