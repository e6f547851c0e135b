"""``kubectl exec`` on the process kubelet: SPDY/3.1 framing and the remote command protocol v4.

kubectl 1.30+ speaks WebSocket (``v5.channel.k8s.io``) to the API server, and the API server
translates it to SPDY towards the kubelet (``StreamTranslatorProxy``, feature
``TranslateStreamCloseWebsocketRequests``); a kubectl speaking SPDY itself is proxied through as
is. Either way the kubelet's ``/exec`` is an HTTP upgrade to ``SPDY/3.1`` with
``X-Stream-Protocol-Version`` negotiation (the kubelet offers v4 .. v1; only v4 here, which every
client since Kubernetes 1.4 offers), after which the client opens one stream per channel, each a
``SYN_STREAM`` with a ``streamtype`` header (``error``, then ``stdin``, ``stdout``, ``stderr`` as
asked, ``resize`` with a TTY) that the server accepts with a ``SYN_REPLY``. The server copies the
command's output into ``stdout``/``stderr`` (``DATA`` frames, ``FIN`` at the end), the client's
``stdin`` data into the command, and finally writes a ``metav1.Status`` as JSON on ``error``:
``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the exit code as a cause.

SPDY/3.1, what of it is used (moby/spdystream, which both ends of Kubernetes use): 8-byte frame
headers (control frames: version 3, type, flags, 24-bit length; data frames: stream id, flags,
length), header blocks ``count, (name length, name, value length, value)*`` of 32-bit lengths,
compressed with one zlib stream per direction and connection, primed with SPDY/3's dictionary and
sync-flushed per frame. spdystream does no flow control, so ``WINDOW_UPDATE``, like ``SETTINGS``,
is ignored; ``PING`` is answered. No TTY here (there is no terminal to give a process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
DATA = 0  # not a SPDY type: what read_frame() reports for a data frame
FLAG_FIN = 0x01
RST_CANCEL = 5
MAX_DATA = 32 * 1024

PROTOCOL_V4 = "v4.channel.k8s.io"
# A kubelet waits this long for the client's streams (streamCreationTimeout), and at the end
# for the client to hang up after the status, before closing itself.
STREAM_CREATION_TIMEOUT = 30.0
HANG_UP_TIMEOUT = 10.0

# SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): 65 words,
# each with its 32-bit length, then a run of common status lines, dates and content types.
_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
)  # fmt: skip
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class ProtocolError(RuntimeError):
    """The peer sent something that is not SPDY/3."""


@dataclass(frozen=True)
class Frame:
    """A frame read: ``kind`` is a control frame type, or :data:`DATA`."""

    kind: int
    flags: int
    stream_id: int
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def encode_headers(headers: dict[str, str]) -> bytes:
    """An uncompressed header block (names lower-case, as SPDY/3 requires)."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        for text in (name.lower().encode(), value.encode()):
            out.append(struct.pack(">I", len(text)) + text)
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    """An uncompressed header block -> names to values (several values joined by NUL)."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        offset = 4
        headers: dict[str, str] = {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4 : offset + 4 + size].decode()
            offset += 4 + size
            (size,) = struct.unpack_from(">I", block, offset)
            headers[name] = block[offset + 4 : offset + 4 + size].decode()
            offset += 4 + size
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad header block: {exc}") from None
    return headers


class Connection:
    """One SPDY/3.1 connection over an upgraded HTTP connection, server side.

    Frames are written whole, each with one synchronous ``write`` (no ``await`` between
    compressing a header block and writing it), so tasks may write concurrently without
    interleaving frames or the compression stream.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._compress = zlib.compressobj(zdict=DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=DICTIONARY)

    async def read_frame(self) -> Frame | None:
        """The next frame; None when the peer closed the connection."""
        try:
            head = await self.reader.readexactly(8)
            first, second, length = struct.unpack(">IB3s", head)
            size = int.from_bytes(length, "big")
            payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if not first & 0x80000000:
            return Frame(DATA, second, first & 0x7FFFFFFF, payload)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}, not {VERSION}")
        stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF if size >= 4 else 0
        if kind == SYN_STREAM:
            return Frame(kind, second, stream_id, headers=self._headers(payload[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, second, stream_id, headers=self._headers(payload[4:]))
        return Frame(kind, second, stream_id, payload)

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            return decode_headers(self._decompress.decompress(block))
        except zlib.error as exc:
            raise ProtocolError(f"header block: {exc}") from None

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        head = struct.pack(">HHI", 0x8000 | VERSION, kind, flags << 24 | len(payload))
        self.writer.write(head + payload)

    def _block(self, headers: dict[str, str]) -> bytes:
        block = self._compress.compress(encode_headers(headers))
        return block + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def open_stream(self, stream_id: int, headers: dict[str, str]) -> None:
        """Open a stream (``SYN_STREAM``): the client's move, here for tests acting as one."""
        self._control(
            SYN_STREAM, 0, struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        )

    def reply(self, stream_id: int, headers: dict[str, str] | None = None) -> None:
        """Accept a stream the client opened (``SYN_REPLY``)."""
        self._control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._block(headers or {}))

    def data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        """``data`` on a stream, in frames of at most :data:`MAX_DATA`; ``fin`` closes our half."""
        chunks = [data[i : i + MAX_DATA] for i in range(0, len(data), MAX_DATA)] or [b""]
        for n, chunk in enumerate(chunks):
            flags = FLAG_FIN if fin and n == len(chunks) - 1 else 0
            self.writer.write(struct.pack(">II", stream_id, flags << 24 | len(chunk)) + chunk)

    def ping(self, ping_id: int) -> None:
        self._control(PING, 0, struct.pack(">I", ping_id))

    def reset(self, stream_id: int, status: int = RST_CANCEL) -> None:
        self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    async def drain(self) -> None:
        await self.writer.drain()


# -- the remote command protocol v4 ------------------------------------------------------------


@dataclass(frozen=True)
class ExecOptions:
    """The kubelet's ``/exec`` query: ``command`` (repeated), ``input``, ``output``, ``error``,
    ``tty`` (``1`` for yes)."""

    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @staticmethod
    def parse(query: dict[str, list[str]]) -> ExecOptions:
        def flag(name: str) -> bool:
            return (query.get(name) or [""])[-1] == "1"

        tty = flag("tty")
        options = ExecOptions(
            tuple(query.get("command") or []),
            flag("input"),
            flag("output"),
            flag("error") and not tty,  # a kubelet drops stderr with a TTY, too
            tty,
        )
        if not (options.stdin or options.stdout or options.stderr):
            raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
        if not options.command:
            raise ValueError("missing command")
        return options

    def streams(self) -> set[str]:
        """The stream types the client opens."""
        wanted = {"error"}
        for name, on in (("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr)):
            if on:
                wanted.add(name)
        if self.tty:
            wanted.add("resize")
        return wanted


def status(code: int | None, message: str = "") -> dict[str, Any]:
    """The ``metav1.Status`` a kubelet writes on the error stream: exit code 0, another code, or
    (``code`` None) an internal error with ``message``."""
    base: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    if code == 0:
        return {**base, "status": "Success"}
    if code is None:
        return {
            **base,
            "status": "Failure",
            "message": f"Internal error occurred: {message}",
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }
    return {
        **base,
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


Spawn = Callable[[bool], AbstractAsyncContextManager[asyncio.subprocess.Process]]


class ExecSession:
    """One ``kubectl exec`` on an upgraded connection: the streams, the command, the status."""

    def __init__(self, conn: Connection, options: ExecOptions) -> None:
        self.conn = conn
        self.options = options
        self.streams: dict[str, int] = {}
        self._closed: set[int] = set()  # streams whose half we closed (FIN)
        self._ready = asyncio.Event()
        self._gone = asyncio.Event()  # the client hung up, or broke the protocol
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def run(self, spawn: Spawn) -> None:
        """Serve the session: ``spawn(stdin)`` starts the command (killed when it ends)."""
        frames = asyncio.create_task(self._read_frames())
        try:
            if not await self._wait(self._ready, STREAM_CREATION_TIMEOUT):
                log.info("exec: the client opened %s, not %s", self.streams, self.options.streams())
                return
            if self.options.tty:
                self._finish(None, "a TTY is not supported by the e2e process kubelet")
                return
            async with contextlib.AsyncExitStack() as stack:
                try:
                    process = await stack.enter_async_context(spawn(self.options.stdin))
                except Exception as exc:  # cannot start: e.g. the image has no such command
                    self._finish(None, f"error executing command in container: {exc}")
                    return
                code = await self._attach(process)
            if code is not None:
                # Killed by a signal: the exit code a shell (and a container runtime) reports.
                self._finish(code if code >= 0 else 128 - code)
        finally:
            with contextlib.suppress(ConnectionError):
                await self.conn.drain()
            # The client hangs up once it has read the status; then (or after a grace) close.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(frames), HANG_UP_TIMEOUT)
            frames.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProtocolError, ConnectionError):
                await frames

    async def _wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for ``event``, unless the client goes first; True when it was set."""
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._gone.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return event.is_set()

    async def _attach(self, process: asyncio.subprocess.Process) -> int | None:
        """Copy the streams until the command ends; its return code, None if the client left."""
        pumps = [
            asyncio.create_task(self._pump(reader, self.streams.get(name)))
            for name, reader in (("stdout", process.stdout), ("stderr", process.stderr))
            if reader is not None
        ]
        feeder = asyncio.create_task(self._feed(process))
        ended: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(process.wait(), *pumps))
        gone: asyncio.Future[Any] = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait([ended, gone], return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():
                return None  # the caller's context kills the command
            return process.returncode
        finally:
            gone.cancel()
            feeder.cancel()
            if not ended.done():
                for pump in pumps:
                    pump.cancel()
                ended.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ended

    async def _pump(self, reader: asyncio.StreamReader, stream_id: int | None) -> None:
        """One output of the command into its stream (discarded when the client did not ask
        for it), then ``FIN``."""
        while chunk := await reader.read(MAX_DATA):
            if stream_id is not None and not self._gone.is_set():
                self.conn.data(stream_id, chunk)
                await self.conn.drain()
        if stream_id is not None:
            self._close(stream_id)

    def _close(self, stream_id: int, data: bytes = b"") -> None:
        """Our last ``data`` on a stream, with ``FIN`` (once; not to a client gone)."""
        if stream_id not in self._closed and not self._gone.is_set():
            self._closed.add(stream_id)
            self.conn.data(stream_id, data, fin=True)

    async def _feed(self, process: asyncio.subprocess.Process) -> None:
        """The client's stdin into the command; closed at the client's ``FIN``."""
        stdin = process.stdin
        if stdin is None:
            return
        try:
            while (chunk := await self._stdin.get()) is not None:
                stdin.write(chunk)
                await stdin.drain()
        except ConnectionError:
            pass  # the command exited without reading everything
        finally:
            stdin.close()

    def _finish(self, code: int | None, message: str = "") -> None:
        """Close the output streams (the client reads the status once they are), then write the
        status on the error stream and close it."""
        for kind in ("stdout", "stderr"):
            if kind in self.streams:
                self._close(self.streams[kind])
        self._close(self.streams["error"], json.dumps(status(code, message)).encode())

    async def _read_frames(self) -> None:
        """Everything the client sends, until it hangs up."""
        wanted = self.options.streams()
        try:
            async for frame in self._frames():
                if frame.kind == SYN_STREAM:
                    kind = frame.headers.get("streamtype", "")
                    self.conn.reply(frame.stream_id)
                    if kind in wanted and kind not in self.streams:
                        self.streams[kind] = frame.stream_id
                        if set(self.streams) == wanted:
                            self._ready.set()
                    else:
                        log.info("exec: unexpected stream %r", kind)
                elif frame.kind == DATA and frame.stream_id == self.streams.get("stdin"):
                    if frame.data:
                        self._stdin.put_nowait(frame.data)
                    if frame.fin:
                        self._stdin.put_nowait(None)
                elif frame.kind == PING:
                    self.conn.ping(struct.unpack(">I", frame.data[:4])[0])
                elif frame.kind == RST_STREAM and frame.stream_id in self.streams.values():
                    break  # a stream torn down: the client is leaving
                elif frame.kind == GOAWAY:
                    break
                # SETTINGS, WINDOW_UPDATE, HEADERS, data on other streams: nothing to do.
        except ProtocolError as exc:
            log.info("exec: %s", exc)
        finally:
            self._gone.set()
            self._stdin.put_nowait(None)

    async def _frames(self) -> AsyncIterator[Frame]:
        while (frame := await self.conn.read_frame()) is not None:
            yield frame
