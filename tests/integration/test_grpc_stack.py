"""pyetcd's HTTP/2 stack (``--grpc-stack=h2``, the default) answers as etcd's grpc-go does.

The transport's own behaviour, side by side: upstream etcd, pyetcd on its own stack, pyetcd on
grpcio's (``--grpc-stack=grpcio``, kept as the fallback) where the two stacks must agree, and
pyetcd with gRPC front-end processes (``--experimental-grpc-frontends``). The rest
of the integration suite (etcdctl, the Go and Python clients, watches, snapshots, TLS, auth) runs
on the default stack.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Member
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

TARGETS = {
    "etcd": ("etcd", ()),
    "pyetcd": ("pyetcd", ()),
    "pyetcd-grpcio": ("pyetcd", ("--grpc-stack=grpcio",)),
    "pyetcd-frontends": ("pyetcd", ("--experimental-grpc-frontends=2",)),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Member]]:
    registry = MemberRegistry(tmp_path_factory.mktemp("grpc-stack"))
    try:
        yield {
            label: registry.new(flavour, name=label.replace("-", ""), extra_flags=flags)  # type: ignore[arg-type]
            for label, (flavour, flags) in TARGETS.items()
        }
    finally:
        registry.stop_all()


def channel(member: Member) -> grpc.Channel:
    return grpc.insecure_channel(member.host_port)


def raw_call(ch: grpc.Channel, path: str) -> bytes:
    method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(path)
    return method(b"", timeout=10)


def outcome(fn: object) -> tuple[grpc.StatusCode, str]:
    try:
        fn()  # type: ignore[operator]
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_unknown_methods_and_services_get_grpc_gos_answer(servers: dict[str, Member]) -> None:
    answers: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
    for label, member in servers.items():
        with channel(member) as ch:
            answers[label] = [
                outcome(lambda p=path: raw_call(ch, p))
                for path in ("/etcdserverpb.KV/Nope", "/etcdserverpb.Nope/Range")
            ]
    assert answers["etcd"] == [
        (grpc.StatusCode.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV"),
        (grpc.StatusCode.UNIMPLEMENTED, "unknown service etcdserverpb.Nope"),
    ]
    assert answers["pyetcd"] == answers["pyetcd-frontends"] == answers["etcd"]
    # grpcio's own wording; the code agrees.
    assert [code for code, _ in answers["pyetcd-grpcio"]] == [grpc.StatusCode.UNIMPLEMENTED] * 2


def test_a_response_larger_than_every_window_arrives_whole(servers: dict[str, Member]) -> None:
    # 36 values of 100 KiB: ~3.7 MB (below the client's 4 MiB limit), far beyond the client's
    # initial windows, in many frames.
    values = {b"big/%02d" % i: bytes([i]) * 100 * 1024 for i in range(36)}
    for label, member in servers.items():
        with channel(member) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for key, value in values.items():
                kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
            got = kv.Range(rpc_pb2.RangeRequest(key=b"big/", range_end=b"big0"), timeout=30)
            assert {kv.key: kv.value for kv in got.kvs} == values, label


def test_compressed_requests_are_refused_and_binary_metadata_understood(
    servers: dict[str, Member],
) -> None:
    # etcd registers no compressor with grpc-go: a gzip request is refused, as here.
    answers = {}
    for label, member in servers.items():
        with grpc.insecure_channel(member.host_port, compression=grpc.Compression.Gzip) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            put = rpc_pb2.PutRequest(key=b"gz", value=b"z" * 10000)
            answers[label] = outcome(lambda k=kv, p=put: k.Put(p, timeout=10))
        with channel(member) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            kv.Put(
                rpc_pb2.PutRequest(key=b"meta", value=b"m"),
                metadata=(("trace-bin", b"\x00\x01\xff"),),
                timeout=10,
            )
            assert kv.Range(rpc_pb2.RangeRequest(key=b"meta"), timeout=10).kvs[0].value == b"m"
    assert answers["etcd"] == (
        grpc.StatusCode.UNIMPLEMENTED,
        'grpc: Decompressor is not installed for grpc-encoding "gzip"',
    )
    assert answers["pyetcd"] == answers["pyetcd-frontends"] == answers["etcd"]


@pytest.mark.parametrize("label", ["pyetcd", "pyetcd-frontends"])
def test_many_concurrent_streams_on_one_connection(servers: dict[str, Member], label: str) -> None:
    member = servers[label]
    with channel(member) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        futures = [
            kv.Put.future(rpc_pb2.PutRequest(key=b"many/%04d" % i, value=b"v"), timeout=30)
            for i in range(500)
        ]
        revisions = sorted(f.result().header.revision for f in futures)
        assert len(set(revisions)) == 500  # every put applied once, each its own revision
        got = kv.Range(rpc_pb2.RangeRequest(key=b"many/", range_end=b"many0", count_only=True))
        assert got.count == 500


def client_grpc_bytes(member: Member) -> tuple[float, float]:
    """(received, sent) of etcd_network_client_grpc_*_bytes_total on the member's /metrics."""
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    received, sent = (
        families[f"etcd_network_client_grpc_{way}_bytes"].samples[0].value
        for way in ("received", "sent")
    )
    return received, sent


@pytest.mark.parametrize("label", TARGETS)
def test_client_grpc_bytes_are_the_message_bytes_on_every_stack(
    servers: dict[str, Member], label: str
) -> None:
    member = servers[label]
    received, sent = client_grpc_bytes(member)
    request = rpc_pb2.PutRequest(key=b"counted", value=b"c" * 300)
    with channel(member) as ch:
        response = rpc_pb2_grpc.KVStub(ch).Put(request, timeout=10)
    now_received, now_sent = client_grpc_bytes(member)
    # etcd's codec counts marshalled messages: no gRPC prefix, no HTTP/2 framing.
    assert now_received - received == request.ByteSize()
    assert now_sent - sent == response.ByteSize()
