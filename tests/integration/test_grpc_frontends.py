"""``--experimental-grpc-frontends``: front-end processes accept the client port's connections,
serve their HTTP/2 and relay each call to the member (``pyetcd.api.relay``).

What a client sees must not change: etcdctl's unary calls, watch and lease keep-alive streams,
auth tokens in metadata, deadlines, etcd's HTTP endpoints on the same port (handed back to the
member), and large responses (the relay's credit). And the processes must follow the member: a
front-end that dies is started again, and none outlives a member killed with -9 (they hold its
port). ``test_grpc_stack`` compares the transport's own answers with etcd's.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Member, wait_for
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

FRONTENDS = 2


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemberRegistry]:
    registry = MemberRegistry(tmp_path_factory.mktemp("frontends"))
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture(scope="module")
def member(registry: MemberRegistry) -> Member:
    return registry.new("pyetcd", extra_flags=(f"--experimental-grpc-frontends={FRONTENDS}",))


def frontends(member: Member) -> list[int]:
    """The pids of the member's front-end processes (its children running the relay)."""
    assert member.proc is not None
    found = []
    for task in Path(f"/proc/{member.proc.pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"pyetcd.api.relay.frontend" in cmdline:
                found.append(int(pid))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ok(member: Member, *args: str) -> str:
    result = member.etcdctl(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_member_serves_no_client_itself(member: Member) -> None:
    assert len(frontends(member)) == FRONTENDS
    ok(member, "put", "fe/a", "1")
    assert ok(member, "get", "fe/a", "--print-value-only") == "1\n"


def test_watch_and_lease_keep_alive_streams_are_relayed(member: Member) -> None:
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fe/w"))
    with grpc.insecure_channel(member.host_port) as ch:
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([create]), timeout=20)
        assert next(stream).created
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"fe/w", value=b"seen"), timeout=10)
        event = next(stream).events[0]
        assert (event.kv.key, event.kv.value) == (b"fe/w", b"seen")
        stream.cancel()
    lease = ok(member, "lease", "grant", "30").split()[1]
    ok(member, "put", "fe/leased", "x", f"--lease={lease}")
    kept = ok(member, "lease", "keep-alive", "--once", lease)
    assert f"lease {lease} keepalived with TTL(" in kept
    assert "fe/leased" in ok(member, "lease", "timetolive", lease, "--keys")


def test_http_endpoints_on_the_client_port_are_handed_back(member: Member) -> None:
    with urllib.request.urlopen(member.client_url + "/health", timeout=10) as resp:
        assert json.loads(resp.read()) == {"health": "true", "reason": ""}
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    # The member counted the relayed calls: its services ran them.
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Put"' in metrics


def test_deadlines_and_large_responses(member: Member) -> None:
    values = {b"fe/big/%02d" % i: bytes([i]) * 100 * 1024 for i in range(36)}
    with grpc.insecure_channel(member.host_port) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for key, value in values.items():
            kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
        got = kv.Range(rpc_pb2.RangeRequest(key=b"fe/big/", range_end=b"fe/big0"), timeout=30)
        assert {kv.key: kv.value for kv in got.kvs} == values
        watch = rpc_pb2_grpc.WatchStub(ch)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fe/none"))
        with pytest.raises(grpc.RpcError) as exc:
            for _ in watch.Watch(iter([create]), timeout=1.0):
                pass
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_auth_tokens_travel_in_the_relayed_metadata(registry: MemberRegistry) -> None:
    member = registry.new(
        "pyetcd", name="auth", extra_flags=(f"--experimental-grpc-frontends={FRONTENDS}",)
    )
    ok(member, "user", "add", "root:secret")
    ok(member, "auth", "enable")
    ok(member, "--user=root:secret", "put", "fe/auth", "yes")
    assert ok(member, "--user=root:secret", "get", "fe/auth", "--print-value-only") == "yes\n"
    refused = member.etcdctl("get", "fe/auth")
    assert refused.returncode != 0
    assert "user name is empty" in refused.stderr


def test_a_frontend_that_dies_is_started_again(member: Member) -> None:
    before = frontends(member)
    os.kill(before[0], signal.SIGKILL)

    def replaced() -> list[int] | None:
        now = frontends(member)
        return now if len(now) == FRONTENDS and before[0] not in now else None

    wait_for("the front-end to be started again", replaced, 30, member)

    def serving() -> bool | None:
        return True if member.etcdctl("put", "fe/after", "1").returncode == 0 else None

    wait_for("a put after the restart", serving, 30, member)


def test_no_frontend_outlives_a_killed_member(registry: MemberRegistry) -> None:
    member = registry.new(
        "pyetcd", name="killed", extra_flags=(f"--experimental-grpc-frontends={FRONTENDS}",)
    )
    ok(member, "put", "fe/k", "1")
    pids = frontends(member)
    member.kill(signal.SIGKILL)
    wait_for("the front-ends to exit", lambda: True if not any(map(alive, pids)) else None, 30)
    # The client port is free again: the member restarts on it with what it acknowledged.
    member.start_and_wait(30)
    assert ok(member, "get", "fe/k", "--print-value-only") == "1\n"
