"""etcd's `.snap` files: Raft snapshots (`member/snap/%016x-%016x.snap`, term-index).

Each file is a `snappb.snapshot{crc, data}` where `data` is the marshalled `raftpb.Snapshot`
and `crc` its CRC-32C, exactly as etcd's snapshotter writes them, so either server can load
the other's files. The v3 database that travels with a snapshot lives next to them as
`%016x.snap.db` (index); this module only names it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import crc32c
from google.protobuf.message import DecodeError

from pyetcd.fileutil import fsync_dir
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.snappb import snap_pb2
from pyetcd.proto.walpb import record_pb2

SNAP_SUFFIX = ".snap"
BROKEN_SUFFIX = ".broken"
_TMP_SUFFIX = ".tmp"
_FILE_MODE = 0o600


class SnapError(Exception):
    """Base class of snapshot file failures; the message names the file."""


class EmptySnapshotError(SnapError):
    """The file, or its data or crc, is empty (etcd's ErrEmptySnapshot)."""


class SnapCRCMismatchError(SnapError):
    """The stored CRC does not match the data."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


def parse_snap_name(name: str) -> tuple[int, int]:
    """`(term, index)` of a snapshot file name; ValueError when it is not one."""
    if not name.endswith(SNAP_SUFFIX):
        raise ValueError(f"bad snap name: {name!r}")
    parts = name[: -len(SNAP_SUFFIX)].split("-")
    if len(parts) != 2 or len(parts[0]) != 16 or len(parts[1]) != 16:
        raise ValueError(f"bad snap name: {name!r}")
    return int(parts[0], 16), int(parts[1], 16)


def encode_snap_file(snapshot: raft_pb2.Snapshot) -> bytes:
    """The bytes of a .snap file for `snapshot`."""
    data = snapshot.SerializeToString()
    return snap_pb2.snapshot(crc=crc32c.crc32c(data), data=data).SerializeToString()


def read_snap_file(path: str) -> raft_pb2.Snapshot:
    """Decode and verify one .snap file (etcd's snap.Read); raises SnapError naming it."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise EmptySnapshotError(f"snap: {path} is empty")
    try:
        outer = snap_pb2.snapshot.FromString(raw)
    except DecodeError as exc:
        raise SnapError(f"snap: {path} does not decode: {exc}") from exc
    if not outer.data or outer.crc == 0:
        raise EmptySnapshotError(f"snap: {path} has empty data or crc")
    crc = crc32c.crc32c(outer.data)
    if crc != outer.crc:
        raise SnapCRCMismatchError(
            f"snap: crc mismatch in {path}: stored {outer.crc:#010x}, data gives {crc:#010x}"
        )
    try:
        return raft_pb2.Snapshot.FromString(outer.data)
    except DecodeError as exc:
        raise SnapError(f"snap: {path} holds an undecodable raftpb.Snapshot: {exc}") from exc


class Snapshotter:
    """Saves and loads the Raft snapshot files of one `member/snap` directory."""

    def __init__(self, dirpath: str, on_broken: Callable[[str, SnapError], None] | None = None):
        # on_broken is told about each file load() had to skip (the server logs it).
        self._dir = dirpath
        self._on_broken = on_broken

    @property
    def dir(self) -> str:
        return self._dir

    def save_snap(self, snapshot: raft_pb2.Snapshot) -> str:
        """Write `snapshot` durably; returns its path. An empty snapshot is not written."""
        meta = snapshot.metadata
        if meta.index == 0 and meta.term == 0 and not snapshot.data:
            # etcd skips raft.IsEmptySnap snapshots as well.
            return ""
        os.makedirs(self._dir, exist_ok=True)
        path = os.path.join(self._dir, snap_name(meta.term, meta.index))
        tmp = path + _TMP_SUFFIX
        payload = encode_snap_file(snapshot)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        os.close(fd)
        # Rename after fsync: a crash leaves either no file or a complete one, never a
        # truncated .snap that a restart would have to recognise as broken.
        os.rename(tmp, path)
        fsync_dir(self._dir)
        return path

    def snap_names(self) -> list[str]:
        """Snapshot file names, newest first."""
        try:
            entries = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        names = []
        for name in entries:
            try:
                parse_snap_name(name)
            except ValueError:
                continue
            names.append(name)
        names.sort(reverse=True)
        return names

    def load(self) -> raft_pb2.Snapshot | None:
        """The newest valid snapshot, or None. Broken files are renamed `<name>.broken`."""
        return self._load_matching(lambda _: True)

    def load_newest_available(
        self, wal_snaps: Sequence[record_pb2.Snapshot]
    ) -> raft_pb2.Snapshot | None:
        """The newest valid snapshot that the WAL also records (etcd's LoadNewestAvailable):
        a .snap file written just before a crash, without its WAL record, is not usable."""
        wanted = {(s.term, s.index) for s in wal_snaps}
        return self._load_matching(lambda s: (s.metadata.term, s.metadata.index) in wanted)

    def _load_matching(
        self, match: Callable[[raft_pb2.Snapshot], bool]
    ) -> raft_pb2.Snapshot | None:
        for name in self.snap_names():
            path = os.path.join(self._dir, name)
            try:
                snapshot = read_snap_file(path)
            except SnapError as exc:
                self._mark_broken(path, exc)
                continue
            except OSError as exc:
                self._mark_broken(path, SnapError(f"snap: cannot read {path}: {exc}"))
                continue
            if match(snapshot):
                return snapshot
        return None

    def _mark_broken(self, path: str, exc: SnapError) -> None:
        with contextlib.suppress(OSError):
            os.rename(path, path + BROKEN_SUFFIX)
        if self._on_broken is not None:
            self._on_broken(path, exc)

    def purge(self, max_snaps: int) -> list[str]:
        """Remove the oldest .snap files beyond `max_snaps` (0 keeps all); returns paths."""
        if max_snaps <= 0:
            return []
        removed = []
        for name in self.snap_names()[max_snaps:]:
            path = os.path.join(self._dir, name)
            os.remove(path)
            removed.append(path)
        return removed

    def db_path_for(self, index: int) -> str:
        """Where the v3 database received with the snapshot at `index` is stored."""
        return os.path.join(self._dir, f"{index:016x}.snap.db")
