"""WAL life cycle: create, open at a snapshot, read_all, save, cut, locks, purge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.wal import (
    WAL,
    MetadataConflictError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALError,
    WALExistsError,
    WALLockedError,
    exists,
    must_sync,
    valid_snapshot_entries,
)
from pyetcd.wal.encoding import CRC_TYPE, METADATA_TYPE, STATE_TYPE

from .frames import parse_frames

SMALL_SEGMENT = 4096


def ents(first: int, last: int, term: int, size: int = 10) -> list[raft_pb2.Entry]:
    return [
        raft_pb2.Entry(
            Type=raft_pb2.EntryNormal,
            Term=term,
            Index=i,
            Data=(b"%d-%d:" % (term, i)).ljust(size, b"v"),
        )
        for i in range(first, last + 1)
    ]


def hs(term: int, vote: int, commit: int) -> raft_pb2.HardState:
    return raft_pb2.HardState(term=term, vote=vote, commit=commit)


def snap(index: int, term: int) -> record_pb2.Snapshot:
    return record_pb2.Snapshot(index=index, term=term)


def reopen(
    waldir: Path, at: record_pb2.Snapshot | None = None
) -> tuple[WAL, tuple[bytes, raft_pb2.HardState, list[raft_pb2.Entry]]]:
    wal = WAL.open(str(waldir), at, segment_size=SMALL_SEGMENT)
    return wal, wal.read_all()


@pytest.fixture
def waldir(tmp_path: Path) -> Path:
    return tmp_path / "member" / "wal"


def test_round_trip(waldir: Path) -> None:
    with WAL.create(str(waldir), b"meta") as wal:
        wal.save(hs(1, 1, 0), ents(1, 3, 1))
        wal.save(hs(1, 1, 3), [])
        wal.sync()
    wal, (metadata, state, entries) = reopen(waldir)
    with wal:
        assert metadata == b"meta"
        assert state == hs(1, 1, 3)
        assert entries == ents(1, 3, 1)
        assert wal.last_index == 3
        # Appending after reopen continues the CRC chain.
        wal.save(hs(2, 1, 3), ents(4, 4, 2))
    _, (_, state, entries) = reopen(waldir)
    assert state == hs(2, 1, 3)
    assert [e.Index for e in entries] == [1, 2, 3, 4]


def test_later_entries_overwrite_uncommitted_tail(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        wal.save(hs(1, 1, 1), ents(1, 5, 1))
        # A new leader at term 2 replaces entries 3.. (they were never committed).
        wal.save(hs(2, 2, 2), ents(3, 4, 2))
    wal, (_, state, entries) = reopen(waldir)
    wal.close()
    assert [(e.Index, e.Term) for e in entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert state == hs(2, 2, 2)


def test_open_at_snapshot_skips_covered_entries(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        wal.save(hs(1, 1, 5), ents(1, 5, 1))
        wal.save_snapshot(snap(3, 1))
        wal.save(hs(1, 1, 7), ents(6, 7, 1))
    wal, (_, state, entries) = reopen(waldir, snap(3, 1))
    wal.close()
    assert [e.Index for e in entries] == [4, 5, 6, 7]
    assert state.commit == 7


def test_snapshot_must_be_recorded(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        wal.save(hs(1, 1, 5), ents(1, 5, 1))
        wal.save_snapshot(snap(3, 1))
    wal = WAL.open(str(waldir), snap(4, 1))
    with wal, pytest.raises(SnapshotNotFoundError, match="index 4 term 1"):
        wal.read_all()
    wal = WAL.open(str(waldir), snap(3, 2))
    with wal, pytest.raises(SnapshotMismatchError, match="term 1, expected 2"):
        wal.read_all()


def test_create_refuses_existing_log_and_cleans_tmp(waldir: Path) -> None:
    WAL.create(str(waldir), b"m").close()
    assert exists(str(waldir))
    with pytest.raises(WALExistsError):
        WAL.create(str(waldir), b"m")
    assert not Path(str(waldir) + ".tmp").exists()


def test_create_replaces_leftover_tmp_dir(waldir: Path) -> None:
    tmp = Path(str(waldir) + ".tmp")
    tmp.mkdir(parents=True)
    (tmp / "junk").write_bytes(b"half-made")
    WAL.create(str(waldir), b"m").close()
    assert not tmp.exists()
    assert os.listdir(waldir) == ["0000000000000000-0000000000000000.wal"]


def test_files_are_locked(waldir: Path) -> None:
    wal = WAL.create(str(waldir), b"m")
    with pytest.raises(WALLockedError, match="locked"):
        WAL.open(str(waldir))
    # A read-only open for tools takes no lock.
    reader = WAL.open_for_read(str(waldir))
    assert reader.read_all()[0] == b"m"
    wal.close()
    WAL.open(str(waldir)).close()


def test_read_only_wal_refuses_writes(waldir: Path) -> None:
    WAL.create(str(waldir), b"m").close()
    reader = WAL.open_for_read(str(waldir))
    reader.read_all()
    with pytest.raises(WALError, match="read-only"):
        reader.save(hs(1, 1, 1), ents(1, 1, 1))


def test_save_requires_read_all_after_open(waldir: Path) -> None:
    WAL.create(str(waldir), b"m").close()
    with WAL.open(str(waldir)) as wal, pytest.raises(WALError, match="read_all"):
        wal.save(hs(1, 1, 1), [])


def test_metadata_conflict(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m1", segment_size=SMALL_SEGMENT) as wal:
        wal._metadata = b"m2"  # simulate a segment written by a different member
        wal.save(hs(1, 1, 1), ents(1, 200, 1))
    wal = WAL.open(str(waldir))
    with wal, pytest.raises(MetadataConflictError, match="differs"):
        wal.read_all()


def test_empty_save_writes_nothing(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        offset = wal.tail_offset
        wal.save(raft_pb2.HardState(), [])
        assert wal.tail_offset == offset


def test_cut_starts_segment_with_crc_metadata_state(waldir: Path) -> None:
    with WAL.create(str(waldir), b"meta", segment_size=SMALL_SEGMENT) as wal:
        index = 0
        while len(wal.locked_paths) < 3:
            wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
            index += 10
        last = index
    names = sorted(os.listdir(waldir))
    assert [n.split("-")[0] for n in names] == [f"{i:016x}" for i in range(3)]
    # Each segment is named after the index that follows its predecessor's last entry.
    firsts = [int(n.split("-")[1][:16], 16) for n in names]
    assert firsts[0] == 0
    assert all(f % 10 == 1 for f in firsts[1:])
    # Closed segments are truncated at their data; the open one stays preallocated.
    sizes = [os.path.getsize(waldir / n) for n in names]
    assert all(SMALL_SEGMENT <= s < SMALL_SEGMENT + 2000 for s in sizes[:2])
    assert sizes[2] == SMALL_SEGMENT
    second = parse_frames((waldir / names[1]).read_bytes())
    assert [f.record.type for f in second[:3]] == [CRC_TYPE, METADATA_TYPE, STATE_TYPE]
    assert second[1].record.data == b"meta"
    assert raft_pb2.HardState.FromString(second[2].record.data) == hs(1, 1, firsts[1] - 11)
    # The crc record carries the running CRC at the end of the previous segment.
    first = parse_frames((waldir / names[0]).read_bytes())
    assert second[0].record.crc == first[-1].record.crc

    wal, (_, state, entries) = reopen(waldir)
    with wal:
        assert [e.Index for e in entries] == list(range(1, last + 1))
        assert state == hs(1, 1, last - 10)
        wal.save(hs(1, 1, last), ents(last + 1, last + 1, 1))
    wal = WAL.open_for_read(str(waldir), None)
    assert [e.Index for e in wal.read_all()[2]][-1] == last + 1


def test_open_at_snapshot_starts_at_its_segment(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m", segment_size=SMALL_SEGMENT) as wal:
        index = 0
        while len(wal.locked_paths) < 3:
            wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
            index += 10
        wal.save_snapshot(snap(index, 1))
        wal.save(hs(1, 1, index + 1), ents(index + 1, index + 1, 1))
        paths = wal.locked_paths
    with WAL.open(str(waldir), snap(index, 1), segment_size=SMALL_SEGMENT) as wal:
        _, state, entries = wal.read_all()
        # Reading starts at the last segment whose first index is <= the snapshot index
        # (the third segment starts right after it), so the first one is not even locked.
        assert os.path.basename(paths[2]).endswith(f"{index + 1:016x}.wal")
        assert wal.locked_paths == paths[1:]
    assert [e.Index for e in entries] == [index + 1]
    assert state == hs(1, 1, index + 1)


def test_release_lock_to_and_purge(waldir: Path) -> None:
    wal = WAL.create(str(waldir), b"m", segment_size=SMALL_SEGMENT)
    index = 0
    while len(wal.locked_paths) < 5:
        wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
        index += 10
    paths = wal.locked_paths
    # Nothing is released yet: purge stops at the first locked file.
    assert wal.purge(2) == []
    first_of = [int(os.path.basename(p)[17:33], 16) for p in paths]
    # Release everything before the segment that holds first_of[3].
    wal.release_lock_to(first_of[3])
    assert wal.locked_paths == paths[2:]
    assert wal.purge(2) == paths[:2]
    assert sorted(os.listdir(waldir)) == [os.path.basename(p) for p in paths[2:]]
    # max_wals bounds what is kept, and locked files are never removed.
    assert wal.purge(1) == []
    # The segment before the one starting at the index may hold earlier entries: kept.
    wal.release_lock_to(first_of[4])
    assert wal.locked_paths == paths[3:]
    wal.release_lock_to(first_of[4] + 1)
    assert wal.locked_paths == paths[4:]
    assert wal.purge(1) == paths[2:4]
    wal.close()


def test_failed_segment_sequence_is_reported(waldir: Path) -> None:
    wal = WAL.create(str(waldir), b"m", segment_size=SMALL_SEGMENT)
    index = 0
    while len(wal.locked_paths) < 3:
        wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
        index += 10
    middle = wal.locked_paths[1]
    wal.close()
    os.remove(middle)
    with pytest.raises(WALError, match="sequence broken"):
        WAL.open(str(waldir))


def test_valid_snapshot_entries_only_committed(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        wal.save(hs(1, 1, 5), ents(1, 10, 1))
        wal.save_snapshot(snap(5, 1))
        wal.save_snapshot(snap(8, 1))  # not yet covered by a committed HardState
    assert [(s.index, s.term) for s in valid_snapshot_entries(str(waldir))] == [(0, 0), (5, 1)]


def test_valid_snapshot_entries_after_purge_removed_the_first_segments(waldir: Path) -> None:
    # What a member does over time: entries, a snapshot record, release and purge. Once the
    # segment that starts at index 0 is gone, the snapshots are still found, and the WAL opens
    # at the newest one (a boot that looked for a segment covering index 0 refused to start).
    wal = WAL.create(str(waldir), b"m", segment_size=SMALL_SEGMENT)
    index = 0
    taken: list[int] = []
    while len(taken) < 3:
        wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
        index += 10
        if index % 60 == 0:
            wal.save(hs(1, 1, index), [])
            wal.save_snapshot(snap(index, 1))
            taken.append(index)
            wal.release_lock_to(index)
            wal.purge(1)
    wal.close()
    names = sorted(os.listdir(waldir))
    assert not names[0].startswith("0000000000000000-"), names  # the first segment was purged
    found = [s.index for s in valid_snapshot_entries(str(waldir))]
    assert found[-1] == taken[-1]
    reopened, (_, state, entries) = reopen(waldir, snap(taken[-1], 1))
    assert state.commit == taken[-1]
    assert [e.Index for e in entries] == []
    reopened.close()


def test_must_sync() -> None:
    base = hs(1, 1, 1)
    assert not must_sync(base, hs(1, 1, 9), [])
    assert must_sync(base, hs(2, 1, 1), [])
    assert must_sync(base, hs(1, 2, 1), [])
    assert must_sync(base, base, ents(2, 2, 1))


def test_group_commit_batch_is_one_write(waldir: Path) -> None:
    with WAL.create(str(waldir), b"m") as wal:
        before = wal.tail_offset
        batch = ents(1, 64, 1, size=200)
        wal.save(hs(1, 1, 0), batch)
        written = wal.tail_offset - before
        wal.sync()
    raw = (waldir / "0000000000000000-0000000000000000.wal").read_bytes()
    frames = parse_frames(raw)
    assert frames[-1].end == before + written
    assert [raft_pb2.Entry.FromString(f.record.data) for f in frames[3:-1]] == batch


def test_bytes_written_counts_every_record_appended_across_cuts(waldir: Path) -> None:
    with WAL.create(str(waldir), b"meta", segment_size=SMALL_SEGMENT) as wal:
        created = wal.tail_offset  # the records of create(), before this count starts
        index = 0
        while len(wal.locked_paths) < 3:
            wal.save(hs(1, 1, index), ents(index + 1, index + 10, 1, size=100))
            index += 10
        written = wal.bytes_written
    segments = sorted(os.listdir(waldir))
    on_disk = sum(parse_frames((waldir / name).read_bytes())[-1].end for name in segments)
    assert written == on_disk - created
