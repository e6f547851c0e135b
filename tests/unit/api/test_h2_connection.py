"""The HTTP/2 server connection: bytes a client would send in, frames a client would read out."""

from __future__ import annotations

import struct

import pytest
from hpack import Decoder, Encoder
from pyetcd.api.h2.connection import (
    PREFACE,
    DataReceived,
    ErrorCode,
    Event,
    FrameType,
    GoAwayReceived,
    H2Connection,
    H2ProtocolError,
    PingAcked,
    PingReceived,
    RequestReceived,
    Settings,
    StreamReset,
    WindowOpened,
    encode_headers,
    frame,
)

END_STREAM, END_HEADERS, PADDED, ACK = 0x1, 0x4, 0x8, 0x1
U32 = struct.Struct(">I")

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/etcdserverpb.KV/Put"),
    (b":authority", b"127.0.0.1"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


def settings(**values: int) -> bytes:
    ids = {"initial_window": 0x4, "max_frame": 0x5, "push": 0x2}
    payload = b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items())
    return frame(FrameType.SETTINGS, 0, 0, payload)


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of every frame in ``data``."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags = data[pos + 3], data[pos + 4]
        stream = U32.unpack_from(data, pos + 5)[0]
        out.append((kind, flags, stream, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


class Client:
    """Just enough of an HTTP/2 client to drive the connection."""

    def __init__(self, conn: H2Connection | None = None, **peer_settings: int) -> None:
        self.conn = conn or H2Connection()
        self.encoder = Encoder()
        self.conn.initiate()
        self.events = self.conn.receive(PREFACE + settings(**peer_settings))
        self.preface_out = frames(self.conn.data_to_send())

    def headers(
        self, stream: int, fields: list[tuple[bytes, bytes]] = REQUEST, end: bool = False
    ) -> list[Event]:
        flags = END_HEADERS | (END_STREAM if end else 0)
        return self.conn.receive(
            frame(FrameType.HEADERS, flags, stream, self.encoder.encode(fields))
        )

    def data(self, stream: int, payload: bytes, end: bool = True) -> list[Event]:
        return self.conn.receive(frame(FrameType.DATA, END_STREAM if end else 0, stream, payload))

    def out(self) -> list[tuple[int, int, int, bytes]]:
        return frames(self.conn.data_to_send())


def test_the_preface_is_answered_with_settings_a_wide_window_and_an_ack() -> None:
    c = Client()
    kinds = [(k, f) for k, f, _, _ in c.preface_out]
    assert kinds == [
        (FrameType.SETTINGS, 0),
        (FrameType.WINDOW_UPDATE, 0),
        (FrameType.SETTINGS, ACK),
    ]
    announced = dict(struct.iter_unpack(">HI", c.preface_out[0][3]))
    assert announced[0x4] == Settings().initial_window
    assert c.events == []


def test_a_unary_call_in_and_its_answer_out() -> None:
    c = Client()
    (opened,) = c.headers(1)
    assert opened == RequestReceived(1, REQUEST, False)
    assert c.data(1, b"\x00\x00\x00\x00\x02hi") == [
        DataReceived(1, b"\x00\x00\x00\x00\x02hi", True)
    ]
    c.conn.send_headers(
        1, encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
    )
    c.conn.send_data(1, b"\x00\x00\x00\x00\x01!")
    c.conn.send_trailers(1, encode_headers([(b"grpc-status", b"0")]))
    out = c.out()
    assert [(k, f, s) for k, f, s, _ in out] == [
        (FrameType.HEADERS, END_HEADERS, 1),
        (FrameType.DATA, 0, 1),
        (FrameType.HEADERS, END_HEADERS | END_STREAM, 1),
    ]
    decoder = Decoder()
    assert decoder.decode(out[0][3], raw=True) == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
    ]
    assert decoder.decode(out[2][3], raw=True) == [(b"grpc-status", b"0")]
    assert not c.conn.is_open(1)


def test_input_split_at_every_byte_gives_the_same_events() -> None:
    whole = Client()
    expected = whole.headers(1) + whole.data(1, b"abc")
    split = Client()
    raw = frame(FrameType.HEADERS, END_HEADERS, 1, split.encoder.encode(REQUEST))
    raw += frame(FrameType.DATA, END_STREAM, 1, b"abc")
    events = []
    for i in range(len(raw)):
        events += split.conn.receive(raw[i : i + 1])
    assert events == expected


def test_a_header_block_may_continue_in_continuation_frames() -> None:
    c = Client()
    block = c.encoder.encode(REQUEST)
    assert c.conn.receive(frame(FrameType.HEADERS, 0, 1, block[:5])) == []
    assert c.conn.receive(frame(FrameType.CONTINUATION, 0, 1, block[5:9])) == []
    (opened,) = c.conn.receive(frame(FrameType.CONTINUATION, END_HEADERS, 1, block[9:]))
    assert opened == RequestReceived(1, REQUEST, False)


def test_another_frame_inside_a_header_block_is_a_connection_error() -> None:
    c = Client()
    c.conn.receive(frame(FrameType.HEADERS, 0, 1, c.encoder.encode(REQUEST)[:3]))
    with pytest.raises(H2ProtocolError) as err:
        c.conn.receive(frame(FrameType.PING, 0, 0, b"12345678"))
    assert err.value.code == ErrorCode.PROTOCOL_ERROR
    (goaway,) = [f for f in c.out() if f[0] == FrameType.GOAWAY]
    assert U32.unpack_from(goaway[3], 4)[0] == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10, ErrorCode.PROTOCOL_ERROR),
        (PREFACE + frame(FrameType.PING, 0, 0, b"12345678"), ErrorCode.PROTOCOL_ERROR),
    ],
    ids=["http1", "ping-before-settings"],
)
def test_a_connection_that_does_not_start_as_http2_is_refused(raw: bytes, code: ErrorCode) -> None:
    conn = H2Connection()
    with pytest.raises(H2ProtocolError) as err:
        conn.receive(raw)
    assert err.value.code == code
    assert conn.closed


@pytest.mark.parametrize("stream", [2, 1], ids=["even", "reused"])
def test_a_stream_the_client_cannot_open_is_a_connection_error(stream: int) -> None:
    c = Client()
    c.headers(3, end=True)
    with pytest.raises(H2ProtocolError):
        c.headers(stream)


def test_flow_control_holds_data_and_the_trailers_behind_it() -> None:
    c = Client(initial_window=10, max_frame=16384)
    c.headers(1, end=True)
    c.out()
    c.conn.send_data(1, b"x" * 25)
    c.conn.send_trailers(1, encode_headers([(b"grpc-status", b"0")]))
    assert [(k, len(p)) for k, _, _, p in c.out()] == [(FrameType.DATA, 10)]
    assert c.conn.pending_bytes(1) == 15
    events = c.conn.receive(frame(FrameType.WINDOW_UPDATE, 0, 1, U32.pack(100)))
    assert events == [WindowOpened(1)]
    out = c.out()
    assert [(k, len(p)) for k, _, _, p in out[:1]] == [(FrameType.DATA, 15)]
    assert out[1][0] == FrameType.HEADERS and out[1][1] & END_STREAM
    assert not c.conn.is_open(1)


def test_the_connection_window_is_shared_by_the_streams() -> None:
    c = Client()
    for stream in (1, 3):
        c.headers(stream, end=True)
    c.out()
    c.conn.send_data(1, b"a" * 40000)
    c.conn.send_data(3, b"b" * 40000)
    sent = sum(len(p) for k, _, _, p in c.out() if k == FrameType.DATA)
    assert sent == 65535  # the client's default connection window, whatever the streams'
    c.conn.receive(frame(FrameType.WINDOW_UPDATE, 0, 0, U32.pack(20000)))
    assert sum(len(p) for k, _, _, p in c.out() if k == FrameType.DATA) == 14465


def test_data_is_cut_to_the_clients_max_frame_size() -> None:
    c = Client(initial_window=1 << 20)
    c.conn.receive(frame(FrameType.WINDOW_UPDATE, 0, 0, U32.pack(1 << 20)))
    c.headers(1, end=True)
    c.out()
    c.conn.send_data(1, b"z" * 40000)
    assert [len(p) for k, _, _, p in c.out() if k == FrameType.DATA] == [16384, 16384, 7232]


def test_long_trailers_go_out_in_continuation_frames() -> None:
    c = Client()
    c.headers(1, end=True)
    c.out()
    block = encode_headers([(b"grpc-status", b"2"), (b"grpc-message", b"m" * 40000)])
    c.conn.send_trailers(1, block)
    out = c.out()
    assert [(k, f) for k, f, _, _ in out] == [
        (FrameType.HEADERS, END_STREAM),
        (FrameType.CONTINUATION, 0),
        (FrameType.CONTINUATION, END_HEADERS),
    ]
    assert b"".join(p for _, _, _, p in out) == block


def test_a_ping_is_answered_and_an_answer_to_ours_reported() -> None:
    c = Client()
    assert c.conn.receive(frame(FrameType.PING, 0, 0, b"abcdefgh")) == [PingReceived(b"abcdefgh")]
    assert c.out() == [(FrameType.PING, ACK, 0, b"abcdefgh")]
    c.conn.ping(b"12345678")
    assert c.out() == [(FrameType.PING, 0, 0, b"12345678")]
    assert c.conn.receive(frame(FrameType.PING, ACK, 0, b"12345678")) == [PingAcked(b"12345678")]


def test_a_client_reset_ends_the_stream_and_what_was_queued() -> None:
    c = Client(initial_window=0)
    c.headers(1, end=True)
    c.conn.send_data(1, b"held")
    events = c.conn.receive(frame(FrameType.RST_STREAM, 0, 1, U32.pack(ErrorCode.CANCEL)))
    assert events == [StreamReset(1, ErrorCode.CANCEL)]
    assert not c.conn.is_open(1)
    c.conn.send_trailers(1, b"")
    assert c.out() == []  # nothing of the stream goes out


def test_an_answer_before_the_request_ended_tells_the_client_to_stop_sending() -> None:
    c = Client()
    c.headers(1)
    c.out()
    c.conn.send_headers(
        1, encode_headers([(b":status", b"200"), (b"grpc-status", b"8")]), end_stream=True
    )
    out = c.out()
    assert [(k, s) for k, _, s, _ in out] == [(FrameType.HEADERS, 1), (FrameType.RST_STREAM, 1)]
    assert U32.unpack(out[1][3])[0] == ErrorCode.NO_ERROR
    assert c.data(1, b"late") == []  # late data is dropped, not an error


def test_data_beyond_the_connection_window_is_a_flow_control_error() -> None:
    conn = H2Connection(
        Settings(connection_window=65535, initial_window=1 << 20, max_frame_size=1 << 20)
    )
    c = Client(conn)
    c.headers(1)
    with pytest.raises(H2ProtocolError) as err:
        c.data(1, b"x" * 70000)
    assert err.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_data_beyond_a_streams_window_resets_only_that_stream() -> None:
    conn = H2Connection(Settings(initial_window=100))
    c = Client(conn)
    c.headers(1)
    c.headers(3)
    assert c.data(1, b"x" * 101) == [StreamReset(1, ErrorCode.FLOW_CONTROL_ERROR)]
    assert c.data(3, b"y" * 100) == [DataReceived(3, b"y" * 100, True)]


def test_a_streams_window_is_given_back_as_the_grpc_layer_consumes() -> None:
    c = Client(H2Connection(Settings(initial_window=1000)))
    c.out()
    c.headers(1)
    c.data(1, b"x" * 1000, end=False)
    assert c.out() == []  # nothing consumed yet: the client must wait
    c.conn.consumed(1, 1000)
    assert c.out() == [(FrameType.WINDOW_UPDATE, 0, 1, U32.pack(1000))]
    assert c.data(1, b"y" * 1000) == [DataReceived(1, b"y" * 1000, True)]


def test_the_connection_window_is_given_back_as_data_arrives() -> None:
    c = Client(
        H2Connection(Settings(initial_window=70000, connection_window=100000, max_frame_size=70000))
    )
    c.out()
    c.headers(1)
    c.data(1, b"x" * 40000, end=False)
    assert c.out() == []  # still above half the window
    c.data(1, b"x" * 20000, end=False)
    assert c.out() == [(FrameType.WINDOW_UPDATE, 0, 0, U32.pack(60000))]


def test_streams_beyond_the_limit_are_refused_and_the_connection_lives() -> None:
    c = Client(H2Connection(Settings(max_concurrent_streams=1)))
    assert len(c.headers(1)) == 1
    assert c.headers(3) == []
    assert c.out()[-1] == (FrameType.RST_STREAM, 0, 3, U32.pack(ErrorCode.REFUSED_STREAM))
    assert len(c.headers(5, end=True)) == 0  # still one open


def test_after_goaway_new_streams_are_refused() -> None:
    c = Client()
    c.headers(1)
    c.conn.goaway()
    assert c.headers(3) == []
    out = c.out()
    assert out[0][0] == FrameType.GOAWAY and U32.unpack_from(out[0][3])[0] == 1
    assert out[1] == (FrameType.RST_STREAM, 0, 3, U32.pack(ErrorCode.REFUSED_STREAM))
    assert c.data(1, b"still") == [DataReceived(1, b"still", True)]


def test_padding_is_stripped() -> None:
    c = Client()
    block = c.encoder.encode(REQUEST)
    (opened,) = c.conn.receive(
        frame(FrameType.HEADERS, END_HEADERS | PADDED, 1, b"\x03" + block + b"\x00" * 3)
    )
    assert opened == RequestReceived(1, REQUEST, False)
    assert c.conn.receive(frame(FrameType.DATA, END_STREAM | PADDED, 1, b"\x02ab\x00\x00")) == [
        DataReceived(1, b"ab", True)
    ]


def test_a_client_goaway_is_reported() -> None:
    c = Client()
    payload = U32.pack(7) + U32.pack(ErrorCode.NO_ERROR) + b"bye"
    assert c.conn.receive(frame(FrameType.GOAWAY, 0, 0, payload)) == [
        GoAwayReceived(ErrorCode.NO_ERROR, 7, b"bye")
    ]


def test_a_bad_settings_value_is_a_connection_error() -> None:
    c = Client()
    with pytest.raises(H2ProtocolError) as err:
        c.conn.receive(settings(max_frame=100))
    assert err.value.code == ErrorCode.PROTOCOL_ERROR


def test_a_larger_initial_window_reopens_every_stream() -> None:
    c = Client(initial_window=5)
    c.headers(1, end=True)
    c.conn.send_data(1, b"x" * 20)
    assert sum(len(p) for k, _, _, p in c.out() if k == FrameType.DATA) == 5
    assert c.conn.receive(settings(initial_window=20)) == [WindowOpened(0)]
    assert sum(len(p) for k, _, _, p in c.out() if k == FrameType.DATA) == 15
