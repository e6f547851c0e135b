"""A gRPC front-end process: ``python -m pyetcd.api.relay.frontend`` (started by the member).

It accepts client connections on the listening sockets it inherited from the member, serves
their HTTP/2 with ``api.h2`` (the same connection state machine, flow control, keepalive and
limits as the member's own stack), and relays every call to the member over its relay socket
(``frames``) instead of running a handler: a call's request messages go out as they arrive and
its responses and status come back. It never decodes a message; the member does, and answers
an unknown method itself. A connection whose first bytes are not the HTTP/2 preface (etcd's
HTTP endpoints share the client port) goes back to the member with its descriptor.

It exits when the member closes the relay (the member is gone), and on SIGTERM after a GOAWAY
and a grace period for the calls under way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import grpc
import uvloop

from pyetcd.api.h2.connection import PREFACE
from pyetcd.api.h2.server import CallContext, H2Server, ServerOptions, peer_name
from pyetcd.api.relay import frames
from pyetcd.api.relay.frames import Open
from pyetcd.panic import panic_on_invariant

log = logging.getLogger("pyetcd.frontend")

_STATUS = {code.value[0]: code for code in grpc.StatusCode}
_PEEK_RETRY = 0.005
_PEEK_GIVE_UP = 10.0
_PR_SET_PDEATHSIG = 1
STOP_GRACE = 1.0


class _Relayed:
    """One call's responses from the member: messages, then its status."""

    def __init__(self) -> None:
        self.items: deque[bytes | tuple[grpc.StatusCode, str]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.done = False

    def put(self, item: bytes | tuple[grpc.StatusCode, str]) -> None:
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> bytes | tuple[grpc.StatusCode, str]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


class MemberLink(asyncio.Protocol):
    """The front-end's end of its relay socket."""

    def __init__(self, lost: asyncio.Event) -> None:
        self.calls: dict[int, _Relayed] = {}
        self._next_id = 0
        self._reader = frames.FrameReader()
        self._codec = frames.OpenCodec()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_event_loop()
        self._lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._frames(data)
        except frames.RelayProtocolError as exc:
            panic_on_invariant(exc, "the gRPC front-end relay")

    def _frames(self, data: bytes) -> None:
        for kind, call_id, payload in self._reader.feed(data):
            relayed = self.calls.get(call_id)
            if relayed is None:
                continue  # a call that ended here first
            if kind == frames.MESSAGE:
                relayed.put(payload)
            elif kind == frames.REPLY:
                self.calls.pop(call_id, None)
                relayed.done = True
                relayed.put(payload)
                relayed.put((grpc.StatusCode.OK, ""))
            elif kind == frames.STATUS:
                code, details = frames.decode_status(payload)
                self.calls.pop(call_id, None)
                relayed.done = True
                relayed.put((_STATUS.get(code, grpc.StatusCode.UNKNOWN), details))
            else:
                raise frames.RelayProtocolError(f"relay frame kind {kind} sent to a front-end")

    def connection_lost(self, exc: Exception | None) -> None:
        for relayed in self.calls.values():
            relayed.put((grpc.StatusCode.UNAVAILABLE, "the member is stopping"))
        self.calls.clear()
        self._lost.set()

    def open(self, o: Open, whole: bytes | None) -> tuple[int, _Relayed]:
        """Start a call; ``whole``: its only message, when the client has sent everything."""
        self._next_id += 1
        call_id = self._next_id
        relayed = self.calls[call_id] = _Relayed()
        if whole is None:
            self.send(frames.frame(frames.OPEN, call_id, self._codec.encode(o)))
        else:
            self.send(frames.frame(frames.UNARY, call_id, frames.unary(o, whole, self._codec)))
        return call_id, relayed

    def end(self, call_id: int) -> None:
        """The call is over here before its status came (reset, deadline): tell the member."""
        if self.calls.pop(call_id, None) is not None:
            self.send(frames.frame(frames.CANCEL, call_id))

    def send(self, data: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))


def relay_handler(link: MemberLink) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler of every path: bytes in, bytes out, the member decides the rest."""

    async def relay(requests: AsyncIterator[bytes], call: CallContext) -> AsyncIterator[bytes]:
        whole = call.whole_request()
        o = Open(call.method, call.peer(), call.time_remaining(), call.invocation_metadata())
        call_id, relayed = link.open(o, whole)

        async def forward() -> None:
            async for message in requests:
                link.send(frames.frame(frames.MESSAGE, call_id, message))
            link.send(frames.frame(frames.HALF_CLOSE, call_id))

        pump = None if whole is not None else asyncio.get_running_loop().create_task(forward())
        try:
            while True:
                item = await relayed.next()
                if isinstance(item, bytes):
                    yield item  # written to the client (with its backpressure) before we resume
                    if not relayed.done:
                        link.send(frames.frame(frames.CREDIT, call_id, frames.credit(len(item))))
                    continue
                call.code, call.details = item
                return
        finally:
            if pump is not None:
                pump.cancel()
            if not relayed.done:
                link.end(call_id)

    return grpc.stream_stream_rpc_method_handler(relay)


class _EveryPath(Mapping[bytes, Any]):
    """A method table that routes every path to the relay."""

    def __init__(self, handler: grpc.RpcMethodHandler[Any, Any]) -> None:
        self._handler = handler

    def __getitem__(self, path: bytes) -> Any:
        return self._handler

    def get(self, path: bytes, default: Any = None) -> Any:
        return self._handler

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Acceptor:
    """Accepts on one inherited listening socket; HTTP/2 is served here, anything else is
    handed back to the member (``handoff``) untouched: only peeked at, never read."""

    def __init__(
        self, listener: socket.socket, h2: H2Server, handoff: socket.socket | None
    ) -> None:
        self._listener = listener
        self._h2 = h2
        self._handoff = handoff
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._listener.setblocking(False)
        self._loop.add_reader(self._listener.fileno(), self._accept)

    def stop(self) -> None:
        self._loop.remove_reader(self._listener.fileno())

    def _accept(self) -> None:
        while True:
            try:
                conn, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors, say: the member's own accept loop logs and goes on too.
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            if self._handoff is None:
                self._serve(conn, address)
            else:
                self._sniff(conn, address, self._loop.time() + _PEEK_GIVE_UP)

    def _sniff(self, conn: socket.socket, address: Any, give_up: float) -> None:
        try:
            head = conn.recv(len(PREFACE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            head = None
        except OSError:
            conn.close()
            return
        if head == b"":
            conn.close()  # closed before saying anything
            return
        if head is not None and not PREFACE.startswith(head[: len(PREFACE)]):
            self._hand_back(conn)
            return
        if head is not None and len(head) >= len(PREFACE):
            self._serve(conn, address)
            return
        if self._loop.time() >= give_up:
            conn.close()
            return
        # Nothing yet, or part of the preface: look again shortly (a peek leaves the bytes
        # readable, so waiting for readability would spin).
        self._loop.call_later(_PEEK_RETRY, self._sniff, conn, address, give_up)

    def _serve(self, conn: socket.socket, address: Any) -> None:
        peer = peer_name(address)
        self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: self._h2.protocol(peer), conn)
        )

    def _hand_back(self, conn: socket.socket) -> None:
        assert self._handoff is not None
        try:
            socket.send_fds(self._handoff, [b"c"], [conn.fileno()])
        except OSError as exc:
            log.warning("cannot hand a connection back to the member: %s", exc)
        conn.close()


async def serve(
    relay_fd: int, listen_fds: Sequence[int], handoff_fd: int | None, options: ServerOptions
) -> None:
    loop = asyncio.get_running_loop()
    lost = asyncio.Event()
    stop = asyncio.Event()
    relay_sock = socket.socket(fileno=relay_fd)
    _, link = await loop.connect_accepted_socket(lambda: MemberLink(lost), relay_sock)
    h2 = H2Server(_EveryPath(relay_handler(link)), options)
    handoff = socket.socket(fileno=handoff_fd) if handoff_fd is not None else None
    acceptors = [Acceptor(socket.socket(fileno=fd), h2, handoff) for fd in listen_fds]
    for acceptor in acceptors:
        acceptor.start()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    waiting = [loop.create_task(lost.wait()), loop.create_task(stop.wait())]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    for acceptor in acceptors:
        acceptor.stop()
    await h2.stop(STOP_GRACE if not lost.is_set() else 0.0)


def _die_with_parent() -> None:
    """The member killed with -9 takes its front-ends with it (they hold its client port)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyetcd-frontend")
    parser.add_argument("--relay-fd", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, action="append", default=[])
    parser.add_argument("--handoff-fd", type=int, default=None)
    parser.add_argument("--options", default="{}")
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    options = ServerOptions(**json.loads(args.options))
    uvloop.run(serve(args.relay_fd, args.listen_fd, args.handoff_fd, options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
