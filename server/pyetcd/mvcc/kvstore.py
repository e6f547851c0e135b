"""The MVCC key-value store (etcd ``server/mvcc/kvstore*.go``): revisions, ranges, write txns.

Every change is written to the backend's ``key`` bucket under its revision key (see
``revision.py``) as a marshalled ``mvccpb.KeyValue`` and recorded in the in-memory ``TreeIndex``.
A range looks the revisions up in the index and returns the KeyValue bytes exactly as stored
(the server sends them on without re-encoding). A write txn bumps the store revision on ``end()``
only if it changed something; its changes share the main revision and take sub-revisions
0, 1, 2, ... in order.

The store is single-threaded by design (one event loop owns it): methods run to completion and
nothing here awaits, so a write txn is atomic with respect to reads without any lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pyetcd.backend.contract import KEY, META, Backend
from pyetcd.mvcc.compaction import (
    DEFAULT_COMPACTION_BATCH_LIMIT,
    FINISHED_COMPACT_KEY,
    SCHEDULED_COMPACT_KEY,
    Compaction,
)
from pyetcd.mvcc.errors import ErrCompacted, ErrFutureRev
from pyetcd.mvcc.events import DELETE, PUT, Event
from pyetcd.mvcc.hash import HashStorage, KeyValueHash, KVHasher
from pyetcd.mvcc.key_index import KeyIndex, TreeIndex
from pyetcd.mvcc.revision import (
    SUB_BITS,
    bytes_to_rev,
    is_tombstone,
    main_prefix,
    pack,
    packed_to_bytes,
    rev_to_bytes,
    tombstone_bytes,
)
from pyetcd.proto.mvccpb import kv_pb2

RESTORE_CHUNK_KEYS = 10000  # etcd restoreChunkKeys
HASH_CHUNK_KEYS = 10000

# Called as (key, old_lease, new_lease) whenever a key's lease attachment changes (0: none).
LeaseChangeCallback = Callable[[bytes, int, int], None]

_KeyValue = kv_pb2.KeyValue


@dataclass(slots=True)
class RangeResult:
    """``kvs``: raw KeyValue bytes (at most ``limit``); ``count``: all matches; ``rev``: header."""

    kvs: list[bytes] = field(default_factory=list)
    count: int = 0
    rev: int = 0

    def decoded(self) -> list[kv_pb2.KeyValue]:
        """The KeyValues as messages, for callers that sort, filter or compare on fields."""
        return [_KeyValue.FromString(raw) for raw in self.kvs]


class KVStore:
    """etcd's ``store``: current and compacted revision, index, reads, write txns, compaction."""

    def __init__(
        self,
        backend: Backend,
        *,
        compaction_batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT,
        on_lease_change: LeaseChangeCallback | None = None,
    ) -> None:
        self.backend = backend
        self.compaction_batch_limit = compaction_batch_limit
        self.on_lease_change = on_lease_change
        self.index = TreeIndex()
        self._current_rev = 1
        self._compact_rev = -1
        self._txn_open = False
        self._compactions: deque[Compaction] = deque()
        self.hashes = HashStorage()
        self._restore()

    # ----------------------------------------------------------------- state for Status/metrics

    @property
    def current_revision(self) -> int:
        """Revision of the last write txn that changed something (1 for a new store)."""
        return self._current_rev

    @property
    def compact_revision(self) -> int:
        """Revision of the last requested compaction (-1: never compacted)."""
        return self._compact_rev

    @property
    def key_count(self) -> int:
        """Number of live keys (etcd_debugging_mvcc_keys_total)."""
        return self.index.live_keys

    # ------------------------------------------------------------------------------- reads

    def range(
        self,
        key: bytes,
        end: bytes | None = b"",
        *,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> RangeResult:
        """Keys in ``[key, end)`` at ``rev`` (0: current).

        ``end`` empty: the single ``key``; ``b"\\x00"``: every key >= ``key``. Raises
        ``ErrFutureRev`` for ``rev`` above the current revision, ``ErrCompacted`` below the
        compacted one (reading exactly at the compact revision works, as in etcd).
        """
        return self._range(key, end, self._current_rev, rev, limit, count_only)

    def _range(  # noqa: PLR0917 (hot path: positional on purpose)
        self,
        key: bytes,
        end: bytes | None,
        cur_rev: int,
        rev: int,
        limit: int,
        count_only: bool,
    ) -> RangeResult:
        if rev > cur_rev:
            raise ErrFutureRev()
        if rev <= 0:
            rev = cur_rev
        if rev < self._compact_rev:
            raise ErrCompacted()
        index = self.index
        if not end:
            # Single key: a dict lookup, no iteration (the most common read).
            ki = index.key_index(key)
            found = ki.get(rev) if ki is not None else None
            if found is None:
                return RangeResult([], 0, cur_rev)
            if count_only:
                return RangeResult([], 1, cur_rev)
            return RangeResult([self._value_at(found[0])], 1, cur_rev)
        if count_only:
            return RangeResult([], index.count(key, end, rev), cur_rev)
        revs, total = index.revisions(key, end, rev, limit)
        get = self.backend.get
        kvs = [get(KEY, packed_to_bytes(r)) for r in revs]
        if None in kvs:
            raise RuntimeError("mvcc: index and key bucket disagree (revision not in backend)")
        return RangeResult(kvs, total, cur_rev)  # type: ignore[arg-type]

    def _value_at(self, packed: int) -> bytes:
        raw = self.backend.get(KEY, packed_to_bytes(packed))
        if raw is None:
            raise RuntimeError(f"mvcc: revision {packed >> SUB_BITS} in index but not in backend")
        return raw

    def lease_of(self, key: bytes) -> int:
        """The lease the live ``key`` is attached to (0: none or no such key)."""
        ki = self.index.key_index(key)
        return ki.lease if ki is not None and ki.is_live() else 0

    def leased_keys(self) -> Iterator[tuple[bytes, int]]:
        """``(key, lease)`` of every live key with a lease: the lessor re-attaches them on open."""
        return self.index.leased_keys()

    # ------------------------------------------------------------------------------ writes

    def write(self) -> WriteTxn:
        """Open the (single) write txn; call ``end()`` on it to publish its changes."""
        if self._txn_open:
            raise RuntimeError("mvcc: a write txn is already open")
        self._txn_open = True
        return WriteTxn(self)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """One-op write txn; returns the new revision."""
        txn = self.write()
        txn.put(key, value, lease)
        txn.end()
        return self._current_rev

    def delete_range(self, key: bytes, end: bytes | None = b"") -> tuple[int, int]:
        """One-op write txn; returns (number deleted, store revision)."""
        txn = self.write()
        n, _ = txn.delete_range(key, end)
        txn.end()
        return n, self._current_rev

    def _end_txn(self, txn: WriteTxn) -> None:
        self._txn_open = False
        if txn.changes:
            self._current_rev = txn.begin_rev + 1
            self._on_txn_end(self._current_rev, txn.changes)

    def _on_txn_end(self, rev: int, events: list[Event]) -> None:
        """Hook for the watchable store: ``events`` of the txn that produced revision ``rev``."""

    def _lease_changed(self, key: bytes, old: int, new: int) -> None:
        if self.on_lease_change is not None:
            self.on_lease_change(key, old, new)

    # -------------------------------------------------------------------------- compaction

    def compact(self, rev: int) -> Compaction:
        """Schedule compaction at ``rev``: unreadable below at once, backend cleaned by steps.

        Raises ``ErrCompacted`` if ``rev`` <= the compacted revision, ``ErrFutureRev`` if above
        the current one. Writes ``meta/scheduledCompactRev``; the server should commit the
        backend now (etcd force-commits here) so that a crash resumes the compaction.
        """
        prev_completed = self._prev_compaction_completed()
        if rev <= self._compact_rev:
            raise ErrCompacted()
        if rev > self._current_rev:
            raise ErrFutureRev()
        prev = self._compact_rev
        self._compact_rev = rev
        self.backend.put(META, SCHEDULED_COMPACT_KEY, rev_to_bytes(rev))
        job = Compaction(
            index=self.index,
            backend=self.backend,
            hashes=self.hashes,
            revision=rev,
            prev_revision=prev,
            prev_completed=prev_completed,
            batch_limit=self.compaction_batch_limit,
        )
        self._compactions.append(job)
        return job

    @property
    def pending_compactions(self) -> list[Compaction]:
        return list(self._compactions)

    def compaction_step(self) -> bool:
        """Advance the oldest queued compaction by one batch; True if work remains."""
        if not self._compactions:
            return False
        if self._compactions[0].step():
            self._compactions.popleft()
        return bool(self._compactions)

    def run_compactions(self) -> None:
        """Finish every queued compaction now (tools, tests, shutdown)."""
        while self.compaction_step():
            pass

    def _prev_compaction_completed(self) -> bool:
        b = self.backend
        return b.get(META, SCHEDULED_COMPACT_KEY) == b.get(META, FINISHED_COMPACT_KEY)

    # ------------------------------------------------------------------------------- hash

    def hash_kv(self, rev: int = 0) -> tuple[KeyValueHash, int]:
        """etcd ``HashByRev``: ``(hash of the key bucket up to rev, current revision)``.

        A revision that a finished compaction hashed is answered from those stored hashes (as
        etcd does). Raises ``ErrCompacted`` for ``0 < rev < compacted`` and ``ErrFutureRev`` for
        ``rev > current``.
        """
        cached = self.hashes.get(rev)
        if cached is not None:
            return cached, self._current_rev
        compact_rev, current_rev = self._compact_rev, self._current_rev
        if 0 < rev < compact_rev:
            raise ErrCompacted()
        if rev > 0 and rev > current_rev:
            raise ErrFutureRev()
        if rev == 0:
            rev = current_rev
        hasher = KVHasher(compact_rev, rev, self.index.keep(rev))
        b = self.backend
        start = b""
        end = main_prefix(rev + 1)
        while True:
            batch = list(b.range(KEY, start, end, HASH_CHUNK_KEYS))
            for k, v in batch:
                hasher.write(k, v)
            if len(batch) < HASH_CHUNK_KEYS:
                break
            start = batch[-1][0] + b"\x00"
        return hasher.result(), current_rev

    # ---------------------------------------------------------------------------- restore

    def reopen(self, backend: Backend) -> None:
        """Switch to another backend (e.g. a received snapshot) and rebuild from it."""
        if self._txn_open:
            raise RuntimeError("mvcc: cannot reopen with a write txn open")
        self.backend = backend
        self.index = TreeIndex()
        self._current_rev = 1
        self._compact_rev = -1
        self._compactions.clear()
        self._restore()

    def _restore(self) -> None:
        """Rebuild the index from the key bucket (etcd ``store.restore``)."""
        b = self.backend
        b.create_bucket(KEY)
        b.create_bucket(META)
        finished = b.get(META, FINISHED_COMPACT_KEY)
        if finished:
            self._compact_rev = bytes_to_rev(finished)[0]
        scheduled_raw = b.get(META, SCHEDULED_COMPACT_KEY)
        scheduled = bytes_to_rev(scheduled_raw)[0] if scheduled_raw else 0

        index = self.index
        tree_get = index.key_index
        current = 1
        start = rev_to_bytes(1, 0)
        from_string = _KeyValue.FromString
        while True:
            batch = list(b.range(KEY, start, None, RESTORE_CHUNK_KEYS))
            for k, v in batch:
                main, sub = bytes_to_rev(k)
                rev = pack(main, sub)
                current = main
                kv = from_string(v)
                ki: KeyIndex | None = tree_get(kv.key)
                if is_tombstone(k):
                    if ki is not None and index.tombstone(kv.key, rev):
                        ki.lease = 0
                    continue
                if ki is None:
                    ki = index.insert_restored(kv.key, pack(kv.create_revision), rev, kv.version)
                else:
                    index.put(kv.key, rev)
                ki.lease = kv.lease
            if len(batch) < RESTORE_CHUNK_KEYS:
                break
            main, sub = bytes_to_rev(batch[-1][0])
            start = rev_to_bytes(main, sub + 1)

        # A compaction may have removed every revision up to it (e.g. the last change was a
        # tombstone), so the revision never goes below the compacted or scheduled revision.
        current = max(current, self._compact_rev, scheduled)
        self._current_rev = current
        if scheduled_raw and scheduled > self._compact_rev:
            # Interrupted compaction: schedule it again (etcd compactLockfree).
            self.compact(scheduled)


class WriteTxn:
    """A write transaction (etcd ``storeTxnWrite``); reads in it see its own writes."""

    __slots__ = ("_ended", "_store", "begin_rev", "changes")

    def __init__(self, store: KVStore) -> None:
        self._store = store
        self.begin_rev = store._current_rev
        self.changes: list[Event] = []
        self._ended = False

    @property
    def rev(self) -> int:
        """The revision reads in this txn see: ``begin + 1`` once it has changed something."""
        return self.begin_rev + 1 if self.changes else self.begin_rev

    def range(
        self,
        key: bytes,
        end: bytes | None = b"",
        *,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> RangeResult:
        return self._store._range(key, end, self.rev, rev, limit, count_only)

    def put(
        self, key: bytes, value: bytes, lease: int = 0, *, prev_kv: bool = False
    ) -> tuple[bytes, bytes | None]:
        """Put ``key``; returns (new KeyValue bytes, previous KeyValue bytes if ``prev_kv``)."""
        s = self._store
        index = s.index
        rev = self.begin_rev + 1
        idx_rev = (rev << SUB_BITS) | len(self.changes)
        ki = index.key_index(key)
        prev: bytes | None = None
        old_lease = 0
        if ki is not None and (g := ki.generations[-1]).revs:
            created = g.created >> SUB_BITS
            ver = g.ver + 1
            old_lease = ki.lease
            if prev_kv:
                prev = s._value_at(g.revs[-1])
        else:
            created = rev
            ver = 1
        raw = _KeyValue(
            key=key,
            create_revision=created,
            mod_revision=rev,
            version=ver,
            value=value,
            lease=lease,
        ).SerializeToString()
        s.backend.put(KEY, packed_to_bytes(idx_rev), raw, seq=True)
        ki = index.put(key, idx_rev)
        ki.lease = lease
        self.changes.append(Event(PUT, key, raw, rev, created))
        if old_lease != lease:
            s._lease_changed(key, old_lease, lease)
        return raw, prev

    def delete_range(
        self, key: bytes, end: bytes | None = b"", *, prev_kv: bool = False
    ) -> tuple[int, list[bytes]]:
        """Delete the live keys in ``[key, end)``; returns (count, their KeyValues if prev_kv)."""
        s = self._store
        doomed = s.index.live_in_range(key, end)
        prevs: list[bytes] = []
        for ki in doomed:
            if prev_kv:
                prevs.append(s._value_at(ki.generations[-1].revs[-1]))
            self._delete(ki)
        return len(doomed), prevs

    def _delete(self, ki: KeyIndex) -> None:
        s = self._store
        rev = self.begin_rev + 1
        sub = len(self.changes)
        key = ki.key
        s.backend.put(
            KEY, tombstone_bytes(rev, sub), _KeyValue(key=key).SerializeToString(), seq=True
        )
        s.index.tombstone(key, (rev << SUB_BITS) | sub)
        event_kv = _KeyValue(key=key, mod_revision=rev).SerializeToString()
        self.changes.append(Event(DELETE, key, event_kv, rev, 0))
        if ki.lease:
            old, ki.lease = ki.lease, 0
            s._lease_changed(key, old, 0)

    def end(self) -> list[Event]:
        """Publish the txn: bump the revision if anything changed; returns its events."""
        if self._ended:
            raise RuntimeError("mvcc: write txn already ended")
        self._ended = True
        self._store._end_txn(self)
        return self.changes
