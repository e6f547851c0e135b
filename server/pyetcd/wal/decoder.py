"""Reading framed WAL records across segment files, with CRC chaining and torn-tail detection.

The decoder tells a torn tail (the last write before a crash only partly reached the disk)
from corruption. A record that fails to decode or fails its CRC is torn only if it is in the
last segment, and either runs past the end of the file or has a 512-byte sector of its data
entirely zero (etcd's rule: sectors are written atomically, so a torn write leaves whole
sectors unwritten, and unwritten preallocated sectors read as zeros); and no well-formed record
follows it (a real tail has nothing after it; data after a bad record means the bad record is
damage in the middle of the log). Anything else raises `WALCorruptError`.
"""

from __future__ import annotations

import struct

import crc32c
from google.protobuf.message import DecodeError

from pyetcd.proto.walpb import record_pb2
from pyetcd.wal.encoding import (
    CRC_TYPE,
    FRAME_SIZE_BYTES,
    RECORD_TYPE_NAMES,
    decode_frame_size,
)
from pyetcd.wal.errors import WALCorruptError

SECTOR_SIZE = 512

_UNPACK_U64 = struct.Struct("<Q").unpack_from
_ZERO_SCAN_CHUNK = 1 << 16
_VALID_TOP_BYTES = frozenset([0, *range(0x81, 0x88)])


def _is_zero(buf: bytes, start: int, end: int) -> bool:
    # bytes.count runs in C; a byte-by-byte Python loop over a 64 MB tail would take seconds.
    return buf.count(0, start, end) == end - start


def _next_nonzero(buf: bytes, start: int) -> int:
    """Offset of the first non-zero byte at or after `start`, or len(buf)."""
    size = len(buf)
    pos = start
    while pos < size:
        end = min(pos + _ZERO_SCAN_CHUNK, size)
        if not _is_zero(buf, pos, end):
            chunk = buf[pos:end]
            return pos + len(chunk) - len(chunk.lstrip(b"\x00"))
        pos = end
    return size


def _has_zero_sector(buf: bytes, start: int, end: int) -> bool:
    """Whether a chunk of [start, end), split on 512-byte file sector boundaries, is all zero."""
    pos = start
    while pos < end:
        chunk_end = min((pos // SECTOR_SIZE + 1) * SECTOR_SIZE, end)
        if _is_zero(buf, pos, chunk_end):
            return True
        pos = chunk_end
    return False


def _frame_at(buf: bytes, pos: int) -> bool:
    """Whether a plausible, decodable record frame starts at `pos`."""
    size = len(buf)
    if pos + FRAME_SIZE_BYTES > size:
        return False
    length_field = _UNPACK_U64(buf, pos)[0]
    if length_field == 0 or (length_field >> 56) not in _VALID_TOP_BYTES:
        return False
    record_len, pad = decode_frame_size(length_field)
    if (record_len + pad) % 8 or pos + FRAME_SIZE_BYTES + record_len + pad > size:
        return False
    try:
        rec = record_pb2.Record.FromString(buf[pos + 8 : pos + 8 + record_len])
    except DecodeError:
        return False
    return rec.type in RECORD_TYPE_NAMES


def find_frame_after(buf: bytes, start: int) -> int | None:
    """The offset of the first well-formed record frame at an 8-aligned offset >= `start`."""
    pos = (start + 7) & ~7
    size = len(buf)
    while pos + FRAME_SIZE_BYTES <= size:
        nonzero = _next_nonzero(buf, pos)
        if nonzero >= size:
            return None
        # Frames start on 8-byte boundaries and a frame's length field is never all zero.
        pos = max(pos, nonzero & ~7)
        if _frame_at(buf, pos):
            return pos
        pos += 8
    return None


class Decoder:
    """Yields `(type, crc, data)` of each record of consecutive segment files.

    `crc` is the running CRC-32C of all record data since the last reset; readers reset it
    with `update_crc` when they meet a `crc` record at the start of a segment.
    """

    def __init__(self, paths: list[str], crc: int = 0) -> None:
        self._paths = paths
        self._index = 0
        self._buf = self._read(0) if paths else b""
        self._off = 0
        self.crc = crc
        # Where the last returned record starts (for error messages of the caller).
        self.record_path = paths[0] if paths else ""
        self.record_offset = 0
        # Set when the last segment ends in a torn record: why, and the offset it starts at.
        self.torn_reason: str | None = None
        # Set when non-zero bytes follow the end of the data in the last segment.
        self.dirty_tail = False

    def _read(self, i: int) -> bytes:
        with open(self._paths[i], "rb") as f:
            return f.read()

    @property
    def path(self) -> str:
        """The segment being read."""
        return self._paths[self._index]

    @property
    def offset(self) -> int:
        """End of the last valid record in the current segment (where appends continue)."""
        return self._off

    @property
    def in_last_segment(self) -> bool:
        return self._index == len(self._paths) - 1

    def update_crc(self, crc: int) -> None:
        self.crc = crc

    def next(self) -> tuple[int, int, bytes] | None:
        """The next record, or None at the end of the log (clean or torn)."""
        while True:
            buf = self._buf
            off = self._off
            size = len(buf)
            if off + FRAME_SIZE_BYTES > size or _UNPACK_U64(buf, off)[0] == 0:
                # A zero length field (preallocated space) or the end of the file: the end of
                # this segment's data.
                if off + FRAME_SIZE_BYTES > size and not _is_zero(buf, off, size):
                    self._bad(off, f"partial length field ({size - off} bytes)", None)
                    return None
                if self.in_last_segment:
                    self._check_after_end(off)
                    return None
                self._index += 1
                self._buf = b""  # drop the previous segment before reading the next one
                self._buf = self._read(self._index)
                self._off = 0
                continue

            record_len, pad = decode_frame_size(_UNPACK_U64(buf, off)[0])
            start = off + FRAME_SIZE_BYTES
            end = start + record_len + pad
            if end > size:
                self._bad(
                    off,
                    f"record of {record_len} bytes runs past the end of the file ({size} bytes)",
                    None,
                )
                return None
            try:
                rec = record_pb2.Record.FromString(buf[start : start + record_len])
            except DecodeError as exc:
                self._bad(off, f"record does not decode ({exc})", record_len)
                return None
            rec_type = rec.type
            data = rec.data
            if rec_type != CRC_TYPE:
                # crc records carry the previous segment's CRC and cover no data.
                crc = crc32c.crc32c(data, self.crc)
                if crc != rec.crc:
                    self._bad(
                        off,
                        f"crc mismatch: {RECORD_TYPE_NAMES.get(rec_type, rec_type)} record "
                        f"stores {rec.crc:#010x}, data gives {crc:#010x}",
                        record_len,
                    )
                    return None
                self.crc = crc
            self.record_path = self._paths[self._index]
            self.record_offset = off
            self._off = end
            return rec_type, rec.crc, data

    def _bad(self, off: int, reason: str, record_len: int | None) -> None:
        """Classify a bad record at `off`: torn tail (returns None) or corruption (raises).

        `record_len` is None when the frame runs past the end of the file.
        """
        path = self._paths[self._index]
        if not self.in_last_segment:
            raise WALCorruptError(path, off, reason)
        buf = self._buf
        start = off + FRAME_SIZE_BYTES
        if record_len is None:
            scan_from = start
        else:
            # Padding is excluded: it is zero by design, so it says nothing about tearing.
            if not _has_zero_sector(buf, start, start + record_len):
                raise WALCorruptError(
                    path, off, f"{reason}; not a torn write (no zeroed sector in the record)"
                )
            scan_from = start + record_len
        following = find_frame_after(buf, scan_from)
        if following is not None:
            raise WALCorruptError(
                path, off, f"{reason}; a well-formed record follows at offset {following}"
            )
        self.torn_reason = f"{path} at offset {off}: {reason}"
        self.dirty_tail = True

    def _check_after_end(self, off: int) -> None:
        """At the end of the data of the last segment: data after it means damage."""
        buf = self._buf
        if _is_zero(buf, off, len(buf)):
            return
        following = find_frame_after(buf, off + FRAME_SIZE_BYTES)
        if following is not None:
            raise WALCorruptError(
                self._paths[self._index],
                off,
                f"zero length field, but a well-formed record follows at offset {following}",
            )
        # Stray bytes of a torn write beyond the end: the writer must zero them, or a later
        # append that overwrites only part of them would leave records that fail their CRC.
        self.dirty_tail = True
