"""The backend's contract with the layers above (mvcc, server): what a store of buckets offers.

The backend is a bbolt-format file (see ``bbolt.py``). Its users see buckets of sorted byte keys,
one writer, reads that always see every applied write (committed to the file or not), and a commit
split in three so that the caller can run the slow part (page writes and fdatasync) in a thread
while the event loop keeps applying writes:

    pending = backend.prepare_commit()  # owner thread: spill dirty nodes into page images
    pending.write()                     # any thread: pages, fdatasync, meta page, fdatasync
    backend.finish_commit(pending)      # owner thread: the txn is durable; free its old pages

Every method except ``PendingCommit.write`` and ``SnapshotReader.read`` must be called from the
single owner thread. Durability of individual writes is the WAL's job; the backend is made
idempotent under replay by the ``meta/consistent_index`` key that the server writes in each batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

# etcd's bucket names (server/mvcc/buckets).
KEY = b"key"
META = b"meta"
LEASE = b"lease"
ALARM = b"alarm"
CLUSTER = b"cluster"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"

ALL_BUCKETS = (
    KEY,
    META,
    LEASE,
    ALARM,
    CLUSTER,
    MEMBERS,
    MEMBERS_REMOVED,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
)


class BackendError(Exception):
    """A backend file cannot be opened or used; the message names the file and the reason."""


class PendingCommit(Protocol):
    """Page images of one transaction, ready to be written."""

    txid: int
    written: bool  # write() completed

    def write(self) -> None:
        """Write the pages, fdatasync, write the meta page, fdatasync. Blocking; thread-safe."""


class SnapshotReader(Protocol):
    """A consistent copy of the last committed transaction, as ``bbolt Tx.WriteTo`` writes it."""

    size: int  # bytes: high-water mark * page size

    def read(self, n: int) -> bytes:
        """Next at most ``n`` bytes; b"" at the end. Blocking; may run in a thread."""

    def close(self) -> None:
        """Unpin the pages this snapshot holds so that they can be reused."""


class Backend(Protocol):
    path: str
    page_size: int

    def create_bucket(self, name: bytes) -> None:
        """Create a top-level bucket if it does not exist."""

    def put(self, bucket: bytes, key: bytes, value: bytes, *, seq: bool = False) -> None:
        """Insert or replace. ``seq`` marks append-mostly keys (etcd's UnsafeSeqPut, fill 0.9)."""

    def delete(self, bucket: bytes, key: bytes) -> None:
        """Remove a key; absent keys are ignored."""

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        """Value of a key, or None."""

    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None, limit: int = 0
    ) -> Iterator[tuple[bytes, bytes]]:
        """Ascending (key, value) pairs with start <= key < end (end None: to the last key).

        The iterator must not be held across writes to the same bucket.
        """

    def pending_writes(self) -> int:
        """Number of puts and deletes applied since the last prepare_commit."""

    def prepare_commit(self) -> PendingCommit | None:
        """Spill the current transaction into page images; None if nothing changed.

        At most one commit is in flight: calling this again before ``finish_commit`` of the
        previous one raises BackendError. Puts, deletes and reads may go on meanwhile.
        """

    def finish_commit(self, pending: PendingCommit) -> None:
        """Mark ``pending`` durable: it becomes the committed state snapshots read."""

    def commit(self) -> None:
        """prepare_commit + write + finish_commit in the calling thread (tools, shutdown)."""

    def snapshot(self) -> SnapshotReader:
        """A reader of the last committed transaction (commit first to include recent writes)."""

    def size(self) -> int:
        """Physical size of the file in bytes."""

    def size_in_use(self) -> int:
        """Bytes used by reachable pages: size minus free pages."""

    def hash(self) -> int:
        """CRC-32C over every bucket name then its keys and values, in order (etcd's Hash RPC).

        ``BoltBackend.hash`` also takes ``ignore``: (bucket, key) pairs left out, like etcd's
        ``DefaultIgnores`` (``{(b"meta", b"consistent_index")}`` in 3.4) for the Hash RPC.
        """

    def defrag(self) -> None:
        """Rewrite the file compactly (copy every bucket into a new file, then swap it in)."""

    def close(self) -> None:
        """Commit what is pending and close the file."""
