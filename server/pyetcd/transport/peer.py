"""The peer transport: Raft messages, snapshots and peer requests between members (etcd's rafthttp).

Wire format. Every connection opens with the 8-byte magic ``PYETCDP1`` and a handshake frame; a
frame is an 8-byte big-endian length followed by that many bytes. The handshake is a JSON object
``{"kind", "cluster_id", "from", "to", ...}``; the listener answers with a JSON frame
``{"ok": true}`` or ``{"ok": false, "error": "..."}``, after checking, as etcd does, that the
sender belongs to the same cluster (``cluster ID mismatch`` otherwise), that the message is for
this member, and that the sender has not been removed from the cluster.

Kinds of connection:

- ``stream``: one per (sender, receiver), kept open. Each frame is a marshalled ``raftpb.Message``.
  The sender writes all the messages of one Ready for that peer with one write; while a write is
  blocked, new messages queue up and go in the next one (batching under load). A connection that
  fails is re-dialled with a growing back-off; meanwhile messages to that peer are dropped and the
  Raft node is told the peer is unreachable (Raft then probes instead of pipelining).
- ``snapshot``: one per MsgSnap. A frame with the MsgSnap, an 8-byte length, then the backend's
  bytes streamed in chunks. The receiver writes them to ``<snap dir>/<index:016x>.snap.db``,
  fsyncs, hands the MsgSnap to Raft and answers; the sender reports the outcome to Raft.
- ``request``: one request frame, one answer frame (forwarded lease keep-alives, promotions).
- ``members``: the cluster ID and member list, for a member joining with
  ``--initial-cluster-state existing`` (it does not know the cluster ID yet; no ID check).

RTT probes. As etcd's prober does over HTTP, every member sends each peer a ``request`` of
op ``probe`` every ``PROBE_INTERVAL`` seconds and records the time from the request frame to the
answer in the peer's RTT histogram. A pyetcd from before the probe answers ``unknown peer
request``, which is a round trip all the same, without a log line on either side.

Counts (``TransportMetrics``, exported by the server as etcd's ``etcd_network_peer_*``) are
plain ints bumped once per written batch or received frame.

Everything runs on the member's event loop; disk writes of a received snapshot and reads of a
sent one run in the default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from google.protobuf.message import DecodeError

from pyetcd.fileutil import fsync_dir
from pyetcd.panic import panic_on_invariant
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.transport.metrics import PeerStats, TransportMetrics
from pyetcd.transport.tls import ServerTLS, TLSInfo, TLSOptions, client_context

log = logging.getLogger(__name__)

MAGIC = b"PYETCDP1"
_LEN = struct.Struct(">Q")
# A handshake or request frame larger than this is not from a pyetcd peer.
MAX_CONTROL_FRAME = 64 * 1024 * 1024
# A Raft message frame: MaxSizePerMsg (1 MiB) of entries, and one entry may be a whole request.
MAX_MESSAGE_FRAME = 256 * 1024 * 1024
SNAPSHOT_CHUNK = 1 << 20
DIAL_TIMEOUT = 1.0
HANDSHAKE_TIMEOUT = 5.0
REQUEST_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
# Messages queued for a peer beyond this are dropped (etcd: "sending buffer is full").
MAX_QUEUED = 8192
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
MISMATCH_LOG_EVERY = 30.0
# etcd probes each peer every 4 s (ConnReadTimeout - 1 s) and records the RTT every 5-30 s.
PROBE_INTERVAL = 5.0
OP_PROBE = "probe"

ERR_CLUSTER_ID_MISMATCH = "cluster ID mismatch"
ERR_REMOVED = "the member has been permanently removed from the cluster"
ERR_WRONG_MEMBER = "member ID mismatch"


class TransportError(Exception):
    """A peer could not be reached, or broke the protocol."""


class PeerRequestError(Exception):
    """A peer answered a request with an error: etcd's message and gRPC code name."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# What a probe may meet on the network (a peer down, refusing us, closing mid-answer): a failed
# probe, counted, logged at debug only; the stream to the same peer already says when it is
# unreachable. RuntimeError: uvloop refusing a write on a transport that just closed.
_PROBE_FAULTS = (
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    ValueError,
    RuntimeError,
    TransportError,
    PeerRequestError,
)


class TransportHandler(Protocol):
    """What the transport needs from the member it serves (the etcd server)."""

    def process(self, msg: raft_pb2.Message) -> None:
        """Deliver a Raft message from a peer."""

    def report_unreachable(self, peer_id: int) -> None:
        """A message to ``peer_id`` could not be sent."""

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        """A snapshot transfer to ``peer_id`` finished (or failed)."""

    def peer_lost(self, peer_id: int) -> None:
        """The stream to ``peer_id`` broke (the peer closed it or went away)."""

    def is_removed(self, member_id: int) -> bool:
        """Whether ``member_id`` was removed from the cluster."""

    def on_removed(self) -> None:
        """A peer said this member was removed from the cluster."""

    def members_json(self) -> list[str]:
        """The current members as etcd's member JSON."""

    async def handle_request(self, op: str, body: bytes) -> bytes:
        """Serve a peer request; raise PeerRequestError to answer with an error."""


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 2380


def encode_frame(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def _json_frame(obj: dict[str, Any]) -> bytes:
    return encode_frame(json.dumps(obj, separators=(",", ":")).encode())


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if n > limit:
        raise TransportError(f"frame of {n} bytes exceeds the limit of {limit}")
    return await reader.readexactly(n)


async def _read_json(reader: asyncio.StreamReader) -> dict[str, Any]:
    obj = json.loads(await _read_frame(reader, MAX_CONTROL_FRAME))
    if not isinstance(obj, dict):
        raise TransportError("handshake is not a JSON object")
    return obj


@dataclass
class _Peer:
    """One remote member: its URLs, the outgoing stream and the messages waiting for it."""

    id: int
    urls: tuple[str, ...]
    stats: PeerStats
    queue: list[bytes] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    prober: asyncio.Task[None] | None = None
    # When the current outgoing stream was established (None: not connected).
    active_since: float | None = None
    last_mismatch_log: float = 0.0


class Transport:
    """Outgoing streams to every peer, the listener for theirs, snapshot and request traffic."""

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        handler: TransportHandler,
        snap_dir: str,
        tls: PeerTLS | None = None,
        *,
        metrics: TransportMetrics | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.member_id = member_id
        self.tls = tls or PeerTLS()
        self.metrics = metrics or TransportMetrics()
        self.probe_interval = probe_interval  # 0: no probes
        self.cluster_id = cluster_id
        self.handler = handler
        self.snap_dir = snap_dir
        self._peers: dict[int, _Peer] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conns: set[asyncio.StreamWriter] = set()
        # Incoming streams by sender, closed when the sender is no longer a peer (removed).
        self._inbound: dict[int, set[asyncio.StreamWriter]] = {}
        self._stopped = False

    # ----- lifecycle -------------------------------------------------------------------------

    async def listen(self, urls: Iterable[str]) -> None:
        """Accept peer connections on each URL (``--listen-peer-urls``)."""
        for url in urls:
            host, port = _host_port(url)
            secure = url.startswith("https:")
            if secure and self.tls.server is None:
                raise TransportError(f"{url}: an https peer URL needs the peer certificate")
            server = await asyncio.start_server(
                self._serve_conn,
                host or None,
                port,
                ssl=self.tls.server.context if secure and self.tls.server is not None else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if secure else None,
            )
            self._servers.append(server)

    async def stop(self) -> None:
        self._stopped = True
        for server in self._servers:
            server.close()
        for peer in self._peers.values():
            for task in (peer.task, peer.prober):
                if task is not None:
                    task.cancel()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._conns):
            writer.close()
        pending = [t for p in self._peers.values() for t in (p.task, p.prober) if t is not None]
        await asyncio.gather(*pending, *self._tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    # ----- peers -----------------------------------------------------------------------------

    def set_peers(self, peers: Mapping[int, Sequence[str]]) -> None:
        """Make the set of remote peers ``peers`` (id -> peer URLs); self is ignored."""
        for peer_id in list(self._peers):
            if peer_id not in peers:
                self.remove_peer(peer_id)
        for peer_id, urls in peers.items():
            if peer_id == self.member_id:
                continue
            existing = self._peers.get(peer_id)
            if existing is None:
                self.add_peer(peer_id, urls)
            elif existing.urls != tuple(urls):
                existing.urls = tuple(urls)

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        if peer_id in self._peers or peer_id == self.member_id or self._stopped:
            return
        peer = _Peer(peer_id, tuple(urls), self.metrics.peer(peer_id))
        self._peers[peer_id] = peer
        loop = asyncio.get_running_loop()
        peer.task = loop.create_task(self._stream_writer(peer))
        if self.probe_interval > 0:
            peer.prober = loop.create_task(self._probe_loop(peer))

    def remove_peer(self, peer_id: int) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            for task in (peer.task, peer.prober):
                if task is not None:
                    task.cancel()
        # Its incoming streams too: a removed member that dials again is told it was removed.
        for writer in self._inbound.pop(peer_id, set()):
            writer.close()

    def peer_urls(self, peer_id: int) -> tuple[str, ...]:
        peer = self._peers.get(peer_id)
        return peer.urls if peer is not None else ()

    def active_since(self, peer_id: int) -> float | None:
        """Monotonic time since when the stream to ``peer_id`` is up; None if it is down."""
        peer = self._peers.get(peer_id)
        return peer.active_since if peer is not None else None

    # ----- sending Raft messages -------------------------------------------------------------

    def send(self, msgs: Iterable[raft_pb2.Message]) -> list[raft_pb2.Message]:
        """Queue messages; each peer's queue is written in one go by its stream writer.

        Returns the messages that were dropped at once (no stream to their peer, or its queue
        is full): those certainly never reached the peer.
        """
        touched: set[int] = set()
        dropped: list[raft_pb2.Message] = []
        for m in msgs:
            peer = self._peers.get(m.to)
            if peer is None or peer.active_since is None or len(peer.queue) >= MAX_QUEUED:
                # Not connected, or the peer is not keeping up: drop, as etcd does, and let Raft
                # fall back to probing that peer.
                dropped.append(m)
                if peer is not None:
                    peer.stats.sent_failures += 1
                    self.handler.report_unreachable(m.to)
                continue
            peer.queue.append(encode_frame(m.SerializeToString()))
            touched.add(m.to)
        for peer_id in touched:
            self._peers[peer_id].wake.set()
        return dropped

    async def _dial(self, peer: _Peer, hello: dict[str, Any]) -> tuple[Any, Any]:
        """Connect to one of the peer's URLs and complete the handshake."""
        last: Exception = TransportError(f"peer {peer.id:x} has no URLs")
        for url in peer.urls:
            host, port = _host_port(url)
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, **self.tls.dial_options(url)),
                    DIAL_TIMEOUT + (HANDSHAKE_TIMEOUT if url.startswith("https:") else 0.0),
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                last = exc
                continue
            try:
                writer.write(MAGIC + _json_frame(hello))
                answer = await asyncio.wait_for(_read_json(reader), HANDSHAKE_TIMEOUT)
            except (
                OSError,
                TimeoutError,
                asyncio.IncompleteReadError,
                ValueError,
                RuntimeError,
            ) as exc:
                writer.close()
                last = exc if isinstance(exc, Exception) else TransportError(str(exc))
                continue
            if not answer.get("ok"):
                writer.close()
                raise PeerRequestError(str(answer.get("error", "refused")))
            return reader, writer
        raise TransportError(f"cannot reach peer {peer.id:x}: {last}")

    def _hello(self, kind: str, to: int, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "cluster_id": self.cluster_id,
            "from": self.member_id,
            "to": to,
            **extra,
        }

    def _refused(self, peer: _Peer, exc: PeerRequestError) -> None:
        if exc.message == ERR_REMOVED:
            log.warning("peer %x rejected this member: %s; stopping", peer.id, ERR_REMOVED.lower())
            self.handler.on_removed()
            return
        now = time.monotonic()
        if now - peer.last_mismatch_log >= MISMATCH_LOG_EVERY:
            peer.last_mismatch_log = now
            if exc.message == ERR_CLUSTER_ID_MISMATCH:
                log.error(
                    "request sent was ignored by remote peer due to cluster ID mismatch "
                    "(remote-peer-id %x, local-member-id %x, local-member-cluster-id %x)",
                    peer.id,
                    self.member_id,
                    self.cluster_id,
                )
            else:
                log.warning("peer %x refused the stream: %s", peer.id, exc.message)

    async def _stream_writer(self, peer: _Peer) -> None:
        """Keep a stream to ``peer`` up for as long as it is a peer: dial, send, re-dial.

        Nothing may end this task but ``stop()`` or the peer's removal: a writer that died
        silently once left a restarted member without a leader forever."""
        backoff = BACKOFF_MIN
        unreachable_since: float | None = None
        while not self._stopped:
            try:
                reader, writer = await self._dial(peer, self._hello("stream", peer.id))
            except PeerRequestError as exc:
                self._refused(peer, exc)
                await asyncio.sleep(BACKOFF_MAX)
                continue
            except Exception as exc:  # any failure to connect is a failed dial
                if not isinstance(exc, TransportError):
                    log.warning("peer %x: dial failed: %r", peer.id, exc)
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    log.warning("peer %x: cannot dial: %s; retrying", peer.id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if unreachable_since is not None:
                log.info(
                    "peer %x: reachable again after %.1fs",
                    peer.id,
                    time.monotonic() - unreachable_since,
                )
                unreachable_since = None
            backoff = BACKOFF_MIN
            try:
                await self._run_stream(peer, reader, writer)
            except (OSError, ConnectionError, RuntimeError) as exc:
                # RuntimeError: uvloop refuses a write on a transport that closed between two
                # checks; the stream is gone all the same.
                log.warning("peer %x: stream lost: %s", peer.id, exc or type(exc).__name__)
            except Exception as exc:
                panic_on_invariant(exc, f"the stream to peer {peer.id:x}")
                log.exception("peer %x: stream failed; re-dialling", peer.id)
                await asyncio.sleep(backoff)
            finally:
                if not self._stopped and peer_id_is_current(self._peers, peer):
                    try:
                        self.handler.peer_lost(peer.id)
                    except Exception as exc:
                        panic_on_invariant(exc, f"losing the stream to peer {peer.id:x}")
                        log.exception("peer %x: handling the lost stream failed", peer.id)

    async def _run_stream(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write ``peer``'s queue to one established stream until it breaks."""
        peer.active_since = time.monotonic()
        stats = peer.stats
        stats.active = True
        log.info("peer %x: stream established", peer.id)
        self._conns.add(writer)
        # The listener never writes after the handshake: EOF means it closed the stream
        # (it stopped, or removed us), which an idle writer would not notice otherwise.
        closed = asyncio.get_running_loop().create_task(reader.read(1))
        closed.add_done_callback(functools.partial(_set_event, peer.wake))
        # Messages written but not yet drained when the stream breaks may not have arrived.
        unsure = False
        try:
            while True:
                if not peer.queue:
                    peer.wake.clear()
                    if not closed.done():
                        await peer.wake.wait()
                if closed.done():
                    raise ConnectionError("closed by the peer")
                if writer.is_closing():
                    raise ConnectionError("connection closed")
                batch, peer.queue = peer.queue, []
                unsure = True
                data = b"".join(batch)
                writer.write(data)
                # A peer that stopped reading (paused, or its host gone) must not hold this
                # stream forever: etcd gives a stream write 5 s too.
                # asyncio.timeout, not wait_for: 3.11's wait_for can lose the cancellation
                # that stops this writer (a stop that then never ends).
                try:
                    async with asyncio.timeout(WRITE_TIMEOUT):
                        await writer.drain()
                except TimeoutError:
                    raise ConnectionError(f"write blocked for {WRITE_TIMEOUT:g}s") from None
                unsure = False
                # etcd counts message bytes (m.Size()) once flushed: the frames' lengths aside.
                stats.sent_bytes += len(data) - _LEN.size * len(batch)
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: the reset that ended the stream is no news
            closed.cancel()
            self._conns.discard(writer)
            peer.active_since = None
            stats.active = False
            if not self._stopped and peer_id_is_current(self._peers, peer):
                # Lost rather than closed by us: etcd's stream writer counts the failed write
                # (an idle one finds out with its next link heartbeat), and the messages still
                # queued are dropped unsent here.
                stats.disconnects += 1
                stats.sent_failures += 1 + len(peer.queue)
            writer.close()
            if peer.queue or unsure:
                peer.queue = []
                if not self._stopped:
                    self.handler.report_unreachable(peer.id)

    # ----- snapshots ---------------------------------------------------------------------------

    def send_snapshot(
        self,
        msg: raft_pb2.Message,
        size: int,
        read: Callable[[int], bytes],
        close: Callable[[], None],
    ) -> None:
        """Send a MsgSnap and ``size`` bytes of backend read by ``read``; the outcome is
        reported to the handler (``report_snapshot``); ``close`` is called in every case."""
        task = asyncio.get_running_loop().create_task(self._send_snapshot(msg, size, read, close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_snapshot(
        self,
        msg: raft_pb2.Message,
        size: int,
        read: Callable[[int], bytes],
        close: Callable[[], None],
    ) -> None:
        peer = self._peers.get(msg.to)
        ok = False
        loop = asyncio.get_running_loop()
        try:
            if peer is None:
                return
            index = msg.snapshot.metadata.index
            log.info("sending snapshot at index %d (%d bytes) to peer %x", index, size, peer.id)
            reader, writer = await self._dial(peer, self._hello("snapshot", peer.id))
            try:
                writer.write(encode_frame(msg.SerializeToString()) + _LEN.pack(size))
                remaining = size
                while remaining > 0:
                    chunk = await loop.run_in_executor(None, read, min(SNAPSHOT_CHUNK, remaining))
                    if not chunk:
                        raise TransportError("backend snapshot ended early")
                    writer.write(chunk)
                    await writer.drain()
                    remaining -= len(chunk)
                answer = await asyncio.wait_for(_read_json(reader), 60.0)
                ok = bool(answer.get("ok"))
                if ok:
                    # etcd adds the merged snapshot's TotalSize: the message and the db.
                    peer.stats.sent_bytes += msg.ByteSize() + size
                if not ok:
                    log.warning("peer %x refused the snapshot: %s", peer.id, answer.get("error"))
            finally:
                writer.close()
            if ok:
                log.info("sent snapshot at index %d to peer %x", index, peer.id)
        except PeerRequestError as exc:
            if peer is not None:
                self._refused(peer, exc)
        except (OSError, TimeoutError, TransportError, asyncio.IncompleteReadError) as exc:
            log.warning("failed to send snapshot to peer %x: %s", msg.to, exc)
        finally:
            close()
            if peer is not None and not ok:
                peer.stats.sent_failures += 1  # etcd's snapshotSender counts a failed send
            self.handler.report_snapshot(msg.to, ok)

    async def _receive_snapshot(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        frame = await _read_frame(reader, MAX_MESSAGE_FRAME)
        msg = raft_pb2.Message.FromString(frame)
        (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        index = msg.snapshot.metadata.index
        path = os.path.join(self.snap_dir, f"{index:016x}.snap.db")
        loop = asyncio.get_running_loop()
        sender: int = getattr(msg, "from")
        log.info("receiving snapshot at index %d (%d bytes) from %x", index, size, sender)
        fd = await loop.run_in_executor(
            None, lambda: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        )
        try:
            remaining = size
            while remaining > 0:
                chunk = await reader.read(min(SNAPSHOT_CHUNK, remaining))
                if not chunk:
                    raise TransportError("snapshot stream ended early")
                await loop.run_in_executor(None, _write_all, fd, chunk)
                remaining -= len(chunk)
            await loop.run_in_executor(None, os.fsync, fd)
        finally:
            os.close(fd)
        await loop.run_in_executor(None, fsync_dir, self.snap_dir)
        log.info("received snapshot at index %d; handing it to Raft", index)
        self.metrics.peer(sender).received_bytes += len(frame) + size
        self.handler.process(msg)
        writer.write(_json_frame({"ok": True}))
        await writer.drain()

    # ----- requests ----------------------------------------------------------------------------

    async def request(self, peer_id: int, op: str, body: bytes) -> bytes:
        """Send one request to a peer and return its answer (PeerRequestError on an error)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise TransportError(f"unknown peer {peer_id:x}")
        reader, writer = await self._dial(peer, self._hello("request", peer_id, op=op))
        try:
            writer.write(encode_frame(body))
            answer = await asyncio.wait_for(_read_json(reader), REQUEST_TIMEOUT)
            if not answer.get("ok"):
                raise PeerRequestError(
                    str(answer.get("error", "")), str(answer.get("code", "UNKNOWN"))
                )
            return await asyncio.wait_for(_read_frame(reader, MAX_CONTROL_FRAME), REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise TransportError(f"request {op} to peer {peer_id:x} failed: {exc}") from None
        finally:
            writer.close()

    # ----- RTT probes ----------------------------------------------------------------------------

    async def _probe_loop(self, peer: _Peer) -> None:
        """Probe ``peer`` every ``probe_interval`` seconds for as long as it is a peer.

        A probe the network fails is counted and the next one tries again; anything else is a
        bug: a broken invariant stops the member, the rest is logged with its traceback."""
        stats = peer.stats
        while not self._stopped:
            await asyncio.sleep(self.probe_interval)
            try:
                rtt = await self._probe(peer)
            except _PROBE_FAULTS as exc:
                stats.probe_failures += 1
                log.debug("peer %x: probe failed: %r", peer.id, exc)
                continue
            except Exception as exc:
                panic_on_invariant(exc, f"probing peer {peer.id:x}")
                log.exception("peer %x: probe failed", peer.id)
                continue
            stats.rtt.observe(rtt)

    async def _probe(self, peer: _Peer) -> float:
        """One probe: seconds from the request frame to the peer's answer (the handshake, like
        the TCP connect before it, is left out: etcd's prober reuses its connection)."""
        reader, writer = await self._dial(peer, self._hello("request", peer.id, op=OP_PROBE))
        try:
            start = time.monotonic()
            writer.write(encode_frame(b""))
            # Any answer closes the round trip, "unknown peer request" from an older pyetcd too.
            await asyncio.wait_for(_read_json(reader), REQUEST_TIMEOUT)
            return time.monotonic() - start
        finally:
            writer.close()

    # ----- the listener ------------------------------------------------------------------------

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            if self.tls.server is not None and writer.get_extra_info("sslcontext") is not None:
                # After the handshake: --peer-cert-allowed-cn / -hostname, the SAN check.
                peer = writer.get_extra_info("peername") or ("", 0)
                refused = await self.tls.server.admit(
                    writer.get_extra_info("peercert"), str(peer[0])
                )
                if refused is not None:
                    log.warning(
                        "rejected peer connection from %s: %s",
                        writer.get_extra_info("peername"),
                        refused,
                    )
                    return
            magic = await asyncio.wait_for(reader.readexactly(len(MAGIC)), HANDSHAKE_TIMEOUT)
            if magic != MAGIC:
                return
            hello = await asyncio.wait_for(_read_json(reader), HANDSHAKE_TIMEOUT)
            kind = hello.get("kind")
            if kind == "members":
                writer.write(
                    _json_frame(
                        {
                            "ok": True,
                            "cluster_id": self.cluster_id,
                            "member_id": self.member_id,
                            "members": self.handler.members_json(),
                        }
                    )
                )
                await writer.drain()
                return
            error = self._check_hello(hello, writer)
            if error is not None:
                writer.write(_json_frame({"ok": False, "error": error}))
                await writer.drain()
                return
            writer.write(_json_frame({"ok": True}))
            if kind == "stream":
                sender = int(hello.get("from", 0))
                self._inbound.setdefault(sender, set()).add(writer)
                stats = self.metrics.peer(sender)
                try:
                    await self._read_stream(reader, stats)
                except (TransportError, DecodeError):
                    # A frame over the limit, or one that is no Raft message: etcd's
                    # recvFailures, and the stream is closed.
                    stats.received_failures += 1
                    raise
                finally:
                    self._inbound.get(sender, set()).discard(writer)
            elif kind == "snapshot":
                await self._receive_snapshot(reader, writer)
            elif kind == "request":
                await self._serve_request(str(hello.get("op", "")), reader, writer)
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            TransportError,
            ValueError,
        ) as exc:
            log.debug("peer connection closed: %s", exc)
        except Exception as exc:
            # A frame that does not decode, a request the handler refuses: the fault of one
            # connection, which is closed. A broken invariant in a handler stops the member.
            panic_on_invariant(exc, "a peer connection's handler")
            log.warning("peer connection closed: %r", exc)
        finally:
            self._conns.discard(writer)
            writer.close()

    def _check_hello(self, hello: dict[str, Any], writer: asyncio.StreamWriter) -> str | None:
        remote_cid = int(hello.get("cluster_id", 0))
        sender = int(hello.get("from", 0))
        if remote_cid != self.cluster_id:
            # etcd's rafthttp answers 412 "cluster ID mismatch" and logs the two IDs.
            peer = writer.get_extra_info("peername")
            log.warning(
                "request cluster ID mismatch (local-member-id %x, local-member-cluster-id %x, "
                "remote-peer-id %x, remote-peer-cluster-id %x, remote-address %s)",
                self.member_id,
                self.cluster_id,
                sender,
                remote_cid,
                peer,
            )
            return ERR_CLUSTER_ID_MISMATCH
        if int(hello.get("to", 0)) != self.member_id:
            return ERR_WRONG_MEMBER
        if self.handler.is_removed(sender):
            log.warning("rejected stream from remote peer %x because it was removed", sender)
            return ERR_REMOVED
        return None

    async def _read_stream(self, reader: asyncio.StreamReader, stats: PeerStats) -> None:
        from_string = raft_pb2.Message.FromString
        process = self.handler.process
        while True:
            data = await _read_frame(reader, MAX_MESSAGE_FRAME)
            stats.received_bytes += len(data)
            process(from_string(data))

    async def _serve_request(
        self, op: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = await _read_frame(reader, MAX_CONTROL_FRAME)
        if op == OP_PROBE:
            # Answered here, not by the handler: the round trip is the transport's own.
            writer.write(_json_frame({"ok": True}) + encode_frame(b""))
            await writer.drain()
            return
        try:
            answer = await self.handler.handle_request(op, body)
        except PeerRequestError as exc:
            writer.write(_json_frame({"ok": False, "error": exc.message, "code": exc.code}))
        else:
            writer.write(_json_frame({"ok": True}) + encode_frame(answer))
        await writer.drain()


def peer_id_is_current(peers: Mapping[int, _Peer], peer: _Peer) -> bool:
    """Whether ``peer`` is still the transport's peer (not removed meanwhile)."""
    return peers.get(peer.id) is peer


def _set_event(event: asyncio.Event, _task: asyncio.Task[bytes]) -> None:
    event.set()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class PeerTLS:
    """TLS of the peer side: ``server`` for https listen URLs, ``client`` to dial https peer
    URLs (both ``None`` when the member has no peer certificate)."""

    server: ServerTLS | None = None
    client: ssl.SSLContext | None = None

    @classmethod
    def of(cls, info: TLSInfo, options: TLSOptions) -> PeerTLS:
        """From the peer flags; raises ``TLSConfigError`` naming a file that cannot be used."""
        if info.empty:
            return cls()
        return cls(ServerTLS(info, options), client_context(info, options))

    def dial_options(self, url: str) -> dict[str, Any]:
        """``open_connection``'s TLS arguments for a peer URL (none for http)."""
        if not url.startswith("https:"):
            return {}
        if self.client is None:
            raise TransportError(f"{url}: an https peer URL needs the peer certificate")
        host, _ = _host_port(url)
        return {
            "ssl": self.client,
            "server_hostname": host,
            "ssl_handshake_timeout": HANDSHAKE_TIMEOUT,
        }


def fetch_cluster(
    peer_urls: Iterable[str], timeout: float = 1.0, tls: PeerTLS | None = None
) -> tuple[int, list[str]]:
    """The cluster ID and member JSON list from the first peer that answers (blocking).

    A member joining an existing cluster asks its peers, as etcd's GetClusterFromRemotePeers
    does; raises TransportError if none answers.
    """
    errors: list[str] = []
    for url in peer_urls:
        host, port = _host_port(url)
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
                if url.startswith("https:"):
                    client = (tls or PeerTLS()).client
                    if client is None:
                        raise TransportError("an https peer URL needs the peer certificate")
                    sock = stack.enter_context(client.wrap_socket(sock, server_hostname=host))
                sock.settimeout(timeout)
                sock.sendall(MAGIC + _json_frame({"kind": "members"}))
                answer = json.loads(_recv_frame(sock))
        except (OSError, ValueError, TransportError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        if isinstance(answer, dict) and answer.get("ok"):
            return int(answer["cluster_id"]), [str(m) for m in answer.get("members", [])]
        errors.append(f"{url}: {answer!r}")
    raise TransportError(
        "could not retrieve cluster information from the given URLs"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TransportError("connection closed")
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(_recv_exactly(sock, _LEN.size))
    if n > MAX_CONTROL_FRAME:
        raise TransportError(f"frame of {n} bytes exceeds the limit")
    return _recv_exactly(sock, n)
