"""The MVCC layer's errors, carrying etcd's exact messages (clients match them by string).

Class names are etcd's error variable names, so that code reads like the Go it mirrors.
"""

from __future__ import annotations


class MVCCError(Exception):
    """Base class; ``str(err)`` is etcd's message, byte for byte."""

    message = "mvcc: error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.message)


class ErrCompacted(MVCCError):  # noqa: N818 (etcd\'s names, as the server expects)
    """The requested revision is at or below the compacted revision (OutOfRange on the wire)."""

    message = "mvcc: required revision has been compacted"


class ErrFutureRev(MVCCError):  # noqa: N818 (etcd\'s names, as the server expects)
    """The requested revision is above the current revision (OutOfRange on the wire)."""

    message = "mvcc: required revision is a future revision"


class ErrWatcherDuplicateID(MVCCError):  # noqa: N818 (etcd\'s names, as the server expects)
    message = "mvcc: duplicate watch ID provided on the WatchStream"


class ErrEmptyWatcherRange(MVCCError):  # noqa: N818 (etcd\'s names, as the server expects)
    message = "mvcc: watcher range is empty"


class ErrWatcherNotExist(MVCCError):  # noqa: N818 (etcd\'s names, as the server expects)
    message = "mvcc: watcher does not exist"
