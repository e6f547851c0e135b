"""Watch responses larger than the request limit are split when the watcher allows fragments.

etcd splits a response whose events exceed --max-request-bytes + 512 KiB into several, all but
the last marked ``fragment``; the client joins them. Both servers are held to that, and to
delivering every event exactly once, in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import FLAVOURS, Flavour
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

MAX_REQUEST = 65536
VALUE = b"x" * 60_000
PUTS = 20  # 1.2 MB of events: more than twice the 589,824-byte response limit


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_large_catch_up_is_fragmented_and_complete(
    members: MemberRegistry, flavour: Flavour
) -> None:
    m = members.new(flavour, extra_flags=[f"--max-request-bytes={MAX_REQUEST}"])
    with grpc.insecure_channel(
        m.host_port, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        first = 0
        for i in range(PUTS):
            put = kv.Put(rpc_pb2.PutRequest(key=f"/frag/{i:02d}".encode(), value=VALUE))
            first = first or put.header.revision
        requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        requests.put(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=b"/frag/", range_end=b"/frag0", start_revision=first, fragment=True
                )
            )
        )

        def outgoing() -> Iterator[rpc_pb2.WatchRequest]:
            while (req := requests.get()) is not None:
                yield req

        stream = rpc_pb2_grpc.WatchStub(ch).Watch(outgoing(), timeout=30)
        keys: list[bytes] = []
        fragments = 0
        stopper = threading.Timer(25, lambda: requests.put(None))
        stopper.start()
        try:
            for resp in stream:
                if resp.created:
                    continue
                fragments += resp.fragment
                keys.extend(ev.kv.key for ev in resp.events)
                if len(keys) >= PUTS and not resp.fragment:
                    break
        finally:
            stopper.cancel()
            requests.put(None)
            stream.cancel()
        assert keys == [f"/frag/{i:02d}".encode() for i in range(PUTS)]
        assert fragments >= 1, "a 1.2 MB catch-up was sent without fragmenting"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_watch_outlives_the_clients_half_close(members: MemberRegistry, flavour: Flavour) -> None:
    # A client that sends its create request and closes its sending side (a finite request
    # iterator, common with Python's grpc) still gets the events: etcd ends a watch stream
    # only when the client cancels it.
    m = members.new(flavour)
    with grpc.insecure_channel(m.host_port) as ch:
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/half"))
        responses = rpc_pb2_grpc.WatchStub(ch).Watch(iter([create]), timeout=20)
        assert next(responses).created
        kv = rpc_pb2_grpc.KVStub(ch)
        for value in (b"1", b"2"):
            kv.Put(rpc_pb2.PutRequest(key=b"/half", value=value))
        seen: list[bytes] = []
        while len(seen) < 2:
            seen += [ev.kv.value for ev in next(responses).events]
        assert seen == [b"1", b"2"]
        responses.cancel()
