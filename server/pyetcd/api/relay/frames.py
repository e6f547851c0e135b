"""The relay's wire format between a gRPC front-end process and its member (pure, no I/O).

A front-end serves clients' HTTP/2 and hands each call to the member over one unix stream
socket, many calls interleaved. Every frame is ``length (u32) | kind (u8) | call id (u32) |
payload`` with ``length`` the payload's size:

* front-end to member: ``OPEN`` (path, peer, timeout, metadata), ``MESSAGE`` (a request
  message, serialized), ``HALF_CLOSE`` (the client sent its last message), ``CANCEL`` (the
  client reset the stream or its deadline passed there), ``CREDIT`` (this many response bytes
  have left for the client: the member may send that much more), and ``UNARY``: an OPEN, its
  only message and the half-close in one frame, for a request that had all arrived (nearly
  every call: a client sends its headers and its one message together);
* member to front-end: ``MESSAGE`` (a response message, serialized), ``STATUS`` (code and
  details: the call is over), and ``REPLY``: a last message and status OK in one frame.

Both ends are this project's own processes, so a frame that does not parse is a bug, not input:
the reader raises ``RelayProtocolError`` and the member stops.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyetcd.panic import InvariantError

__all__ = [
    "CANCEL",
    "CREDIT",
    "HALF_CLOSE",
    "MESSAGE",
    "OPEN",
    "REPLY",
    "STATUS",
    "UNARY",
    "FrameReader",
    "Open",
    "OpenCodec",
    "RelayProtocolError",
    "credit",
    "decode_credit",
    "decode_open",
    "decode_status",
    "decode_unary",
    "encode_open",
    "frame",
    "status",
    "unary",
]

OPEN, MESSAGE, HALF_CLOSE, CANCEL, STATUS, CREDIT, UNARY, REPLY = 1, 2, 3, 4, 5, 6, 7, 8
_KINDS = frozenset({OPEN, MESSAGE, HALF_CLOSE, CANCEL, STATUS, CREDIT, UNARY, REPLY})
_HEAD = struct.Struct(">IBI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TIMEOUT = struct.Struct(">d")
_NO_TIMEOUT = -1.0
MAX_FRAME = 2**31 - 1


class RelayProtocolError(InvariantError):
    """A frame that this project's own other end should never have written."""


def frame(kind: int, call_id: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack(len(payload), kind, call_id) + payload


@dataclass(frozen=True)
class Open:
    """A call's start: what the member needs to run its handler."""

    path: bytes
    peer: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...]


def _field(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


_HEAD_CACHE = 512


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RelayProtocolError("truncated OPEN frame")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def field(self) -> bytes:
        (n,) = _U32.unpack(self.take(4))
        return self.take(n)


def _call_head(path: bytes, metadata: tuple[tuple[str, str | bytes], ...]) -> bytes:
    parts = [_field(path), _U16.pack(len(metadata))]
    for key, value in metadata:
        parts.append(_field(key.encode("latin-1")))
        parts.append(_field(value if isinstance(value, bytes) else value.encode("latin-1")))
    return b"".join(parts)


class OpenCodec:
    """OPEN frames' payloads, both ways. A client sends the same path and metadata (its token,
    say) call after call, so that part is encoded and decoded once and remembered; only the
    peer and the deadline are read for each call."""

    def __init__(self) -> None:
        self._encoded: dict[tuple[bytes, tuple[tuple[str, str | bytes], ...]], bytes] = {}
        self._decoded: dict[bytes, tuple[bytes, tuple[tuple[str, str | bytes], ...]]] = {}

    def encode(self, o: Open) -> bytes:
        key = (o.path, o.metadata)
        head = self._encoded.get(key)
        if head is None:
            if len(self._encoded) >= _HEAD_CACHE:
                self._encoded.clear()
            head = self._encoded[key] = _call_head(o.path, o.metadata)
        timeout = _NO_TIMEOUT if o.timeout is None else o.timeout
        return _TIMEOUT.pack(timeout) + _field(o.peer.encode()) + head

    def decode(self, payload: bytes) -> Open:
        cur = _Cursor(payload)
        (timeout,) = _TIMEOUT.unpack(cur.take(8))
        peer = cur.field().decode()
        head = payload[cur.pos :]
        known = self._decoded.get(head)
        if known is None:
            if len(self._decoded) >= _HEAD_CACHE:
                self._decoded.clear()
            known = self._decoded[head] = _decode_head(head)
        return Open(known[0], peer, None if timeout < 0 else timeout, known[1])


def _decode_head(head: bytes) -> tuple[bytes, tuple[tuple[str, str | bytes], ...]]:
    cur = _Cursor(head)
    path = cur.field()
    (count,) = _U16.unpack(cur.take(2))
    metadata: list[tuple[str, str | bytes]] = []
    for _ in range(count):
        key = cur.field().decode("latin-1")
        value = cur.field()
        # As grpcio hands them over: binary ("-bin") values as bytes, the others as text.
        metadata.append((key, value if key.endswith("-bin") else value.decode("latin-1")))
    if cur.pos != len(head):
        raise RelayProtocolError("trailing bytes in an OPEN frame")
    return path, tuple(metadata)


def encode_open(o: Open) -> bytes:
    return OpenCodec().encode(o)


def decode_open(payload: bytes) -> Open:
    return OpenCodec().decode(payload)


def unary(o: Open, message: bytes, codec: OpenCodec | None = None) -> bytes:
    return _field((codec or OpenCodec()).encode(o)) + message


def decode_unary(payload: bytes, codec: OpenCodec | None = None) -> tuple[Open, bytes]:
    cur = _Cursor(payload)
    o = (codec or OpenCodec()).decode(cur.field())
    return o, payload[cur.pos :]


def status(code: int, details: str) -> bytes:
    return _U16.pack(code) + details.encode()


def decode_status(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        raise RelayProtocolError("truncated STATUS frame")
    return _U16.unpack_from(payload)[0], payload[2:].decode()


def credit(n: int) -> bytes:
    return _U32.pack(n)


def decode_credit(payload: bytes) -> int:
    if len(payload) != 4:
        raise RelayProtocolError("CREDIT frame of the wrong size")
    return int(_U32.unpack(payload)[0])


class FrameReader:
    """Splits a byte stream into ``(kind, call id, payload)`` frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self._buf
        buf += data
        frames = []
        pos, n = 0, len(buf)
        while n - pos >= _HEAD.size:
            length, kind, call_id = _HEAD.unpack_from(buf, pos)
            if kind not in _KINDS:
                raise RelayProtocolError(f"unknown relay frame kind {kind}")
            end = pos + _HEAD.size + length
            if end > n:
                break
            frames.append((kind, call_id, bytes(buf[pos + _HEAD.size : end])))
            pos = end
        del buf[:pos]
        return frames
