"""pyetcd.mvcc: etcd's multi-version KV store: revisions, key index, compaction, hashes, watch.

Public surface (the server imports from here):

- ``WatchableStore`` (a ``KVStore``): ranges, write txns, compaction, HashKV, watch streams;
- ``WriteTxn``, ``RangeResult``, ``Event``, ``Compaction``, ``KeyValueHash``;
- ``WatchStream``, ``WatchResponse``; errors with etcd's messages (``ErrCompacted``, ...).

Layering: imports ``pyetcd.backend`` (the bucket store) and ``pyetcd.proto`` only.
"""

from pyetcd.mvcc.compaction import Compaction
from pyetcd.mvcc.errors import (
    ErrCompacted,
    ErrEmptyWatcherRange,
    ErrFutureRev,
    ErrWatcherDuplicateID,
    ErrWatcherNotExist,
    MVCCError,
)
from pyetcd.mvcc.events import DELETE, PUT, Event
from pyetcd.mvcc.hash import KeyValueHash
from pyetcd.mvcc.kvstore import KVStore, RangeResult, WriteTxn
from pyetcd.mvcc.watchable_store import WatchableStore
from pyetcd.mvcc.watcher import (
    AUTO_WATCH_ID,
    FILTER_NODELETE,
    FILTER_NOPUT,
    INVALID_WATCH_ID,
    WatchResponse,
    WatchStream,
)

__all__ = [
    "AUTO_WATCH_ID",
    "DELETE",
    "FILTER_NODELETE",
    "FILTER_NOPUT",
    "INVALID_WATCH_ID",
    "PUT",
    "Compaction",
    "ErrCompacted",
    "ErrEmptyWatcherRange",
    "ErrFutureRev",
    "ErrWatcherDuplicateID",
    "ErrWatcherNotExist",
    "Event",
    "KVStore",
    "KeyValueHash",
    "MVCCError",
    "RangeResult",
    "WatchResponse",
    "WatchStream",
    "WatchableStore",
    "WriteTxn",
]
