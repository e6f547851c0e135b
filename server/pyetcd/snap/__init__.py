"""etcd's Raft snapshot files (`member/snap/*.snap`), byte-compatible with etcd.

Public surface: `Snapshotter` (save_snap, load, load_newest_available, purge, db_path_for),
`read_snap_file`, `snap_name`, and the errors.
"""

from pyetcd.snap.snapshotter import (
    EmptySnapshotError,
    SnapCRCMismatchError,
    SnapError,
    Snapshotter,
    encode_snap_file,
    parse_snap_name,
    read_snap_file,
    snap_name,
)

__all__ = [
    "EmptySnapshotError",
    "SnapCRCMismatchError",
    "SnapError",
    "Snapshotter",
    "encode_snap_file",
    "parse_snap_name",
    "read_snap_file",
    "snap_name",
]
