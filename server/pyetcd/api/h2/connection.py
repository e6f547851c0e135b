"""The server side of one HTTP/2 connection (RFC 9113), as a pure state machine.

``receive(data)`` parses what the client sent and returns events (a request's headers, its data,
a reset, a ping's answer, the client going away); what the server says goes through
``send_headers``, ``send_data``, ``send_trailers`` and ``reset``; ``data_to_send()`` returns the
bytes to write, as far as the client's flow-control windows allow. No sockets, no clock, no
asyncio: the protocol object in ``server`` feeds it and writes its output.

What gRPC needs and nothing more: the client opens every stream (no push), header blocks are
decoded by ``hpack_decoder`` and our own are encoded as literals that never touch the dynamic table
(so the client's HEADER_TABLE_SIZE never matters), and PRIORITY is read and ignored. A client that
breaks the protocol gets the GOAWAY the RFC names and ``H2ProtocolError`` is raised; a stream that
breaks it gets RST_STREAM and the connection lives on.

Flow control. Receiving: the connection window is given back as data arrives (the server reads
everything promptly; the gRPC layer bounds a message's size), a stream's window as the gRPC layer
reports it consumed (``consumed``), so that a fast writer on one stream cannot fill memory.
Sending: DATA waits in the stream's queue until both the stream's and the connection's windows
have room, and the stream's trailers wait behind its data.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

from pyetcd.api.h2.hpack_decoder import HeaderDecodeError, HeaderDecoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME = 16_384
MAX_MAX_FRAME = 2**24 - 1


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class H2ProtocolError(Exception):
    """The client broke the protocol; a GOAWAY with ``code`` is queued, then close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


# ----- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    stream_id: int
    headers: list[tuple[bytes, bytes]]
    end_stream: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The client reset the stream, or broke the protocol on it (we reset it)."""

    stream_id: int
    code: ErrorCode | int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Sending may go on: for one stream, or for all (``stream_id`` 0)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    opaque: bytes


@dataclass(frozen=True, slots=True)
class PingReceived:
    """A client's ping (already answered): the keepalive policy counts them."""

    opaque: bytes


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: ErrorCode | int
    last_stream_id: int
    debug: bytes


Event = (
    RequestReceived
    | DataReceived
    | StreamReset
    | WindowOpened
    | PingAcked
    | PingReceived
    | GoAwayReceived
)


# ----- encoding ---------------------------------------------------------------------------------

_HEAD = struct.Struct(">IBBI")  # the length is packed as 32 bits and its first byte dropped
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack(len(payload), kind, flags, stream_id)[1:] + payload


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """HPACK's prefixed integer (RFC 7541 5.1) with ``first``'s high bits as the pattern."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, new name, no Huffman (RFC 7541 6.2.2):
    it never touches either side's dynamic table, so it is the same bytes on every connection
    and can be encoded once."""
    return b"\x00" + _integer(len(name), 7, 0) + name + _integer(len(value), 7, 0) + value


STATUS_200 = b"\x88"  # indexed field 8 of the static table: ":status: 200"


def encode_headers(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(
        STATUS_200 if (n, v) == (b":status", b"200") else encode_literal(n, v) for n, v in fields
    )


def _indexed_only(block: bytes) -> bool:
    """True if every field of ``block`` is an indexed field (RFC 7541 6.1): decoding it reads
    the dynamic table and never changes it."""
    i, n = 0, len(block)
    while i < n:
        byte = block[i]
        if not byte & 0x80:
            return False
        i += 1
        if byte & 0x7F == 0x7F:  # the index continues in the next bytes
            while i < n and block[i] & 0x80:
                i += 1
            i += 1
    return True


_DECODED_CACHE = 256


# ----- streams ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    stream_id: int
    send_window: int
    recv_window: int
    remote_closed: bool = False
    local_closed: bool = False  # END_STREAM queued (trailers or reset)
    pending: deque[bytes] = field(default_factory=deque)
    pending_bytes: int = 0
    trailers: bytes | None = None  # encoded block, sent once ``pending`` is empty
    unacked: int = 0  # consumed bytes not yet given back with WINDOW_UPDATE


@dataclass(frozen=True, slots=True)
class Settings:
    """What this server announces."""

    max_concurrent_streams: int = 2**31 - 1
    initial_window: int = 4 * 1024 * 1024
    connection_window: int = 16 * 1024 * 1024
    max_frame_size: int = DEFAULT_MAX_FRAME
    max_header_list_size: int = 64 * 1024

    def encode(self) -> bytes:
        payload = b"".join(
            _SETTING.pack(k, v)
            for k, v in (
                (Setting.MAX_CONCURRENT_STREAMS, min(self.max_concurrent_streams, 2**32 - 1)),
                (Setting.INITIAL_WINDOW_SIZE, self.initial_window),
                (Setting.MAX_FRAME_SIZE, self.max_frame_size),
                (Setting.MAX_HEADER_LIST_SIZE, self.max_header_list_size),
            )
        )
        return frame(FrameType.SETTINGS, 0, 0, payload)


class H2Connection:
    """One server connection; see the module docstring."""

    def __init__(self, settings: Settings = Settings()) -> None:
        self.settings = settings
        self._in = bytearray()
        self._out: list[bytes] = []
        self._preface_seen = False
        self._settings_seen = False
        self._decoder = HeaderDecoder(max_header_list_size=settings.max_header_list_size)
        self._decoded: dict[bytes, list[tuple[bytes, bytes]] | None] = {}
        self._streams: dict[int, _Stream] = {}
        self._sending: dict[int, None] = {}  # streams with queued DATA or trailers, in order
        self.last_stream_id = 0
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        # What the client lets us send.
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._send_window = DEFAULT_WINDOW
        # What we let the client send.
        self._recv_window = DEFAULT_WINDOW
        self.closed = False
        self.going_away = False
        # HEADERS and DATA frames put on the wire so far: grpc-go's server forgives a client's
        # ping that follows any of them (its resetPingStrikes, set per frame written), and
        # DATA released by a WINDOW_UPDATE leaves here, not through a call's write.
        self.stream_frames_sent = 0

    # ----- the start and the end -----

    def initiate(self) -> None:
        """The server's preface: SETTINGS, and the connection window opened wide."""
        self._out.append(self.settings.encode())
        extra = self.settings.connection_window - DEFAULT_WINDOW
        if extra > 0:
            self._out.append(frame(FrameType.WINDOW_UPDATE, 0, 0, _U32.pack(extra)))
            self._recv_window += extra

    def goaway(self, code: ErrorCode = ErrorCode.NO_ERROR, debug: bytes = b"") -> None:
        """Refuse new streams; the streams already opened may finish."""
        if self.closed:
            return
        self.going_away = True
        payload = _U32.pack(self.last_stream_id) + _U32.pack(code) + debug
        self._out.append(frame(FrameType.GOAWAY, 0, 0, payload))
        if code != ErrorCode.NO_ERROR:
            self.closed = True

    def ping(self, opaque: bytes) -> None:
        self._out.append(frame(FrameType.PING, 0, 0, opaque))

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # ----- receiving -----

    def receive(self, data: bytes) -> list[Event]:
        """Parse ``data`` (any split); raise ``H2ProtocolError`` if the client broke the
        protocol (a GOAWAY is then queued)."""
        if self.closed:
            return []
        buf = self._in
        buf += data
        events: list[Event] = []
        pos = 0
        if not self._preface_seen:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self._fail(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return events
            if bytes(buf[: len(PREFACE)]) != PREFACE:
                self._fail(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._preface_seen = True
            pos = len(PREFACE)
        end = len(buf)
        max_frame = self.settings.max_frame_size
        recv_bytes = 0
        try:
            while end - pos >= FRAME_HEADER:
                length = int.from_bytes(buf[pos : pos + 3], "big")
                if length > max_frame:
                    self._fail(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - pos < FRAME_HEADER + length:
                    break
                kind, flags = buf[pos + 3], buf[pos + 4]
                stream_id = _U32.unpack_from(buf, pos + 5)[0] & 0x7FFFFFFF
                start = pos + FRAME_HEADER
                payload = bytes(buf[start : start + length])
                pos = start + length
                if not self._settings_seen and kind != FrameType.SETTINGS:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS")
                if self._continuation is not None and kind != FrameType.CONTINUATION:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION")
                if kind == FrameType.DATA:
                    recv_bytes += length
                    self._on_data(stream_id, flags, payload, length, events)
                elif kind == FrameType.HEADERS:
                    self._on_headers(stream_id, flags, payload, events)
                elif kind == FrameType.CONTINUATION:
                    self._on_continuation(stream_id, flags, payload, events)
                elif kind == FrameType.SETTINGS:
                    self._on_settings(stream_id, flags, payload, events)
                elif kind == FrameType.WINDOW_UPDATE:
                    self._on_window_update(stream_id, payload, events)
                elif kind == FrameType.PING:
                    self._on_ping(stream_id, flags, payload, events)
                elif kind == FrameType.RST_STREAM:
                    self._on_rst_stream(stream_id, payload, events)
                elif kind == FrameType.GOAWAY:
                    self._on_goaway(stream_id, payload, events)
                elif kind == FrameType.PRIORITY:
                    if stream_id == 0:
                        self._fail(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
                    if length != 5:
                        self._reset(stream_id, ErrorCode.FRAME_SIZE_ERROR, events)
                elif kind == FrameType.PUSH_PROMISE:
                    self._fail(ErrorCode.PROTOCOL_ERROR, "a client cannot push")
                # Unknown frame types are ignored (RFC 9113 5.5).
        finally:
            del buf[:pos]
            if recv_bytes:
                # The connection window is given back at once: the gRPC layer reads promptly
                # and bounds each message; streams are held to their own windows.
                self._recv_window -= recv_bytes
                if self._recv_window < self.settings.connection_window // 2:
                    grant = self.settings.connection_window - self._recv_window
                    self._recv_window += grant
                    self._out.append(frame(FrameType.WINDOW_UPDATE, 0, 0, _U32.pack(grant)))
        return events

    def _fail(self, code: ErrorCode, message: str) -> None:
        self.goaway(code, message.encode()[:256])
        raise H2ProtocolError(code, message)

    def _strip_padding(self, flags: int, payload: bytes) -> bytes:
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            self._fail(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _on_data(
        self, stream_id: int, flags: int, payload: bytes, length: int, events: list[Event]
    ) -> None:
        if stream_id == 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        if length > self._recv_window:
            self._fail(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self.last_stream_id:
                self._fail(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            return  # a stream we closed or reset: late data, counted against the connection only
        if stream.remote_closed:
            self._reset(stream_id, ErrorCode.STREAM_CLOSED, events)
            return
        if length > stream.recv_window:
            self._reset(stream_id, ErrorCode.FLOW_CONTROL_ERROR, events)
            return
        stream.recv_window -= length
        # Padding counts against the window but is never consumed by the gRPC layer.
        data = self._strip_padding(flags, payload)
        stream.unacked += length - len(data)
        end = bool(flags & END_STREAM)
        if end:
            stream.remote_closed = True
        events.append(DataReceived(stream_id, data, end))
        if end:
            self._maybe_forget(stream)

    def _on_headers(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            block = block[5:]
        if flags & END_HEADERS:
            self._on_header_block(stream_id, flags, block, events)
        else:
            self._continuation = (stream_id, flags, bytearray(block))

    def _on_continuation(
        self, stream_id: int, flags: int, payload: bytes, events: list[Event]
    ) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            self._fail(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION")
        assert self._continuation is not None
        first_flags, block = self._continuation[1], self._continuation[2]
        block += payload
        if len(block) > self.settings.max_header_list_size * 2:
            self._fail(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            self._continuation = None
            self._on_header_block(stream_id, first_flags, bytes(block), events)

    def _on_header_block(
        self, stream_id: int, flags: int, block: bytes, events: list[Event]
    ) -> None:
        headers = self._decode(block)
        end = bool(flags & END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:
            # Trailers from the client: gRPC sends none, but they end the stream.
            if stream.remote_closed or not end:
                self._fail(ErrorCode.PROTOCOL_ERROR, "HEADERS on an open stream")
            stream.remote_closed = True
            events.append(DataReceived(stream_id, b"", True))
            self._maybe_forget(stream)
            return
        if stream_id % 2 == 0 or stream_id <= self.last_stream_id:
            self._fail(ErrorCode.PROTOCOL_ERROR, f"stream {stream_id} cannot be opened")
        self.last_stream_id = stream_id
        if headers is None:
            self._out.append(
                frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.PROTOCOL_ERROR))
            )
            return
        if self.going_away or len(self._streams) >= self.settings.max_concurrent_streams:
            self._out.append(
                frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.REFUSED_STREAM))
            )
            return
        stream = _Stream(stream_id, self._peer_initial_window, self.settings.initial_window)
        stream.remote_closed = end
        self._streams[stream_id] = stream
        events.append(RequestReceived(stream_id, headers, end))

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]] | None:
        """The block's fields (shared with the cache: read them, never change them); None when
        the list is over the limit. Decoded whatever happens to the stream afterwards: the
        table must follow the client's."""
        if block in self._decoded:
            return self._decoded[block]
        try:
            headers = self._decoder.decode(block)
        except HeaderDecodeError as exc:
            self._fail(ErrorCode.COMPRESSION_ERROR, f"header block: {exc}")
        # A client that indexed its fields sends the same few bytes for every call; such a block
        # leaves the table as it was, so its meaning holds until a block that changes the table.
        if _indexed_only(block):
            if len(self._decoded) >= _DECODED_CACHE:
                self._decoded.clear()
            self._decoded[block] = headers
        else:
            self._decoded.clear()
        return headers

    def _on_settings(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id != 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                self._fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        self._settings_seen = True
        opened = False
        for off in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, off)
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    self._fail(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        self._fail(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
                opened = opened or delta > 0
            elif key == Setting.MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= MAX_MAX_FRAME:
                    self._fail(ErrorCode.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
            elif key == Setting.ENABLE_PUSH and value > 1:
                self._fail(ErrorCode.PROTOCOL_ERROR, f"ENABLE_PUSH {value}")
            # HEADER_TABLE_SIZE: our blocks never use the dynamic table. The others only
            # bound what we would initiate.
        self._out.append(frame(FrameType.SETTINGS, ACK, 0))
        if opened:
            events.append(WindowOpened(0))

    def _on_window_update(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                self._fail(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                self._fail(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            events.append(WindowOpened(0))
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self.last_stream_id:
                self._fail(ErrorCode.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {stream_id}")
            return
        if increment == 0:
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR, events)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._reset(stream_id, ErrorCode.FLOW_CONTROL_ERROR, events)
            return
        events.append(WindowOpened(stream_id))

    def _on_ping(self, stream_id: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if stream_id != 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "PING length")
        if flags & ACK:
            events.append(PingAcked(payload))
        else:
            self._out.append(frame(FrameType.PING, ACK, 0, payload))
            events.append(PingReceived(payload))

    def _on_rst_stream(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length")
        if stream_id > self.last_stream_id:
            self._fail(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
        stream = self._streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        if stream is not None:
            code = _U32.unpack(payload)[0]
            events.append(StreamReset(stream_id, _code(code)))

    def _on_goaway(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id != 0:
            self._fail(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            self._fail(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY length")
        last = _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF
        code = _U32.unpack_from(payload, 4)[0]
        events.append(GoAwayReceived(_code(code), last, payload[8:]))

    # ----- sending -----

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """Response headers (or, with ``end_stream``, a trailers-only response)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return
        self._out.append(self._header_frames(stream_id, block, end_stream))
        if end_stream:
            self._close_local(stream)

    def send_data(self, stream_id: int, data: bytes) -> None:
        """Queue ``data``; it goes out as the windows allow (``data_to_send``)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or not data:
            return
        stream.pending.append(data)
        stream.pending_bytes += len(data)
        self._sending[stream_id] = None

    def send_trailers(self, stream_id: int, block: bytes) -> None:
        """End the stream with ``block`` once its queued data has gone."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return
        stream.trailers = block
        stream.local_closed = True
        self._sending[stream_id] = None

    def reset(self, stream_id: int, code: ErrorCode = ErrorCode.CANCEL) -> None:
        stream = self._streams.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        if stream is not None:
            self._out.append(frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(code)))

    def consumed(self, stream_id: int, n: int) -> None:
        """The gRPC layer took ``n`` bytes of the stream's data: let the client send more."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        stream.unacked += n
        if stream.unacked >= self.settings.initial_window // 4:
            grant, stream.unacked = stream.unacked, 0
            stream.recv_window += grant
            self._out.append(frame(FrameType.WINDOW_UPDATE, 0, stream_id, _U32.pack(grant)))

    def pending_bytes(self, stream_id: int) -> int:
        """DATA queued on the stream and not yet sent (for the writer's backpressure)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.pending_bytes

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def data_to_send(self) -> bytes:
        """Everything ready to write: control frames, headers, and DATA as windows allow."""
        if self._sending:
            self._flush_data()
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _flush_data(self) -> None:
        out = self._out
        max_frame = self._peer_max_frame
        done: list[int] = []
        for stream_id in self._sending:
            stream = self._streams.get(stream_id)
            if stream is None:
                done.append(stream_id)
                continue
            pending = stream.pending
            if pending and self._send_window <= 0:
                # The connection window is spent: the rest wait, in order, for WINDOW_UPDATE.
                break
            while pending and self._send_window > 0 and stream.send_window > 0:
                chunk = pending[0]
                room = min(self._send_window, stream.send_window, max_frame)
                if len(chunk) > room:
                    pending[0] = chunk[room:]
                    chunk = chunk[:room]
                else:
                    pending.popleft()
                n = len(chunk)
                out.append(frame(FrameType.DATA, 0, stream_id, chunk))
                self.stream_frames_sent += 1
                stream.pending_bytes -= n
                stream.send_window -= n
                self._send_window -= n
            if not pending:
                if stream.trailers is not None:
                    out.append(self._header_frames(stream_id, stream.trailers, True))
                    stream.trailers = None
                    self._close_local(stream)
                done.append(stream_id)
        for stream_id in done:
            self._sending.pop(stream_id, None)

    def _header_frames(self, stream_id: int, block: bytes, end_stream: bool) -> bytes:
        self.stream_frames_sent += 1
        limit = self._peer_max_frame
        flags = END_STREAM if end_stream else 0
        if len(block) <= limit:
            return frame(FrameType.HEADERS, flags | END_HEADERS, stream_id, block)
        parts = [block[i : i + limit] for i in range(0, len(block), limit)]
        frames = [frame(FrameType.HEADERS, flags, stream_id, parts[0])]
        frames += [frame(FrameType.CONTINUATION, 0, stream_id, p) for p in parts[1:-1]]
        frames.append(frame(FrameType.CONTINUATION, END_HEADERS, stream_id, parts[-1]))
        return b"".join(frames)

    def _close_local(self, stream: _Stream) -> None:
        stream.local_closed = True
        if not stream.remote_closed:
            # The answer is complete while the client may still be sending (an error before
            # it finished): tell it to stop, as grpc-go does.
            self._out.append(
                frame(FrameType.RST_STREAM, 0, stream.stream_id, _U32.pack(ErrorCode.NO_ERROR))
            )
            stream.remote_closed = True
        self._maybe_forget(stream)

    def _maybe_forget(self, stream: _Stream) -> None:
        if stream.remote_closed and stream.local_closed and stream.trailers is None:
            self._streams.pop(stream.stream_id, None)

    def _reset(self, stream_id: int, code: ErrorCode, events: list[Event]) -> None:
        if stream_id in self._streams:
            self.reset(stream_id, code)
            events.append(StreamReset(stream_id, code))
        else:
            self._out.append(frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(code)))


def _code(value: int) -> ErrorCode | int:
    try:
        return ErrorCode(value)
    except ValueError:
        return value  # unknown codes are allowed and mean INTERNAL_ERROR to us
