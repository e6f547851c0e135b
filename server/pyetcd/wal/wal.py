"""The write-ahead log: etcd's `wal.WAL`, same files, same records, same recovery rules.

Life cycle, as in etcd: `WAL.create` for a new member, or `WAL.open` at the snapshot the
member restarts from followed by exactly one `read_all`; then `save` / `sync` /
`save_snapshot` appends. The API is synchronous and not thread-safe: the server calls it from
one worker thread, one call at a time, so that fsync (which releases the GIL) never blocks the
event loop.

Group commit is the caller's job and this module is shaped for it: `save` turns all records
of one call into a single buffer and a single `write`, and `sync` is one `fdatasync`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from types import TracebackType

import crc32c
from google.protobuf.message import DecodeError

from pyetcd.fileutil import fsync_dir
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.wal import files
from pyetcd.wal.decoder import Decoder
from pyetcd.wal.encoding import (
    CRC_TYPE,
    ENTRY_TYPE,
    METADATA_TYPE,
    SNAPSHOT_TYPE,
    STATE_TYPE,
    append_record,
    encode_entries,
    encode_hard_state,
    encode_wal_snapshot,
)
from pyetcd.wal.errors import (
    MetadataConflictError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALCorruptError,
    WALError,
    WALExistsError,
)
from pyetcd.wal.files import SEGMENT_SIZE_BYTES

# The spare segment is prepared under this name and renamed once its header is durable.
_CUT_TMP_NAME = "0.tmp"

log = logging.getLogger(__name__)


def is_empty_hard_state(hs: raft_pb2.HardState) -> bool:
    """raft.IsEmptyHardState."""
    return hs.term == 0 and hs.vote == 0 and hs.commit == 0


def must_sync(
    prev: raft_pb2.HardState, hs: raft_pb2.HardState, entries: Sequence[raft_pb2.Entry]
) -> bool:
    """raft.MustSync: entries, or a changed term or vote, must reach disk before messages are
    sent; a change of the commit index alone may be lost (it is recomputed after a restart)."""
    return bool(entries) or hs.vote != prev.vote or hs.term != prev.term


def _snapshot_key(snap: record_pb2.Snapshot | None) -> tuple[int, int]:
    return (snap.index, snap.term) if snap is not None else (0, 0)


class WAL:
    """One open write-ahead log directory (`member/wal`).

    `segment_size` (etcd's SegmentSizeBytes, 64 MB) is only changed by tests, to exercise
    segment cuts and tail repair without 64 MB files.
    """

    def __init__(
        self,
        dirpath: str,
        paths: list[str],
        locks: list[tuple[str, int]],
        *,
        read_only: bool,
        start: tuple[int, int],
        segment_size: int,
    ) -> None:
        # Use WAL.create / WAL.open / WAL.open_for_read.
        self._dir = dirpath
        self._paths = paths  # segments to read, oldest first
        self._locks = locks  # (path, fd) of locked segments; the last one is the tail
        self._read_only = read_only
        self._start = start  # (index, term) of the snapshot the log is opened at
        self._needs_read = True
        self._closed = False
        self._metadata = b""
        self._state = (0, 0, 0)  # last saved HardState (term, vote, commit)
        self._last_index = 0  # etcd's enti: index of the last entry written or read
        self._crc = 0
        self._fd = -1  # tail descriptor
        self._offset = 0  # append offset in the tail
        self._failed: BaseException | None = None
        self._segment_size = segment_size
        self.bytes_written = 0  # records appended by this WAL object (etcd's walWriteBytes)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls, dirpath: str, metadata: bytes, *, segment_size: int = SEGMENT_SIZE_BYTES
    ) -> WAL:
        """A new log holding crc(0), metadata and a snapshot{0,0} record, durably.

        The directory is built as `<dirpath>.tmp` and renamed into place, so that a crash
        never leaves a half-initialised log that a restart would mistake for a real one.
        """
        if files.exists(dirpath):
            raise WALExistsError(f"wal: {dirpath} already holds a write-ahead log")
        dirpath = os.path.normpath(dirpath)
        tmpdir = dirpath + ".tmp"
        if os.path.exists(tmpdir):
            shutil.rmtree(tmpdir)
        name = files.wal_name(0, 0)
        fd = -1
        try:
            os.makedirs(tmpdir, mode=files.PRIVATE_DIR_MODE)
            fd = files.open_locked(os.path.join(tmpdir, name), os.O_WRONLY | os.O_CREAT)
            files.preallocate(fd, segment_size)
            parts: list[bytes] = []
            size = append_record(parts, CRC_TYPE, 0, b"")
            crc = crc32c.crc32c(metadata, 0)
            size += append_record(parts, METADATA_TYPE, crc, metadata)
            snap = encode_wal_snapshot(record_pb2.Snapshot(index=0, term=0))
            crc = crc32c.crc32c(snap, crc)
            size += append_record(parts, SNAPSHOT_TYPE, crc, snap)
            files.write_all(fd, b"".join(parts))
            os.fdatasync(fd)
            fsync_dir(tmpdir)
            if os.path.exists(dirpath):
                # etcd removes the (wal-less) directory too; rename cannot replace a
                # non-empty one.
                shutil.rmtree(dirpath)
            os.rename(tmpdir, dirpath)
            fsync_dir(os.path.dirname(os.path.abspath(dirpath)))
        except BaseException:
            if fd >= 0:
                os.close(fd)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        path = os.path.join(dirpath, name)
        wal = cls(
            dirpath,
            [path],
            [(path, fd)],
            read_only=False,
            start=(0, 0),
            segment_size=segment_size,
        )
        wal._needs_read = False
        wal._metadata = metadata
        wal._crc = crc
        wal._fd = fd
        wal._offset = size
        return wal

    @classmethod
    def open(
        cls,
        dirpath: str,
        snap: record_pb2.Snapshot | None = None,
        *,
        segment_size: int = SEGMENT_SIZE_BYTES,
    ) -> WAL:
        """Open for appending at `snap` (index/term of the snapshot the member restarts from).

        Locks every segment from the one holding `snap`; `read_all` must be called next.
        """
        paths = cls._select(dirpath, snap)
        locks: list[tuple[str, int]] = []
        try:
            for path in paths:
                locks.append((path, files.open_locked(path, os.O_RDWR)))
        except BaseException:
            for _, fd in locks:
                os.close(fd)
            raise
        return cls(
            dirpath,
            paths,
            locks,
            read_only=False,
            start=_snapshot_key(snap),
            segment_size=segment_size,
        )

    @classmethod
    def open_for_read(cls, dirpath: str, snap: record_pb2.Snapshot | None = None) -> WAL:
        """Open without locks and without repairing, for tools that inspect a data directory.

        A torn tail is tolerated (the readable records are returned); corruption still raises.
        """
        paths = cls._select(dirpath, snap)
        return cls(
            dirpath,
            paths,
            [],
            read_only=True,
            start=_snapshot_key(snap),
            segment_size=SEGMENT_SIZE_BYTES,
        )

    @staticmethod
    def _select(dirpath: str, snap: record_pb2.Snapshot | None) -> list[str]:
        try:
            names = files.read_wal_names(dirpath)
        except FileNotFoundError as exc:
            raise WALError(f"wal: directory {dirpath} does not exist") from exc
        if not names:
            raise WALError(f"wal: no .wal files in {dirpath}")
        index, _ = _snapshot_key(snap)
        i = files.search_index(names, index)
        if i < 0:
            raise WALError(
                f"wal: no segment in {dirpath} covers snapshot index {index} (oldest is {names[0]})"
            )
        names = names[i:]
        files.check_sequence(dirpath, names)
        return [os.path.join(dirpath, n) for n in names]

    # ---- reading --------------------------------------------------------------------------

    def read_all(self) -> tuple[bytes, raft_pb2.HardState, list[raft_pb2.Entry]]:
        """Metadata, the last HardState and the entries after the snapshot (etcd's ReadAll).

        In append mode, a torn tail is cut off (a copy of the segment is kept as
        `<name>.broken`) and appends continue after the last good record.
        """
        if not self._needs_read:
            raise WALError("wal: read_all may only be called once, right after open")
        self._needs_read = False
        decoder = Decoder(self._paths)
        start_index, start_term = self._start
        metadata: bytes | None = None
        state = raft_pb2.HardState()
        entries: list[raft_pb2.Entry] = []
        matched = False
        last_index = 0
        entry_from_string = raft_pb2.Entry.FromString

        while (rec := decoder.next()) is not None:
            rec_type, rec_crc, data = rec
            if rec_type == ENTRY_TYPE:
                try:
                    entry = entry_from_string(data)
                except DecodeError as exc:
                    raise self._corrupt(decoder, f"entry does not decode ({exc})") from exc
                index = entry.Index
                if index > start_index:
                    up = index - start_index - 1
                    if up == len(entries):
                        entries.append(entry)
                    elif up < len(entries):
                        # A later entry at an existing index replaces the tail: those were
                        # uncommitted entries of an older term.
                        del entries[up:]
                        entries.append(entry)
                    else:
                        raise self._corrupt(
                            decoder,
                            f"entry index {index} leaves a gap after index "
                            f"{start_index + len(entries)}",
                        )
                last_index = index
            elif rec_type == STATE_TYPE:
                try:
                    state = raft_pb2.HardState.FromString(data)
                except DecodeError as exc:
                    raise self._corrupt(decoder, f"hard state does not decode ({exc})") from exc
            elif rec_type == METADATA_TYPE:
                if metadata is not None and metadata != data:
                    raise MetadataConflictError(
                        f"wal: metadata in {decoder.record_path} at offset "
                        f"{decoder.record_offset} differs from earlier metadata"
                    )
                metadata = data
            elif rec_type == CRC_TYPE:
                # A fresh decoder (crc 0) cannot check the first file's crc record.
                if decoder.crc and rec_crc != decoder.crc:
                    raise self._corrupt(
                        decoder,
                        f"crc record holds {rec_crc:#010x}, but the previous segment ends "
                        f"with {decoder.crc:#010x}",
                    )
                decoder.update_crc(rec_crc)
            elif rec_type == SNAPSHOT_TYPE:
                try:
                    snap = record_pb2.Snapshot.FromString(data)
                except DecodeError as exc:
                    raise self._corrupt(decoder, f"snapshot does not decode ({exc})") from exc
                if snap.index == start_index:
                    if snap.term != start_term:
                        raise SnapshotMismatchError(
                            f"wal: snapshot record at index {snap.index} in "
                            f"{decoder.record_path} has term {snap.term}, expected {start_term}"
                        )
                    matched = True
            else:
                raise self._corrupt(decoder, f"unexpected record type {rec_type}")

        if not matched:
            raise SnapshotNotFoundError(
                f"wal: no snapshot record for index {start_index} term {start_term} in {self._dir}"
            )
        self._metadata = metadata or b""
        self._state = (state.term, state.vote, state.commit)
        self._last_index = last_index
        if not self._read_only:
            self._prepare_tail(decoder)
        return self._metadata, state, entries

    @staticmethod
    def _corrupt(decoder: Decoder, reason: str) -> WALCorruptError:
        return WALCorruptError(decoder.record_path, decoder.record_offset, reason)

    def _prepare_tail(self, decoder: Decoder) -> None:
        """Point the appender after the last good record, repairing a torn tail first."""
        path, fd = self._locks[-1]
        offset = decoder.offset
        if decoder.dirty_tail:
            # Keep the evidence, as etcd's Repair does, then zero everything after the last
            # good record: a later append over part of a torn record would leave bytes that
            # a future read takes for a corrupt record.
            log.warning(
                "wal: repairing %s: torn write after offset %d (a copy is kept as %s.broken)",
                path,
                offset,
                path,
            )
            shutil.copyfile(path, path + ".broken")
            size = os.fstat(fd).st_size
            os.ftruncate(fd, offset)
            files.preallocate(fd, max(size, self._segment_size))
            os.fsync(fd)
        os.lseek(fd, offset, os.SEEK_SET)
        self._fd = fd
        self._offset = offset
        self._crc = decoder.crc

    # ---- writing --------------------------------------------------------------------------

    def save(self, hard_state: raft_pb2.HardState, entries: Sequence[raft_pb2.Entry]) -> None:
        """Append `entries` then `hard_state` (if not empty) with one write; no fsync.

        Call `sync` before acting on the result when `must_sync` says so. Cuts to a new
        segment when the tail has grown past the segment size.
        """
        self._check_writable()
        term, vote, commit = hard_state.term, hard_state.vote, hard_state.commit
        has_state = term != 0 or vote != 0 or commit != 0
        if not has_state and not entries:
            return
        parts: list[bytes] = []
        crc, size = encode_entries(parts, entries, self._crc)
        if has_state:
            data = encode_hard_state(term, vote, commit)
            crc = crc32c.crc32c(data, crc)
            size += append_record(parts, STATE_TYPE, crc, data)
        self._write(parts, crc, size)
        if entries:
            self._last_index = entries[-1].Index
        if has_state:
            self._state = (term, vote, commit)
        if self._offset >= self._segment_size:
            self._cut()

    def sync(self) -> None:
        """fdatasync the tail (releases the GIL while the disk works)."""
        self._check_writable()
        try:
            os.fdatasync(self._fd)
        except BaseException as exc:
            # After a failed fsync the page cache state is unknown (fsyncgate): stop writing.
            self._failed = exc
            raise

    def save_snapshot(self, snap: record_pb2.Snapshot) -> None:
        """Append a snapshot record and sync (etcd's SaveSnapshot)."""
        self._check_writable()
        data = encode_wal_snapshot(snap)
        crc = crc32c.crc32c(data, self._crc)
        parts: list[bytes] = []
        size = append_record(parts, SNAPSHOT_TYPE, crc, data)
        self._write(parts, crc, size)
        self._last_index = max(self._last_index, snap.index)
        self.sync()

    def _write(self, parts: list[bytes], crc: int, size: int) -> None:
        try:
            files.write_all(self._fd, b"".join(parts))
        except BaseException as exc:
            # The file may hold part of the buffer: appending more would interleave records.
            self._failed = exc
            raise
        self._crc = crc
        self._offset += size
        self.bytes_written += size

    def _check_writable(self) -> None:
        if self._closed:
            raise WALError("wal: closed")
        if self._read_only:
            raise WALError("wal: opened read-only")
        if self._needs_read:
            raise WALError("wal: read_all must be called before appending")
        if self._failed is not None:
            raise WALError(f"wal: an earlier write failed: {self._failed}") from self._failed

    def _cut(self) -> None:
        """Close the full tail and start segment seq+1 with crc, metadata and state records."""
        old_fd = self._fd
        os.ftruncate(old_fd, self._offset)  # give back the unused preallocation
        os.fdatasync(old_fd)

        tail_path = self._locks[-1][0]
        seq, _ = files.parse_wal_name(os.path.basename(tail_path))
        new_path = os.path.join(self._dir, files.wal_name(seq + 1, self._last_index + 1))
        tmp_path = os.path.join(self._dir, _CUT_TMP_NAME)
        fd = files.open_locked(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            files.preallocate(fd, self._segment_size)
            crc = self._crc
            parts: list[bytes] = []
            size = append_record(parts, CRC_TYPE, crc, b"")
            crc = crc32c.crc32c(self._metadata, crc)
            size += append_record(parts, METADATA_TYPE, crc, self._metadata)
            if self._state != (0, 0, 0):
                data = encode_hard_state(*self._state)
                crc = crc32c.crc32c(data, crc)
                size += append_record(parts, STATE_TYPE, crc, data)
            files.write_all(fd, b"".join(parts))
            os.fdatasync(fd)
            os.rename(tmp_path, new_path)
            fsync_dir(self._dir)
        except BaseException as exc:
            os.close(fd)
            self._failed = exc
            raise
        # The descriptor and its flock follow the inode across the rename.
        self._locks.append((new_path, fd))
        self._fd = fd
        self._offset = size
        self._crc = crc
        self.bytes_written += size

    # ---- retention ------------------------------------------------------------------------

    def release_lock_to(self, index: int) -> None:
        """Unlock segments that only hold entries before `index` (always keeping the one that
        holds `index`, and the tail), so that `purge` may remove them."""
        if not self._locks:
            return
        smaller = len(self._locks) - 1
        for i, (path, _) in enumerate(self._locks):
            _, first = files.parse_wal_name(os.path.basename(path))
            if first >= index:
                smaller = i - 1
                break
        if smaller <= 0:
            return
        for _, fd in self._locks[:smaller]:
            os.close(fd)
        del self._locks[:smaller]

    def purge(self, max_wals: int) -> list[str]:
        """Remove the oldest segments beyond `max_wals`, stopping at the first locked one
        (etcd's PurgeFile); returns the removed paths. `max_wals <= 0` keeps everything."""
        if max_wals <= 0:
            return []
        names = files.read_wal_names(self._dir)
        removed: list[str] = []
        for name in names[: max(0, len(names) - max_wals)]:
            path = os.path.join(self._dir, name)
            fd = files.try_lock(path)
            if fd is None:
                break  # still needed by this WAL (or another process)
            try:
                os.remove(path)
            finally:
                os.close(fd)
            removed.append(path)
        return removed

    # ---- state ----------------------------------------------------------------------------

    @property
    def dir(self) -> str:
        return self._dir

    @property
    def metadata(self) -> bytes:
        return self._metadata

    @property
    def hard_state(self) -> raft_pb2.HardState:
        """The last HardState written or read."""
        term, vote, commit = self._state
        return raft_pb2.HardState(term=term, vote=vote, commit=commit)

    @property
    def last_index(self) -> int:
        """Index of the last entry (or snapshot) written or read."""
        return self._last_index

    @property
    def tail_path(self) -> str:
        return self._locks[-1][0] if self._locks else ""

    @property
    def tail_offset(self) -> int:
        """Append offset in the tail segment."""
        return self._offset

    @property
    def locked_paths(self) -> list[str]:
        return [path for path, _ in self._locks]

    def close(self) -> None:
        """Sync the tail (append mode) and release every lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._fd >= 0 and self._failed is None:
                os.fdatasync(self._fd)
        finally:
            for _, fd in self._locks:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._locks = []
            self._fd = -1

    def __enter__(self) -> WAL:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def valid_snapshot_entries(dirpath: str) -> list[record_pb2.Snapshot]:
    """Snapshot records of the whole log whose index is committed by the last HardState
    (etcd's ValidSnapshotEntries): the server loads the newest .snap file among these.

    Every segment still on disk is read, as etcd's openWALFiles(names, 0) does: once purge has
    removed the oldest segments, none covers index 0, and selecting by a snapshot of index 0
    (what a boot knows before it has chosen its snapshot) refused every restart."""
    try:
        names = files.read_wal_names(dirpath)
    except FileNotFoundError as exc:
        raise WALError(f"wal: directory {dirpath} does not exist") from exc
    if not names:
        raise WALError(f"wal: no .wal files in {dirpath}")
    files.check_sequence(dirpath, names)
    decoder = Decoder([os.path.join(dirpath, n) for n in names])
    snaps: list[record_pb2.Snapshot] = []
    commit = 0
    while (rec := decoder.next()) is not None:
        rec_type, rec_crc, data = rec
        if rec_type == SNAPSHOT_TYPE:
            snaps.append(record_pb2.Snapshot.FromString(data))
        elif rec_type == STATE_TYPE:
            commit = raft_pb2.HardState.FromString(data).commit
        elif rec_type == CRC_TYPE:
            if decoder.crc and rec_crc != decoder.crc:
                raise WALCorruptError(
                    decoder.record_path, decoder.record_offset, "crc record does not chain"
                )
            decoder.update_crc(rec_crc)
    return [s for s in snaps if s.index <= commit]
