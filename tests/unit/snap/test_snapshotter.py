"""The .snap files: naming, envelope bytes, newest-valid loading, broken files, purge."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import crc32c
import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.snappb import snap_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.snap import (
    EmptySnapshotError,
    SnapCRCMismatchError,
    SnapError,
    Snapshotter,
    read_snap_file,
)


def snapshot(term: int, index: int, data: bytes = b'{"Root":{}}') -> raft_pb2.Snapshot:
    return raft_pb2.Snapshot(
        data=data,
        metadata=raft_pb2.SnapshotMetadata(
            conf_state=raft_pb2.ConfState(voters=[1]), index=index, term=term
        ),
    )


def test_save_writes_etcd_envelope(tmp_path: Path) -> None:
    snap = snapshot(2, 0x1234)
    path = Snapshotter(str(tmp_path)).save_snap(snap)
    assert os.path.basename(path) == "0000000000000002-0000000000001234.snap"
    raw = Path(path).read_bytes()
    body = snap.SerializeToString()
    # snappb.snapshot{crc=1 (varint), data=2 (bytes)}, the crc being CRC-32C of the body.
    outer = snap_pb2.snapshot.FromString(raw)
    assert outer.data == body
    assert outer.crc == crc32c.crc32c(body)
    assert raw.startswith(b"\x08")
    assert os.listdir(tmp_path) == [os.path.basename(path)], "no temporary file left behind"


def test_load_returns_newest(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    assert s.load() is None
    for term, index in [(1, 5), (2, 20), (2, 10)]:
        s.save_snap(snapshot(term, index))
    assert s.load() == snapshot(2, 20)


def test_load_on_missing_dir(tmp_path: Path) -> None:
    assert Snapshotter(str(tmp_path / "absent")).load() is None


def test_empty_snapshot_is_not_written(tmp_path: Path) -> None:
    assert Snapshotter(str(tmp_path)).save_snap(raft_pb2.Snapshot()) == ""
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 0xFF]), SnapCRCMismatchError),
        (lambda raw: b"", EmptySnapshotError),
        (lambda raw: b"\xff\xff\xff", SnapError),
    ],
)
def test_broken_newest_is_skipped_renamed_and_reported(
    tmp_path: Path, damage: Callable[[bytes], bytes], error: type[SnapError]
) -> None:
    reported: list[tuple[str, SnapError]] = []
    s = Snapshotter(str(tmp_path), on_broken=lambda path, exc: reported.append((path, exc)))
    s.save_snap(snapshot(1, 5))
    newest = s.save_snap(snapshot(1, 9))
    Path(newest).write_bytes(damage(Path(newest).read_bytes()))
    assert s.load() == snapshot(1, 5)
    assert os.path.exists(newest + ".broken") and not os.path.exists(newest)
    [(path, exc)] = reported
    assert path == newest
    assert isinstance(exc, error)
    assert newest in str(exc)


def test_read_snap_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "0000000000000001-0000000000000001.snap"
    path.write_bytes(snap_pb2.snapshot(crc=0, data=b"x").SerializeToString())
    with pytest.raises(EmptySnapshotError, match=str(path)):
        read_snap_file(str(path))


def test_load_newest_available_requires_a_wal_record(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    s.save_snap(snapshot(1, 5))
    s.save_snap(snapshot(1, 9))  # written, but the crash came before its WAL record
    walsnaps = [record_pb2.Snapshot(index=0, term=0), record_pb2.Snapshot(index=5, term=1)]
    assert s.load_newest_available(walsnaps) == snapshot(1, 5)
    assert s.load_newest_available([record_pb2.Snapshot(index=5, term=2)]) is None


def test_purge_keeps_newest(tmp_path: Path) -> None:
    s = Snapshotter(str(tmp_path))
    paths = [s.save_snap(snapshot(1, i)) for i in range(1, 8)]
    (tmp_path / "0000000000000007.snap.db").write_bytes(b"db")
    assert s.purge(0) == []
    assert sorted(s.purge(3)) == sorted(paths[:4])
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(p) for p in paths[4:]] + ["0000000000000007.snap.db"]
    )


def test_db_path_for(tmp_path: Path) -> None:
    assert Snapshotter(str(tmp_path)).db_path_for(0xABC) == str(
        tmp_path / "0000000000000abc.snap.db"
    )
