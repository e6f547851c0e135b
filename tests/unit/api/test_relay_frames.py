"""`pyetcd.api.relay.frames`: what a front-end writes, the member reads back unchanged; what does
not parse is a broken invariant (both ends are ours)."""

from __future__ import annotations

import pytest
from pyetcd.api.relay import frames
from pyetcd.panic import is_invariant


def test_open_round_trips_text_and_binary_metadata() -> None:
    o = frames.Open(
        path=b"/etcdserverpb.KV/Range",
        peer="ipv4:127.0.0.1:5555",
        timeout=4.5,
        metadata=(("token", "abc.def"), ("trace-bin", b"\x00\xff"), ("empty", "")),
    )
    assert frames.decode_open(frames.encode_open(o)) == o
    no_deadline = frames.Open(b"/x/y", "", None, ())
    assert frames.decode_open(frames.encode_open(no_deadline)) == no_deadline


def test_a_whole_unary_request_travels_in_one_frame() -> None:
    o = frames.Open(b"/etcdserverpb.KV/Put", "ipv4:10.0.0.1:1", 5.0, (("token", "t"),))
    assert frames.decode_unary(frames.unary(o, b"\x0a\x01k")) == (o, b"\x0a\x01k")
    assert frames.decode_unary(frames.unary(o, b"")) == (o, b"")


def test_status_and_credit_round_trip() -> None:
    assert frames.decode_status(frames.status(14, "the member is stopping é")) == (
        14,
        "the member is stopping é",
    )
    assert frames.decode_credit(frames.credit(123456)) == 123456


def test_the_reader_reassembles_frames_split_anywhere() -> None:
    stream = b"".join(
        [
            frames.frame(frames.OPEN, 1, frames.encode_open(frames.Open(b"/a/b", "p", None, ()))),
            frames.frame(frames.MESSAGE, 1, b"x" * 70000),
            frames.frame(frames.HALF_CLOSE, 1),
            frames.frame(frames.MESSAGE, 2, b""),
        ]
    )
    for cut in (1, 7, 9, 100, 65536):
        reader = frames.FrameReader()
        got = []
        for i in range(0, len(stream), cut):
            got.extend(reader.feed(stream[i : i + cut]))
        assert [(k, c, len(p)) for k, c, p in got] == [
            (frames.OPEN, 1, len(got[0][2])),
            (frames.MESSAGE, 1, 70000),
            (frames.HALF_CLOSE, 1, 0),
            (frames.MESSAGE, 2, 0),
        ]


@pytest.mark.parametrize(
    "feed",
    [
        lambda: frames.FrameReader().feed(b"\x00\x00\x00\x00\x63\x00\x00\x00\x01"),
        lambda: frames.decode_open(b"\x00\x00\x00\x09/a"),
        lambda: frames.decode_open(
            frames.encode_open(frames.Open(b"/a/b", "p", None, ())) + b"extra"
        ),
        lambda: frames.decode_status(b"\x01"),
        lambda: frames.decode_credit(b"\x00\x01"),
    ],
)
def test_what_does_not_parse_is_a_broken_invariant(feed: object) -> None:
    with pytest.raises(frames.RelayProtocolError) as exc:
        feed()  # type: ignore[operator]
    assert is_invariant(exc.value)


def test_the_codec_remembers_heads_but_reads_peer_and_deadline_every_time() -> None:
    sender, receiver = frames.OpenCodec(), frames.OpenCodec()
    calls = [
        frames.Open(b"/etcdserverpb.KV/Put", f"ipv4:127.0.0.1:{port}", timeout, meta)
        for port, timeout, meta in [
            (1, 1.0, (("token", "a"),)),
            (2, None, (("token", "a"),)),
            (3, 2.5, (("token", "b"),)),
            (4, 0.0, ()),
        ]
    ]
    for _ in range(2):  # the second round decodes from the remembered heads
        assert [receiver.decode(sender.encode(o)) for o in calls] == calls
