"""Record bytes match what etcd writes (reference §4.2-4.4)."""

from __future__ import annotations

import os
from pathlib import Path

import crc32c
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.wal import WAL
from pyetcd.wal.encoding import (
    ENTRY_TYPE,
    decode_frame_size,
    encode_entries,
    encode_entry,
    encode_hard_state,
    encode_record_frame,
    encode_wal_snapshot,
)

# etcd's server/storage/wal/testdata/TestNew.wal: WAL.Create(dir, []byte("somedata")).
TEST_NEW_WAL = bytes.fromhex(
    "0400000000000084"
    "08041000"
    "00000000"  # crc record {type 4, crc 0}, pad 4
    "1200000000000086"
    "08011085d4fda0071a08" + b"somedata".hex() + "000000000000"
    "0e00000000000082"
    "08051080db81c1011a0408001000"
    "0000"  # snapshot {0, 0}, pad 2
)


def test_create_writes_etcd_test_new_wal_byte_for_byte(tmp_path: Path) -> None:
    waldir = tmp_path / "member" / "wal"
    wal = WAL.create(str(waldir), b"somedata")
    wal.close()
    assert len(TEST_NEW_WAL) == 72
    names = os.listdir(waldir)
    assert names == ["0000000000000000-0000000000000000.wal"]
    raw = (waldir / names[0]).read_bytes()
    assert raw[:72] == TEST_NEW_WAL
    # The rest is the zero-filled preallocation (64 MB segment).
    assert len(raw) == 64 * 1000 * 1000
    assert raw.count(0, 72) == len(raw) - 72
    assert not (tmp_path / "member" / "wal.tmp").exists()


def test_crc_values_of_the_golden_file() -> None:
    assert crc32c.crc32c(b"somedata", 0) == 1948215813
    assert crc32c.crc32c(b"\x08\x00\x10\x00", 1948215813) == 404778368


def test_frame_length_field_carries_padding_flag() -> None:
    frame = encode_record_frame(ENTRY_TYPE, 7, b"abc")
    assert len(frame) % 8 == 0
    length = int.from_bytes(frame[:8], "little")
    rec_len, pad = decode_frame_size(length)
    assert rec_len + pad + 8 == len(frame)
    assert frame[7] == 0x80 | pad
    assert record_pb2.Record.FromString(frame[8 : 8 + rec_len]) == record_pb2.Record(
        type=ENTRY_TYPE, crc=7, data=b"abc"
    )


def test_unpadded_frame_has_plain_length() -> None:
    # type(2) + crc(2) + data tag/len(2) + 2 bytes = 8 bytes: no padding, top byte 0.
    frame = encode_record_frame(ENTRY_TYPE, 1, b"ab")
    assert frame[:8] == (8).to_bytes(8, "little")
    assert len(frame) == 16


def test_zero_fields_are_always_encoded_like_gogoproto() -> None:
    assert encode_hard_state(0, 0, 0) == b"\x08\x00\x10\x00\x18\x00"
    assert encode_wal_snapshot(record_pb2.Snapshot()) == b"\x08\x00\x10\x00"
    # Type EntryNormal (0) is written even when left at its default.
    entry = raft_pb2.Entry(Term=1, Index=2, Data=b"x")
    assert encode_entry(entry) == b"\x08\x00\x10\x01\x18\x02\x22\x01x"
    explicit = raft_pb2.Entry(Type=raft_pb2.EntryConfChange, Term=1, Index=2)
    assert encode_entry(explicit) == b"\x08\x01\x10\x01\x18\x02"


def test_snapshot_record_keeps_conf_state() -> None:
    snap = record_pb2.Snapshot(index=5, term=2, conf_state=raft_pb2.ConfState(voters=[1, 2]))
    decoded = record_pb2.Snapshot.FromString(encode_wal_snapshot(snap))
    assert decoded == snap


def test_batch_encoding_equals_record_by_record_encoding() -> None:
    entries = [
        raft_pb2.Entry(Term=3, Index=i, Data=bytes([i % 256]) * (i % 300)) for i in range(1, 400)
    ]
    parts: list[bytes] = []
    crc, size = encode_entries(parts, entries, 12345)
    batch = b"".join(parts)
    expected = []
    running = 12345
    short_crcs = 0
    for e in entries:
        data = encode_entry(e)
        running = crc32c.crc32c(data, running)
        short_crcs += running < 1 << 28
        expected.append(encode_record_frame(ENTRY_TYPE, running, data))
    assert batch == b"".join(expected)
    assert (crc, size) == (running, len(batch))
    # Both varint paths of the hot loop (5-byte CRC and shorter) were exercised.
    assert 0 < short_crcs < len(entries)
