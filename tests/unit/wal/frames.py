"""An independent, minimal WAL frame reader for tests: it lets the tests compute which
records must survive a torn write without trusting the code under test."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyetcd.proto.walpb import record_pb2


@dataclass(frozen=True)
class Frame:
    offset: int  # start of the 8-byte length field
    end: int  # end of the padding
    record: record_pb2.Record


def parse_frames(buf: bytes) -> list[Frame]:
    """All frames from the start of `buf` up to the first zero length field."""
    frames = []
    off = 0
    while off + 8 <= len(buf):
        (length,) = struct.unpack_from("<Q", buf, off)
        if length == 0:
            break
        rec_len = length & ((1 << 56) - 1)
        pad = (length >> 56) & 7 if length >> 63 else 0
        assert (rec_len + pad) % 8 == 0
        rec = record_pb2.Record.FromString(buf[off + 8 : off + 8 + rec_len])
        frames.append(Frame(off, off + 8 + rec_len + pad, rec))
        off += 8 + rec_len + pad
    return frames
