"""Torn tails are cut off and the log continues; corruption anywhere else is an error.

Expected survivors are computed with the independent frame reader in `frames.py` from the
pristine bytes, never from the code under test.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.wal import WAL, WALCorruptError
from pyetcd.wal.encoding import ENTRY_TYPE, STATE_TYPE

from .frames import Frame, parse_frames

SEGMENT = 16384
SECTOR = 512
SEG0 = "0000000000000000-0000000000000000.wal"


def entry(index: int, size: int) -> raft_pb2.Entry:
    return raft_pb2.Entry(
        Type=raft_pb2.EntryNormal, Term=1, Index=index, Data=bytes([index % 250 + 1]) * size
    )


@dataclass
class Log:
    waldir: Path
    path: Path
    pristine: bytes
    frames: list[Frame]
    last_write: tuple[int, int]  # [start, end) of the last save() call


def build(tmp_path: Path, *, last_state: bool = True) -> Log:
    """A log whose last save() writes three entries spanning several sectors (+ a state)."""
    waldir = tmp_path / "wal"
    with WAL.create(str(waldir), b"meta", segment_size=SEGMENT) as wal:
        wal.save(raft_pb2.HardState(term=1, vote=1, commit=1), [entry(i, 40) for i in (1, 2, 3)])
        start = wal.tail_offset
        state = raft_pb2.HardState(term=1, vote=1, commit=3) if last_state else raft_pb2.HardState()
        wal.save(state, [entry(i, 1000) for i in (4, 5, 6)])
        end = wal.tail_offset
        wal.sync()
    path = waldir / SEG0
    pristine = path.read_bytes()
    return Log(waldir, path, pristine, parse_frames(pristine), (start, end))


def expected(frames: list[Frame]) -> tuple[list[int], raft_pb2.HardState]:
    indexes = []
    state = raft_pb2.HardState()
    for f in frames:
        if f.record.type == ENTRY_TYPE:
            indexes.append(raft_pb2.Entry.FromString(f.record.data).Index)
        elif f.record.type == STATE_TYPE:
            state = raft_pb2.HardState.FromString(f.record.data)
    return indexes, state


def open_and_append(log: Log) -> tuple[list[int], raft_pb2.HardState]:
    """read_all in append mode, then prove the repaired log accepts appends and rereads."""
    with WAL.open(str(log.waldir), segment_size=SEGMENT) as wal:
        _, state, entries = wal.read_all()
        indexes = [e.Index for e in entries]
        nxt = indexes[-1] + 1
        wal.save(raft_pb2.HardState(term=2, vote=1, commit=nxt), [entry(nxt, 50)])
        wal.sync()
    with WAL.open(str(log.waldir), segment_size=SEGMENT) as wal:
        _, state2, entries2 = wal.read_all()
    assert [e.Index for e in entries2] == [*indexes, nxt]
    assert state2 == raft_pb2.HardState(term=2, vote=1, commit=nxt)
    return indexes, state


def reset(log: Log, content: bytes) -> None:
    for name in os.listdir(log.waldir):
        os.remove(log.waldir / name)
    log.path.write_bytes(content)


def test_truncated_at_every_byte_of_the_last_write(tmp_path: Path) -> None:
    log = build(tmp_path)
    start, end = log.last_write
    assert end - start > 2 * SECTOR
    boundaries = {f.end for f in log.frames}
    for cut in range(start, end + 1):
        reset(log, log.pristine[:cut])
        survivors = [f for f in log.frames if f.end <= cut]
        assert open_and_append(log) == expected(survivors), f"cut at {cut}"
        # A torn record is kept for inspection, as etcd's Repair does.
        assert (log.waldir / (SEG0 + ".broken")).exists() == (cut not in boundaries)


def test_torn_at_every_sector_of_the_last_write(tmp_path: Path) -> None:
    log = build(tmp_path)
    start, end = log.last_write
    first_sector = (start // SECTOR + 1) * SECTOR
    sectors = range(first_sector, end, SECTOR)
    assert len(sectors) >= 2
    for s in sectors:
        # Sectors from s on never reached the disk: preallocated zeros remain.
        torn = log.pristine[:s] + bytes(len(log.pristine) - s)
        reset(log, torn)
        survivors = []
        for f in log.frames:
            if f.end > s and log.pristine.count(0, max(s, f.offset), f.end) != f.end - max(
                s, f.offset
            ):
                break
            survivors.append(f)
        assert open_and_append(log) == expected(survivors), f"torn at sector {s}"


def test_zeroed_sector_inside_the_last_record_is_torn(tmp_path: Path) -> None:
    log = build(tmp_path, last_state=False)
    last = log.frames[-1]
    assert last.record.type == ENTRY_TYPE
    # Zero one whole sector in the middle of the last record; its other sectors made it.
    s = (last.offset // SECTOR + 1) * SECTOR
    assert last.offset + 8 < s and s + SECTOR < last.end
    damaged = log.pristine[:s] + bytes(SECTOR) + log.pristine[s + SECTOR :]
    reset(log, damaged)
    assert open_and_append(log) == expected(log.frames[:-1])
    assert (log.waldir / (SEG0 + ".broken")).read_bytes() == damaged


def test_garbage_tail_is_cut_off(tmp_path: Path) -> None:
    log = build(tmp_path)
    end = log.last_write[1]
    garbage = random.Random(7).randbytes(100)
    reset(log, log.pristine[:end] + garbage + log.pristine[end + len(garbage) :])
    with WAL.open(str(log.waldir), segment_size=SEGMENT) as wal:
        _, state, entries = wal.read_all()
        assert wal.tail_offset == end
    assert ([e.Index for e in entries], state) == expected(log.frames)
    raw = log.path.read_bytes()
    assert raw[:end] == log.pristine[:end]
    assert raw.count(0, end) == len(raw) - end, "garbage after the last record must be zeroed"
    assert open_and_append(log) == expected(log.frames)


def test_short_garbage_file_end_is_cut_off(tmp_path: Path) -> None:
    log = build(tmp_path)
    end = log.last_write[1]
    reset(log, log.pristine[:end] + b"\xff\x13\x07")
    assert open_and_append(log) == expected(log.frames)


def test_crc_mismatch_in_the_middle_is_corruption(tmp_path: Path) -> None:
    log = build(tmp_path)
    victim = log.frames[4]  # entry 2
    assert raft_pb2.Entry.FromString(victim.record.data).Index == 2
    damaged = bytearray(log.pristine)
    damaged[victim.end - 8 - 1] ^= 0x01  # a byte of the entry's data, before the padding
    reset(log, bytes(damaged))
    wal = WAL.open(str(log.waldir), segment_size=SEGMENT)
    with wal, pytest.raises(WALCorruptError) as info:
        wal.read_all()
    err = info.value
    assert err.path == str(log.path)
    assert err.offset == victim.offset
    assert str(log.path) in str(err) and f"offset {victim.offset}" in str(err)
    assert "crc mismatch" in str(err)
    # Nothing was "repaired".
    assert log.path.read_bytes() == bytes(damaged)
    assert not (log.waldir / (SEG0 + ".broken")).exists()


def test_crc_mismatch_in_the_last_record_without_zeroed_sector_is_corruption(
    tmp_path: Path,
) -> None:
    log = build(tmp_path)
    last = log.frames[-1]
    damaged = bytearray(log.pristine)
    damaged[last.offset + 11] ^= 0x01  # first byte of the stored crc (08 03 10 <crc>)
    reset(log, bytes(damaged))
    wal = WAL.open(str(log.waldir), segment_size=SEGMENT)
    with wal, pytest.raises(WALCorruptError, match="not a torn write"):
        wal.read_all()


def test_zeroed_sector_followed_by_valid_records_is_corruption(tmp_path: Path) -> None:
    log = build(tmp_path)
    entry4 = log.frames[-4]
    assert raft_pb2.Entry.FromString(entry4.record.data).Index == 4
    s = (entry4.offset // SECTOR + 1) * SECTOR
    assert s + SECTOR < entry4.end - 8  # a whole sector inside the record's data
    damaged = log.pristine[:s] + bytes(SECTOR) + log.pristine[s + SECTOR :]
    reset(log, damaged)
    wal = WAL.open(str(log.waldir), segment_size=SEGMENT)
    with wal, pytest.raises(WALCorruptError, match="well-formed record follows") as info:
        wal.read_all()
    assert info.value.offset == entry4.offset


def test_zeroed_length_field_followed_by_valid_records_is_corruption(tmp_path: Path) -> None:
    log = build(tmp_path)
    victim = log.frames[4]
    damaged = log.pristine[: victim.offset] + bytes(8) + log.pristine[victim.offset + 8 :]
    reset(log, damaged)
    wal = WAL.open(str(log.waldir), segment_size=SEGMENT)
    with wal, pytest.raises(WALCorruptError, match="zero length field") as info:
        wal.read_all()
    assert info.value.offset == victim.offset


def test_read_only_open_tolerates_a_torn_tail_without_touching_it(tmp_path: Path) -> None:
    log = build(tmp_path)
    cut = log.last_write[1] - 5
    reset(log, log.pristine[:cut])
    _, state, entries = WAL.open_for_read(str(log.waldir)).read_all()
    assert ([e.Index for e in entries], state) == expected([f for f in log.frames if f.end <= cut])
    assert log.path.read_bytes() == log.pristine[:cut]
    assert os.listdir(log.waldir) == [SEG0]


def multi_segment(tmp_path: Path) -> tuple[Path, list[str]]:
    waldir = tmp_path / "wal"
    with WAL.create(str(waldir), b"meta", segment_size=4096) as wal:
        index = 0
        while len(wal.locked_paths) < 3:
            wal.save(
                raft_pb2.HardState(term=1, vote=1, commit=index),
                [entry(i, 100) for i in range(index + 1, index + 11)],
            )
            index += 10
        paths = wal.locked_paths
    return waldir, paths


def test_torn_looking_damage_in_an_older_segment_is_corruption(tmp_path: Path) -> None:
    waldir, paths = multi_segment(tmp_path)
    first = Path(paths[0])
    raw = first.read_bytes()
    last = parse_frames(raw)[-1]
    # The file ends inside its last record: a torn write in the last segment, but an older
    # segment was complete when the next one was started.
    first.write_bytes(raw[: last.end - 10])
    wal = WAL.open(str(waldir), segment_size=4096)
    with wal, pytest.raises(WALCorruptError, match="runs past the end") as info:
        wal.read_all()
    assert info.value.path == paths[0]
    assert info.value.offset == last.offset


def test_crc_record_must_chain_across_segments(tmp_path: Path) -> None:
    waldir, paths = multi_segment(tmp_path)
    second = Path(paths[1])
    raw = bytearray(second.read_bytes())
    raw[11] ^= 0x01  # first varint byte of the crc record's crc (08 04 10 <crc>)
    second.write_bytes(bytes(raw))
    wal = WAL.open(str(waldir), segment_size=4096)
    with wal, pytest.raises(WALCorruptError, match="crc record holds") as info:
        wal.read_all()
    assert info.value.path == paths[1]
    assert info.value.offset == 0
