"""The member's side of the gRPC front-ends: it spawns them, runs the calls they relay, and
serves the connections they hand back.

With ``--experimental-grpc-frontends=N`` the member binds its client URLs as before but does
not accept on them: N front-end processes (``api.relay.frontend``) inherit the listening sockets
and accept instead. They do what one core spent a third of a put on: HTTP/2 framing, header
decoding, flow control and one socket per client. Each call reaches the member as a few relay
frames on one unix socket per front-end (``frames``), where a ``RelayCall`` runs the very
handler ``api.h2`` would have run (``run_handler``), so the services, the auth guard and the
metrics see no difference. A connection that is not HTTP/2 (etcd's HTTP endpoints share the
client port) is handed back with its descriptor (SCM_RIGHTS) and served by the member's own
multiplexer.

A front-end that exits is started again after a backoff; its clients reconnect, as to a
restarted etcd. On stop, the front-ends get SIGTERM: they send GOAWAY, let calls under way
finish for a grace period, and exit; the member answers their calls meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import grpc

from pyetcd.api.h2.server import (
    CallContext,
    H2Server,
    ServerOptions,
    unknown_method,
)
from pyetcd.api.relay import frames
from pyetcd.api.relay.frames import Open, RelayProtocolError
from pyetcd.panic import panic_on_invariant

log = logging.getLogger(__name__)

# A streaming call waits while this much of its output is unacknowledged by its front-end.
WRITE_HIGH_WATER = 1024 * 1024
RESTART_BACKOFF = (0.1, 5.0)  # first and longest wait before a front-end is started again
STOP_GRACE = 1.0
_SLOTS = 1 << 32


class RelayCall(CallContext):
    """A call relayed by a front-end: its handler's context in the member."""

    def __init__(
        self, link: FrontendLink, call_id: int, handler: grpc.RpcMethodHandler[Any, Any], o: Open
    ) -> None:
        super().__init__(handler, o.metadata, o.peer, o.path)
        self._link = link
        self.call_id = call_id
        self._unacked = 0
        self._last: tuple[int, bytes] | None = None  # (slot in the link's output, message)

    def _emit(self, body: bytes) -> None:
        self._unacked += len(body)
        self._last = (self._link.send(frames.frame(frames.MESSAGE, self.call_id, body)), body)

    def _backlogged(self) -> bool:
        return self._unacked > WRITE_HIGH_WATER or self._link.writing_paused

    def credit(self, n: int) -> None:
        self._unacked -= n
        self.wake_writer()

    def finish(self) -> None:
        self.disarm_deadline()
        if self.reset:
            return
        if self.code == grpc.StatusCode.OK and not self.details and self._last is not None:
            # The last message has not left yet: it and the status go as one frame.
            slot, body = self._last
            if self._link.replace(slot, frames.frame(frames.REPLY, self.call_id, body)):
                return
        payload = frames.status(self.code.value[0], self.details)
        self._link.send(frames.frame(frames.STATUS, self.call_id, payload))


class FrontendLink(asyncio.Protocol):
    """The member's end of one front-end's relay socket."""

    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.calls: dict[int, RelayCall] = {}
        self.writing_paused = False
        self._reader = frames.FrameReader()
        self._codec = frames.OpenCodec()
        self._out: list[bytes] = []
        self._flushes = 0  # writes so far: a slot names its write and its place in it
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            received = self._reader.feed(data)
            for kind, call_id, payload in received:
                self._frame(kind, call_id, payload)
        except RelayProtocolError as exc:
            panic_on_invariant(exc, "the gRPC front-end relay")

    def _frame(self, kind: int, call_id: int, payload: bytes) -> None:
        if kind == frames.UNARY:
            o, message = frames.decode_unary(payload, self._codec)
            call = self._open(call_id, o)
            if call is not None:
                call.received(message)
                call.received(None)
            return
        if kind == frames.OPEN:
            self._open(call_id, self._codec.decode(payload))
            return
        call = self.calls.get(call_id)
        if call is None:
            return  # a call that ended here first (its deadline, its handler)
        if kind == frames.MESSAGE:
            call.received(payload)
        elif kind == frames.HALF_CLOSE:
            call.received(None)
        elif kind == frames.CANCEL:
            call.client_reset()
        elif kind == frames.CREDIT:
            call.credit(frames.decode_credit(payload))
        else:
            raise RelayProtocolError(f"relay frame kind {kind} sent to the member")

    def _open(self, call_id: int, o: Open) -> RelayCall | None:
        if call_id in self.calls:
            raise RelayProtocolError(f"relay call {call_id} opened twice")
        handler = self.server.methods.get(o.path)
        if handler is None:
            details = unknown_method(o.path, self.server.methods)
            payload = frames.status(grpc.StatusCode.UNIMPLEMENTED.value[0], details)
            self.send(frames.frame(frames.STATUS, call_id, payload))
            return None
        call = RelayCall(self, call_id, handler, o)
        self.calls[call_id] = call
        self.server.call_started()
        if o.timeout is not None:
            call.arm_deadline(self._loop, o.timeout)
        call.start(self._loop, self._over)
        return call

    def _over(self, call: CallContext) -> None:
        assert isinstance(call, RelayCall)
        self.calls.pop(call.call_id, None)
        self.server.call_ended()

    def send(self, data: bytes) -> int:
        """Queue ``data`` for this iteration's write; its slot (see ``replace``)."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)
        return self._flushes * _SLOTS + len(self._out) - 1

    def replace(self, slot: int, data: bytes) -> bool:
        """Put ``data`` in place of what ``slot`` holds, if it has not been written yet."""
        flushes, index = divmod(slot, _SLOTS)
        if flushes != self._flushes or index >= len(self._out):
            return False
        self._out[index] = data
        return True

    def _flush(self) -> None:
        out, self._out = self._out, []
        self._flushes += 1
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        for call in self.calls.values():
            call.wake_writer()

    def connection_lost(self, exc: Exception | None) -> None:
        # The front-end is gone, and its clients' connections with it.
        for call in list(self.calls.values()):
            call.client_reset()


class Frontends:
    """The member's gRPC front-end processes, kept running while the member serves."""

    def __init__(
        self,
        count: int,
        server: H2Server,
        options: ServerOptions,
        adopt: Callable[[socket.socket], None] | None,
    ) -> None:
        self.count = count
        self.server = server
        self.options = options
        # Connections that are not HTTP/2 come back here (the client port's multiplexer).
        self.adopt = adopt
        self._listeners: list[socket.socket] = []
        self._supervisors: list[asyncio.Task[None]] = []
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._ready: list[asyncio.Future[None]] = []

    def listen(self, host: str, port: int) -> None:
        """Bind a client URL for the front-ends to accept on (the member never does)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._listeners.append(sock)

    async def start(self) -> None:
        """Start every front-end; returns once each has said it accepts."""
        loop = asyncio.get_running_loop()
        for i in range(self.count):
            ready: asyncio.Future[None] = loop.create_future()
            self._ready.append(ready)
            self._supervisors.append(
                loop.create_task(self._supervise(i, ready), name=f"gRPC front-end {i}")
            )
        await asyncio.gather(*self._ready)

    async def _supervise(self, index: int, ready: asyncio.Future[None]) -> None:
        backoff = RESTART_BACKOFF[0]
        while not self._stopping:
            try:
                await self._run_one(index, ready)
            except OSError as exc:
                log.error("cannot start gRPC front-end %d: %s", index, exc)
                if not ready.done():
                    ready.set_exception(exc)  # the member does not start without them
                    return
            if self._stopping:
                return
            log.warning("gRPC front-end %d exited; starting it again in %.1fs", index, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF[1])

    async def _run_one(self, index: int, ready: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        relay_m, relay_f = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff_m, handoff_f = (
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            if self.adopt is not None
            else (None, None)
        )
        fds = [relay_f.fileno(), *(s.fileno() for s in self._listeners)]
        if handoff_f is not None:
            fds.append(handoff_f.fileno())
        argv = [
            sys.executable,
            "-m",
            "pyetcd.api.relay.frontend",
            f"--relay-fd={relay_f.fileno()}",
            *(f"--listen-fd={s.fileno()}" for s in self._listeners),
            f"--options={json.dumps(asdict(self.options))}",
        ]
        if handoff_f is not None:
            argv.append(f"--handoff-fd={handoff_f.fileno()}")
        try:
            proc = await asyncio.create_subprocess_exec(*argv, pass_fds=fds)
        finally:
            relay_f.close()
            if handoff_f is not None:
                handoff_f.close()
        self._procs[index] = proc
        try:
            await loop.connect_accepted_socket(lambda: FrontendLink(self.server), relay_m)
            if handoff_m is not None:
                handoff_m.setblocking(False)
                loop.add_reader(handoff_m.fileno(), self._adopt_from, handoff_m)
            if not ready.done():
                ready.set_result(None)
            await proc.wait()
        finally:
            if handoff_m is not None:
                loop.remove_reader(handoff_m.fileno())
                handoff_m.close()
            self._procs.pop(index, None)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if not self._stopping:
                log.warning(
                    "gRPC front-end %d (pid %d) exited with %s", index, proc.pid, proc.returncode
                )

    def _adopt_from(self, handoff: socket.socket) -> None:
        assert self.adopt is not None
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(handoff, 1, 16)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("connection hand-off from a gRPC front-end failed: %s", exc)
                return
            for fd in fds:
                self.adopt(socket.socket(fileno=fd))
            if not fds:
                return

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM to every front-end (GOAWAY, calls under way finish), then wait for them."""
        self._stopping = True
        for proc in list(self._procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        waits = [proc.wait() for proc in self._procs.values()]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=grace + 2.0)
            for proc in list(self._procs.values()):
                if proc.returncode is None:
                    proc.kill()
        for task in self._supervisors:
            task.cancel()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self._listeners:
            sock.close()
