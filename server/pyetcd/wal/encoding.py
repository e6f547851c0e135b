"""Byte-exact encoding of WAL records, as etcd's gogoproto code writes them.

A frame is an 8-byte little-endian length, the `walpb.Record` bytes, and zero padding to an
8-byte boundary; when padding is present the top byte of the length is `0x80 | pad`.

The record envelope, `raftpb.HardState` and `walpb.Snapshot` are encoded by hand rather than
through protobuf objects: gogoproto's `nullable=false` fields are always written, even when
zero, which proto2 presence in Python would not guarantee, and the hand encoding is also the
fastest path for the group-commit loop in `encode_entries`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2

METADATA_TYPE = 1
ENTRY_TYPE = 2
STATE_TYPE = 3
CRC_TYPE = 4
SNAPSHOT_TYPE = 5

RECORD_TYPE_NAMES = {
    METADATA_TYPE: "metadata",
    ENTRY_TYPE: "entry",
    STATE_TYPE: "state",
    CRC_TYPE: "crc",
    SNAPSHOT_TYPE: "snapshot",
}

FRAME_SIZE_BYTES = 8

_PACK_U64 = struct.Struct("<Q").pack
_PAD_FLAGS = (0, *((0x80 | pad) << 56 for pad in range(1, 8)))
_ZEROS = tuple(bytes(pad) for pad in range(8))
_SMALL_VARINTS = tuple(bytes((i,)) for i in range(0x80))
# Record prefixes "field 1 (type) = t, then the tag of field 2 (crc)".
_TYPE_PREFIX = {t: bytes((0x08, t, 0x10)) for t in RECORD_TYPE_NAMES}
_DATA_TAG = b"\x1a"
_ENTRY_PREFIX = _TYPE_PREFIX[ENTRY_TYPE]


def uvarint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame_header(record_len: int) -> tuple[bytes, bytes]:
    """The length field for a record of `record_len` bytes, and the padding that follows it."""
    pad = -record_len & 7
    return _PACK_U64(record_len | _PAD_FLAGS[pad]), _ZEROS[pad]


def decode_frame_size(length_field: int) -> tuple[int, int]:
    """`(record bytes, padding bytes)` of an unsigned 64-bit length field."""
    record_len = length_field & 0x00FF_FFFF_FFFF_FFFF
    pad = (length_field >> 56) & 0x7 if length_field >> 63 else 0
    return record_len, pad


def append_record(parts: list[bytes], rec_type: int, crc: int, data: bytes) -> int:
    """Append one framed record to `parts`; returns the number of bytes appended."""
    crc_bytes = uvarint(crc)
    if data:
        len_bytes = uvarint(len(data))
        record_len = 4 + len(crc_bytes) + len(len_bytes) + len(data)
        header, padding = frame_header(record_len)
        parts += (header, _TYPE_PREFIX[rec_type], crc_bytes, _DATA_TAG, len_bytes, data, padding)
    else:
        # gogoproto leaves a nil Data out entirely (the crc record has none).
        record_len = 3 + len(crc_bytes)
        header, padding = frame_header(record_len)
        parts += (header, _TYPE_PREFIX[rec_type], crc_bytes, padding)
    return FRAME_SIZE_BYTES + record_len + len(padding)


def encode_entry(entry: raft_pb2.Entry) -> bytes:
    """`raftpb.Entry` bytes with Type, Term and Index always present, as gogoproto writes them."""
    data = entry.SerializeToString()
    if data[:1] != b"\x08":
        # Type left at its default (EntryNormal) is absent in proto2 but always written by
        # gogoproto; it is field 1 so it goes first.
        data = b"\x08\x00" + data
    return data


def encode_entries(
    parts: list[bytes], entries: Sequence[raft_pb2.Entry], crc: int
) -> tuple[int, int]:
    """Append entry records to `parts`; returns `(new running crc, bytes appended)`.

    This is the group-commit hot loop: everything is local, and the frame is assembled from
    cached pieces rather than a Record object (about 2 µs per 200-byte entry).
    """
    total = 0
    update = crc32c.crc32c
    small = _SMALL_VARINTS
    pad_flags = _PAD_FLAGS
    zeros = _ZEROS
    pack = _PACK_U64
    for entry in entries:
        data = entry.SerializeToString()
        if data[:1] != b"\x08":
            data = b"\x08\x00" + data
        crc = update(data, crc)
        if crc >= 0x10000000:
            # 15 of 16 CRCs need all five varint bytes: build the whole record head
            # (type, crc, data tag) in one bytes() call.
            head = bytes(
                (
                    0x08,
                    ENTRY_TYPE,
                    0x10,
                    (crc & 0x7F) | 0x80,
                    ((crc >> 7) & 0x7F) | 0x80,
                    ((crc >> 14) & 0x7F) | 0x80,
                    ((crc >> 21) & 0x7F) | 0x80,
                    crc >> 28,
                    0x1A,
                )
            )
        else:
            head = _ENTRY_PREFIX + uvarint(crc) + _DATA_TAG
        n = len(data)
        len_bytes = small[n] if n < 0x80 else uvarint(n)
        record_len = len(head) + len(len_bytes) + n
        pad = -record_len & 7
        parts += (pack(record_len | pad_flags[pad]), head, len_bytes, data, zeros[pad])
        total += FRAME_SIZE_BYTES + record_len + pad
    return crc, total


def encode_hard_state(term: int, vote: int, commit: int) -> bytes:
    """`raftpb.HardState` with all three fields present (gogoproto nullable=false)."""
    return b"\x08" + uvarint(term) + b"\x10" + uvarint(vote) + b"\x18" + uvarint(commit)


def encode_wal_snapshot(snap: record_pb2.Snapshot) -> bytes:
    """`walpb.Snapshot`: index and term always present, conf_state only when set."""
    out = b"\x08" + uvarint(snap.index) + b"\x10" + uvarint(snap.term)
    if snap.HasField("conf_state"):
        conf = snap.conf_state.SerializeToString()
        out += b"\x1a" + uvarint(len(conf)) + conf
    return out


def encode_record_frame(rec_type: int, crc: int, data: bytes) -> bytes:
    """One complete frame (used by tests and tools; the write path uses `append_record`)."""
    parts: list[bytes] = []
    append_record(parts, rec_type, crc, data)
    return b"".join(parts)
