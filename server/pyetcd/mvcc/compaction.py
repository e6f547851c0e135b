"""A scheduled compaction as a step function, so the server can interleave it with other work.

``KVStore.compact(rev)`` checks and records the compaction at once (revisions below ``rev``
become unreadable right away; ``meta/scheduledCompactRev`` is written) and queues a
``Compaction``. Each ``step()`` then does a bounded amount of work, in etcd's order:

1. index pass: compact each key's ``KeyIndex`` (a chunk of keys per step), collecting the set of
   revisions to keep; safe while writes go on, as they only add revisions above ``rev``;
2. backend pass: walk the ``key`` bucket up to ``rev`` in batches of ``batch_limit`` entries,
   deleting the revisions not kept and hashing what it walks (etcd stores this hash so that
   HashKV at ``rev`` can be answered and compared across members);
3. in the last batch, write ``meta/finishedCompactRev``.

If the process stops in between, the next open finds ``scheduledCompactRev`` >
``finishedCompactRev`` and queues the compaction again (``KVStore._restore``).
"""

from __future__ import annotations

from collections.abc import Callable

from pyetcd.backend.contract import KEY, META, Backend
from pyetcd.mvcc.hash import HashStorage, KeyValueHash, KVHasher
from pyetcd.mvcc.key_index import TreeIndex
from pyetcd.mvcc.revision import bytes_to_packed, bytes_to_rev, main_prefix, rev_to_bytes

SCHEDULED_COMPACT_KEY = b"scheduledCompactRev"
FINISHED_COMPACT_KEY = b"finishedCompactRev"
DEFAULT_COMPACTION_BATCH_LIMIT = 1000  # etcd defaultCompactBatchLimit


class Compaction:
    """One compaction job; call ``step()`` until it returns True (or ``run()``)."""

    def __init__(
        self,
        *,
        index: TreeIndex,
        backend: Backend,
        hashes: HashStorage,
        revision: int,
        prev_revision: int,
        prev_completed: bool,
        batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT,
    ) -> None:
        self.revision = revision
        self.prev_revision = prev_revision
        self.batch_limit = batch_limit
        self.done = False
        self.deleted = 0  # backend entries removed so far
        self.hash: KeyValueHash | None = None
        self._index = index
        self._backend = backend
        self._hashes = hashes
        # etcd stores the compaction hash only if the previous compaction finished: otherwise
        # revisions it should have removed were skipped here and the hash matches no one.
        self._store_hash = prev_completed
        self._keep: set[int] = set()
        self._index_done = False
        self._index_cursor: bytes | None = None
        self._cursor = bytes(17)
        self._end = main_prefix(revision + 1)
        self._hasher: KVHasher | None = None
        self._callbacks: list[Callable[[Compaction], None]] = []

    def __repr__(self) -> str:
        return f"Compaction(revision={self.revision}, done={self.done})"

    def add_done_callback(self, fn: Callable[[Compaction], None]) -> None:
        """Call ``fn(self)`` when finished (at once if already done): e.g. resolve a future."""
        if self.done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def step(self) -> bool:
        """Do one bounded chunk of work; True when the compaction has finished."""
        if self.done:
            return True
        if not self._index_done:
            self._index_cursor = self._index.compact_chunk(
                self.revision, self._index_cursor, self.batch_limit, self._keep
            )
            if self._index_cursor is None:
                self._index_done = True
                self._hasher = KVHasher(self.prev_revision, self.revision, self._keep)
            return False
        return self._backend_step()

    def run(self) -> None:
        while not self.step():
            pass

    def _backend_step(self) -> bool:
        hasher = self._hasher
        assert hasher is not None
        b = self._backend
        batch = list(b.range(KEY, self._cursor, self._end, self.batch_limit))
        keep = self._keep
        for k, v in batch:
            if bytes_to_packed(k) not in keep:
                b.delete(KEY, k)
                self.deleted += 1
            hasher.write(k, v)
        if len(batch) < self.batch_limit:
            b.put(META, FINISHED_COMPACT_KEY, rev_to_bytes(self.revision))
            self.hash = hasher.result()
            if self._store_hash:
                self._hashes.store(self.hash)
            self._keep = set()
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
            for fn in callbacks:
                fn(self)
            return True
        # Resume after the last revision seen (its tombstone variant sorts before this too).
        main, sub = bytes_to_rev(batch[-1][0])
        self._cursor = rev_to_bytes(main, sub + 1)
        return False
