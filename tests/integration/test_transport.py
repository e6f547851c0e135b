"""The peer transport on loopback: streams, batching, the cluster-ID check, snapshots, requests,
what it counts for etcd's peer metrics, and its RTT probes.

Two or three ``Transport`` objects run in one event loop with real sockets; the member they
serve is a recording stand-in (the transport only calls its handler interface).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import pytest
from pyetcd import panic as panic_module
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.transport import PeerRequestError, Transport, TransportError, fetch_cluster
from pyetcd.transport import peer as peer_module
from pyetcd.transport.peer import ERR_CLUSTER_ID_MISMATCH, MAGIC, encode_frame

from tools.ports import free_port

pytestmark = pytest.mark.integration

CLUSTER = 0xC1
DEADLINE = 10.0


class Recorder:
    """The handler side: what the transport delivered and reported."""

    def __init__(self) -> None:
        self.messages: list[raft_pb2.Message] = []
        self.unreachable: list[int] = []
        self.snapshots: list[tuple[int, bool]] = []
        self.lost: list[int] = []
        self.removed: set[int] = set()
        self.told_removed = False
        self.members = ['{"id":1,"peerURLs":["http://127.0.0.1:1"]}']

    def process(self, msg: raft_pb2.Message) -> None:
        self.messages.append(msg)

    def report_unreachable(self, peer_id: int) -> None:
        self.unreachable.append(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.snapshots.append((peer_id, ok))

    def peer_lost(self, peer_id: int) -> None:
        self.lost.append(peer_id)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def on_removed(self) -> None:
        self.told_removed = True

    def members_json(self) -> list[str]:
        return self.members

    async def handle_request(self, op: str, body: bytes) -> bytes:
        if op == "echo":
            return body[::-1]
        raise PeerRequestError("etcdserver: not leader", "FAILED_PRECONDITION")


async def until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


async def pair(
    tmp_path: Path, cluster_b: int = CLUSTER, *, probe_interval: float = 0.0
) -> tuple[Transport, Recorder, Transport, Recorder, int, int]:
    """Two transports that are each other's peer. No RTT probes unless asked for: several
    tests here count connections or intercept writes, and a probe is one more of each."""
    pa, pb = free_port(), free_port()
    ra, rb = Recorder(), Recorder()
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    a = Transport(1, CLUSTER, ra, str(tmp_path / "a"), probe_interval=probe_interval)
    b = Transport(2, cluster_b, rb, str(tmp_path / "b"), probe_interval=probe_interval)
    await a.listen([url(pa)])
    await b.listen([url(pb)])
    a.set_peers({2: [url(pb)]})
    b.set_peers({1: [url(pa)]})
    return a, ra, b, rb, pa, pb


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def app(to: int, frm: int, index: int) -> raft_pb2.Message:
    m = raft_pb2.Message(type=raft_pb2.MsgApp, to=to, index=index, term=1)
    setattr(m, "from", frm)
    return m


def test_messages_arrive_in_order_over_one_stream(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            a.send([app(2, 1, i) for i in range(1, 501)])
            a.send([app(2, 1, i) for i in range(501, 1001)])
            await until("all messages", lambda: len(rb.messages) == 1000)
            assert [m.index for m in rb.messages] == list(range(1, 1001))
            assert {getattr(m, "from") for m in rb.messages} == {1}
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_unreachable_peer_is_reported_and_the_stream_comes_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, ra, b, rb, _pa, pb = await pair(tmp_path)
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            await b.stop()
            await until("the stream to drop", lambda: a.active_since(2) is None)
            assert ra.lost == [2]
            a.send([app(2, 1, 7)])
            assert ra.unreachable == [2]
            # The peer comes back on the same URL: the sender re-dials with its back-off.
            b2 = Transport(2, CLUSTER, rb, str(tmp_path / "b"), probe_interval=0.0)
            await b2.listen([url(pb)])
            b2.set_peers({1: []})
            try:
                await until("the stream again", lambda: a.active_since(2) is not None)
                a.send([app(2, 1, 8)])
                await until("the message", lambda: [m.index for m in rb.messages] == [8])
            finally:
                await b2.stop()
        finally:
            await a.stop()

    run(scenario)


def test_a_member_of_another_cluster_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyetcd.transport.peer")

    async def scenario() -> None:
        a, _ra, b, rb, _pa, _pb = await pair(tmp_path, cluster_b=0xBAD)
        try:
            await until(
                "the refusal on both sides",
                lambda: (
                    "request cluster ID mismatch" in caplog.text
                    and "ignored by remote peer due to cluster ID mismatch" in caplog.text
                ),
            )
            assert a.active_since(2) is None
            a.send([app(2, 1, 1)])
            assert rb.messages == []
        finally:
            await a.stop()
            await b.stop()

    run(scenario)
    assert ERR_CLUSTER_ID_MISMATCH == "cluster ID mismatch"


def test_a_removed_member_is_told_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, ra, b, rb, _pa, _pb = await pair(tmp_path)
        rb.removed.add(1)
        try:
            await until("the removed member to be told", lambda: ra.told_removed)
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_snapshot_transfer_writes_the_db_file_before_raft_sees_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, ra, b, rb, _pa, _pb = await pair(tmp_path)
        data = os.urandom(3 * 1024 * 1024 + 123)
        pos = 0
        closed = []

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = data[pos : pos + n]
            pos += len(chunk)
            return chunk

        msg = raft_pb2.Message(type=raft_pb2.MsgSnap, to=2, term=3)
        setattr(msg, "from", 1)
        msg.snapshot.metadata.index = 0x42
        msg.snapshot.metadata.term = 3
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            a.send_snapshot(msg, len(data), read, lambda: closed.append(True))
            await until("the outcome", lambda: ra.snapshots == [(2, True)])
            assert closed == [True]
            received = tmp_path / "b" / f"{0x42:016x}.snap.db"
            assert received.read_bytes() == data
            (delivered,) = rb.messages
            assert delivered.type == raft_pb2.MsgSnap
            assert delivered.snapshot.metadata.index == 0x42
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_requests_and_the_membership_fetch(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, _rb, _pa, pb = await pair(tmp_path)
        try:
            assert await a.request(2, "echo", b"abc") == b"cba"
            with pytest.raises(PeerRequestError) as err:
                await a.request(2, "promote", b"")
            assert err.value.message == "etcdserver: not leader"
            assert err.value.code == "FAILED_PRECONDITION"
            loop = asyncio.get_running_loop()
            cluster_id, members = await loop.run_in_executor(None, fetch_cluster, [url(pb)])
            assert cluster_id == CLUSTER
            assert members == ['{"id":1,"peerURLs":["http://127.0.0.1:1"]}']
            with pytest.raises(TransportError):
                await loop.run_in_executor(None, fetch_cluster, [f"http://127.0.0.1:{free_port()}"])
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


class FailingRecorder(Recorder):
    """A handler whose ``peer_lost`` raises: the transport must keep its streams regardless."""

    def peer_lost(self, peer_id: int) -> None:
        super().peer_lost(peer_id)
        raise RuntimeError("handler bug")


def test_a_stream_writer_outlives_a_refused_write_and_redials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # uvloop raises RuntimeError for a write on a transport that closed between the writer's
    # checks; this once ended the writer task silently and left the peer without a stream
    # forever. The race is not reproducible on demand, so the refusal is injected here.
    caplog.set_level(logging.WARNING, logger="pyetcd.transport.peer")
    real_write = asyncio.StreamWriter.write
    refusals: list[int] = []

    def write(self: asyncio.StreamWriter, data: bytes) -> None:
        if refusals:  # armed once both handshakes are done: only the stream writes remain
            refusals.pop()
            raise RuntimeError("unable to perform operation: the handler is closed")
        real_write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", write)

    async def scenario() -> None:
        a, ra, b, rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            await until("b's stream", lambda: b.active_since(1) is not None)
            refusals.append(1)
            a.send([app(2, 1, 1)])
            await until("the stream to be lost", lambda: ra.lost == [2])
            await until("the stream again", lambda: a.active_since(2) is not None)
            a.send([app(2, 1, 2)])
            await until("the message after the re-dial", lambda: len(rb.messages) == 1)
            assert [m.index for m in rb.messages] == [2]
            assert ra.unreachable == [2]  # message 1 is reported, never silently lost
        finally:
            await a.stop()
            await b.stop()

    run(scenario)
    assert "stream lost: unable to perform operation" in caplog.text


def test_a_failing_lost_stream_handler_does_not_end_the_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyetcd.transport.peer")

    async def scenario() -> None:
        pa, pb = free_port(), free_port()
        ra, rb = FailingRecorder(), Recorder()
        for d in ("a", "b"):
            (tmp_path / d).mkdir(exist_ok=True)
        a = Transport(1, CLUSTER, ra, str(tmp_path / "a"), probe_interval=0.0)
        await a.listen([url(pa)])
        a.set_peers({2: [url(pb)]})
        for attempt in range(2):
            b = Transport(2, CLUSTER, rb, str(tmp_path / "b"), probe_interval=0.0)
            await b.listen([url(pb)])
            b.set_peers({1: [url(pa)]})
            await until("the stream", lambda: a.active_since(2) is not None)
            a.send([app(2, 1, attempt)])

            def delivered(n: int = attempt + 1) -> bool:
                return len(rb.messages) == n

            await until("the message", delivered)
            await b.stop()
            await until("the stream to drop", lambda: a.active_since(2) is None)
        await a.stop()
        assert ra.lost == [2, 2]

    run(scenario)
    assert "handling the lost stream failed" in caplog.text


def test_a_peer_that_stops_reading_loses_its_stream_at_the_write_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A SIGSTOPped or wedged peer accepts the connection and then never reads: the writer
    # must give up after the write deadline, drop the queue and dial again.
    caplog.set_level(logging.WARNING, logger="pyetcd.transport.peer")
    monkeypatch.setattr("pyetcd.transport.peer.WRITE_TIMEOUT", 0.5)

    async def scenario() -> None:
        dials: list[asyncio.StreamWriter] = []
        stalled = asyncio.Event()

        async def wedged(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(8)
            (n,) = __import__("struct").unpack(">Q", await reader.readexactly(8))
            await reader.readexactly(n)
            writer.write(b'\x00\x00\x00\x00\x00\x00\x00\x0b{"ok":true}')
            dials.append(writer)
            await stalled.wait()  # never reads again

        server = await asyncio.start_server(wedged, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ra = Recorder()
        (tmp_path / "a").mkdir(exist_ok=True)
        a = Transport(1, CLUSTER, ra, str(tmp_path / "a"), probe_interval=0.0)
        a.set_peers({2: [url(port)]})
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            big = raft_pb2.Message(type=raft_pb2.MsgApp, to=2, term=1)
            big.entries.add(Data=b"x" * (1 << 20))
            # Far more than the socket buffers hold: the write blocks on the wedged reader.
            for _ in range(64):
                a.send([big])
            await until("the stream to be given up", lambda: ra.lost == [2])
            assert 2 in ra.unreachable
            await until("a second dial", lambda: len(dials) >= 2)
        finally:
            stalled.set()
            await a.stop()
            server.close()

    run(scenario)
    assert "stream lost: write blocked for 0.5s" in caplog.text


def test_a_refused_handshake_write_is_a_failed_dial_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Seen for real in the linearizability runs: a peer killed right after accepting the
    # connection, and uvloop refusing the handshake write ("unable to perform operation on
    # <TCPTransport closed=True ...>"). That RuntimeError once escaped the dial and ended the
    # stream writer for good: the restarted peer never heard from the leader again.
    caplog.set_level(logging.WARNING, logger="pyetcd.transport.peer")
    real_write = asyncio.StreamWriter.write
    refusals = [1, 1]

    def write(self: asyncio.StreamWriter, data: bytes) -> None:
        if refusals and data.startswith(b"PYETCDP1"):
            refusals.pop()
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        real_write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", write)

    async def scenario() -> None:
        a, _ra, b, rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("both streams", lambda: bool(a.active_since(2) and b.active_since(1)))
            a.send([app(2, 1, 5)])
            await until("the message", lambda: [m.index for m in rb.messages] == [5])
        finally:
            await a.stop()
            await b.stop()

    run(scenario)
    assert refusals == []
    assert "cannot dial: cannot reach peer" in caplog.text


# ----- what the transport counts (exported by the server as etcd_network_peer_*) -----


def test_raft_traffic_is_counted_in_message_bytes_on_both_sides(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            msgs = [app(2, 1, i) for i in range(1, 11)]
            a.send(msgs)
            await until("all messages", lambda: len(rb.messages) == 10)
            size = sum(m.ByteSize() for m in msgs)
            sent = a.metrics.peers[2]
            await until("the flushed batch to be counted", lambda: sent.sent_bytes == size)
            assert b.metrics.peers[1].received_bytes == size
            assert sent.active is True
            assert (sent.sent_failures, sent.disconnects) == (0, 0)
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_dropped_messages_and_a_lost_stream_are_send_failures(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, _rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("the stream", lambda: a.active_since(2) is not None)
            await b.stop()
            await until("the stream to drop", lambda: a.active_since(2) is None)
            stats = a.metrics.peers[2]
            # The idle stream's loss is one failure, as etcd's failed link heartbeat is.
            assert (stats.sent_failures, stats.disconnects, stats.active) == (1, 1, False)
            a.send([app(2, 1, 7), app(2, 1, 8)])
            assert stats.sent_failures == 3
            a.send([app(3, 1, 1)])  # no such peer: etcd ignores it, and counts nothing
            assert 3 not in a.metrics.peers
        finally:
            await a.stop()

    run(scenario)


def test_streams_closed_by_a_stopping_member_are_no_failures_of_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, _rb, _pa, _pb = await pair(tmp_path)
        try:
            await until("both streams", lambda: bool(a.active_since(2) and b.active_since(1)))
            await a.stop()
            await until("b's stream to drop", lambda: b.active_since(1) is None)
            assert (a.metrics.peers[2].sent_failures, a.metrics.peers[2].disconnects) == (0, 0)
            assert b.metrics.peers[1].disconnects == 1
        finally:
            await b.stop()

    run(scenario)


def test_a_frame_that_is_no_raft_message_is_a_receive_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, _ra, b, rb, _pa, pb = await pair(tmp_path)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", pb)
            hello = {"kind": "stream", "cluster_id": CLUSTER, "from": 1, "to": 2}
            writer.write(MAGIC + encode_frame(json.dumps(hello).encode()))
            (n,) = struct.unpack(">Q", await reader.readexactly(8))
            assert json.loads(await reader.readexactly(n)) == {"ok": True}
            writer.write(encode_frame(b"\xff\xff\xff"))  # a truncated varint tag
            await until("the receive failure", lambda: b.metrics.peers[1].received_failures == 1)
            assert rb.messages == []
            writer.close()
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


class OpsRecorder(Recorder):
    """A handler like the etcd server's: it refuses an op it does not know, and notes it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    async def handle_request(self, op: str, body: bytes) -> bytes:
        self.ops.append(op)
        raise PeerRequestError(f"unknown peer request {op!r}")


class TransportBeforeProbes(Transport):
    """A pyetcd from before the RTT probe, as in a rolling upgrade: every request op is the
    handler's (its ``_serve_request`` as it was)."""

    async def _serve_request(
        self, op: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = await peer_module._read_frame(reader, peer_module.MAX_CONTROL_FRAME)
        try:
            answer = await self.handler.handle_request(op, body)
        except PeerRequestError as exc:
            writer.write(
                peer_module._json_frame({"ok": False, "error": exc.message, "code": exc.code})
            )
        else:
            writer.write(peer_module._json_frame({"ok": True}) + encode_frame(answer))
        await writer.drain()


def test_probes_measure_the_round_trip_to_each_peer_and_are_no_raft_traffic(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        a, _ra, b, _rb, _pa, _pb = await pair(tmp_path, probe_interval=0.02)
        try:
            to_b, to_a = a.metrics.peer(2), b.metrics.peer(1)
            await until("three probes each way", lambda: min(to_b.rtt.count, to_a.rtt.count) >= 3)
            assert 0 < to_b.rtt.sum < to_b.rtt.count * peer_module.REQUEST_TIMEOUT
            assert to_b.probe_failures == 0
            # Loopback answers well within etcd's largest finite bucket (3.2768 s).
            assert to_b.rtt.counts[-1] == 0
            assert (to_b.sent_bytes, to_b.received_bytes) == (0, 0)
        finally:
            await a.stop()
            await b.stop()

    run(scenario)


def test_a_peer_from_before_the_probe_refuses_it_quietly_and_still_answers_in_one_round_trip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyetcd.transport.peer")

    async def scenario() -> None:
        pa, pb = free_port(), free_port()
        for d in ("a", "b"):
            (tmp_path / d).mkdir(exist_ok=True)
        old_handler = OpsRecorder()
        a = Transport(1, CLUSTER, Recorder(), str(tmp_path / "a"), probe_interval=0.02)
        b = TransportBeforeProbes(2, CLUSTER, old_handler, str(tmp_path / "b"), probe_interval=0)
        await a.listen([url(pa)])
        await b.listen([url(pb)])
        a.set_peers({2: [url(pb)]})
        b.set_peers({1: [url(pa)]})
        try:
            stats = a.metrics.peer(2)
            await until("three probes", lambda: stats.rtt.count >= 3)
            assert stats.probe_failures == 0
            assert old_handler.ops[:3] == ["probe"] * 3
            # Checked before the stop, whose lost streams are news of their own.
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        finally:
            await a.stop()
            await b.stop()

    run(scenario)
    assert "probe failed" not in caplog.text


def test_probing_a_peer_that_is_down_counts_failures_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyetcd.transport.peer")

    async def scenario() -> None:
        (tmp_path / "a").mkdir(exist_ok=True)
        a = Transport(1, CLUSTER, Recorder(), str(tmp_path / "a"), probe_interval=0.02)
        a.set_peers({2: [url(free_port())]})
        try:
            stats = a.metrics.peer(2)
            await until("three failed probes", lambda: stats.probe_failures >= 3)
            assert stats.rtt.count == 0
        finally:
            await a.stop()

    run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "probe" in w], warnings
    assert "probe failed" in caplog.text  # at debug


class ExitedError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def test_a_broken_invariant_in_a_probe_stops_the_member_and_a_bug_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    exits: list[int] = []

    def exit_process(code: int) -> NoReturn:
        exits.append(code)
        raise ExitedError(code)

    monkeypatch.setattr(panic_module, "exit_process", exit_process)
    failures: list[BaseException] = [KeyError("a bug"), AssertionError("probe invariant")]

    async def probe(self: Transport, peer: Any) -> float:
        raise failures.pop(0)

    monkeypatch.setattr(Transport, "_probe", probe)

    async def scenario() -> None:
        (tmp_path / "a").mkdir(exist_ok=True)
        a = Transport(1, CLUSTER, Recorder(), str(tmp_path / "a"), probe_interval=0.02)
        a.set_peers({2: [url(free_port())]})
        try:
            await until("the panic", lambda: exits == [2])
            assert a.metrics.peer(2).probe_failures == 0  # neither was taken for a fault
        finally:
            await a.stop()

    run(scenario)
    assert "peer 2: probe failed" in caplog.text  # the bug, with its traceback
    assert "KeyError: 'a bug'" in caplog.text
    assert "panic: probe invariant" in caplog.text
