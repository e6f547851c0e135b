"""etcd's write-ahead log, byte-compatible with `member/wal` of etcd 3.4/3.5.

Public surface: `WAL` (create / open / open_for_read, read_all, save, sync, save_snapshot,
release_lock_to, purge, close), `must_sync`, `valid_snapshot_entries`, `exists`, and the
errors. Modules: `encoding` (record bytes), `decoder` (reading and torn-tail rules), `files`
(names, locks, durability), `wal` (the log itself).
"""

from pyetcd.wal.errors import (
    MetadataConflictError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALCorruptError,
    WALError,
    WALExistsError,
    WALLockedError,
)
from pyetcd.wal.files import SEGMENT_SIZE_BYTES, exists
from pyetcd.wal.wal import WAL, is_empty_hard_state, must_sync, valid_snapshot_entries

__all__ = [
    "SEGMENT_SIZE_BYTES",
    "WAL",
    "MetadataConflictError",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "WALCorruptError",
    "WALError",
    "WALExistsError",
    "WALLockedError",
    "exists",
    "is_empty_hard_state",
    "must_sync",
    "valid_snapshot_entries",
]
