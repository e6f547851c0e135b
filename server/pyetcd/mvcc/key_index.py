"""The in-memory index: per key, the revisions of its generations (etcd ``keyIndex``/``treeIndex``).

Each key has one or more *generations*: a generation starts with the put that creates the key and
ends with the tombstone that deletes it; the last generation is the live one (empty when the key
is currently deleted). For example ``put(1) put(2) del(3) put(4) del(5)`` on ``foo`` gives::

    generations: {1.0, 2.0, 3.0(t)}, {4.0, 5.0(t)}, {}

The tree index maps keys to their ``KeyIndex`` in a ``SortedDict``: a dict lookup for single-key
operations (the common put/get) and ordered ``irange`` iteration for ``[key, end)`` ranges.

Revisions are packed ints (see ``revision.py``). All compaction rules are etcd 3.5's exactly:
``compact(at)`` keeps, per key, the latest revision with main <= ``at`` unless it is a
tombstone, and drops generations that end at or before ``at``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import islice

from sortedcontainers import SortedDict

from pyetcd.mvcc.revision import SUB_BITS

# The ``end`` of a range that reaches the last key (etcd's ``range_end == "\x00"``).
END_OF_KEYSPACE = b"\x00"


class Generation:
    """Revisions of one lifetime of a key, oldest first; ``ver`` is the version of the last one."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, ver: int = 0, created: int = 0, revs: list[int] | None = None) -> None:
        self.ver = ver
        self.created = created  # packed revision of the put that created this generation
        self.revs: list[int] = revs if revs is not None else []

    def __repr__(self) -> str:
        return f"Generation(ver={self.ver}, created={self.created:#x}, revs={self.revs!r})"


class KeyIndex:
    """etcd ``keyIndex`` for one key, plus the lease the live key is attached to."""

    __slots__ = ("generations", "key", "lease", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified = 0  # packed revision of the last change
        self.generations: list[Generation] = [Generation()]
        self.lease = 0  # lease of the live generation's latest put (0: none)

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, {self.generations!r})"

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0].revs

    def is_live(self) -> bool:
        return bool(self.generations[-1].revs)

    def put(self, rev: int) -> bool:
        """Append a put at ``rev``; True if it created the key (started a generation)."""
        if rev <= self.modified:
            raise AssertionError(f"put at revision {rev:#x} not after {self.modified:#x}")
        g = self.generations[-1]
        created = not g.revs
        if created:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev
        return created

    def restore(self, created: int, modified: int, ver: int) -> None:
        """Start the index of a key found on disk at ``modified`` (etcd ``keyIndex.restore``)."""
        self.modified = modified
        self.generations = [Generation(ver, created, [modified])]

    def tombstone(self, rev: int) -> bool:
        """Append a deletion at ``rev`` and open a new empty generation; False if not live."""
        if not self.generations[-1].revs:
            return False
        self.put(rev)
        self.generations.append(Generation())
        return True

    def find_generation(self, at_rev: int) -> Generation | None:
        """The generation alive at main revision ``at_rev``; None if the key did not exist."""
        gens = self.generations
        lastg = len(gens) - 1
        cg = lastg
        while cg >= 0:
            g = gens[cg]
            if not g.revs:
                cg -= 1
                continue
            if cg != lastg and (g.revs[-1] >> SUB_BITS) <= at_rev:
                return None  # deleted at or before at_rev, and not re-created yet
            if (g.revs[0] >> SUB_BITS) <= at_rev:
                return g
            cg -= 1
        return None

    def get(self, at_rev: int) -> tuple[int, int, int] | None:
        """``(modified, created, version)`` of the key at main revision ``at_rev``, or None."""
        if at_rev >= self.modified >> SUB_BITS:
            # Fast path for reads at the current revision: the live generation answers.
            g = self.generations[-1]
            if not g.revs:
                return None
            return g.revs[-1], g.created, g.ver
        g_or_none = self.find_generation(at_rev)
        if g_or_none is None:
            return None
        g = g_or_none
        revs = g.revs
        n = bisect_left(revs, (at_rev + 1) << SUB_BITS) - 1
        if n < 0:
            return None
        return revs[n], g.created, g.ver - (len(revs) - n - 1)

    def _do_compact(self, at_rev: int, available: set[int]) -> tuple[int, int]:
        gens = self.generations
        gi = 0
        g = gens[0]
        # Skip the generations that were deleted at or before at_rev: nothing of them is kept.
        while gi < len(gens) - 1:
            if (g.revs[-1] >> SUB_BITS) > at_rev:
                break
            gi += 1
            g = gens[gi]
        # The latest revision <= at_rev of this generation is kept.
        n = bisect_left(g.revs, (at_rev + 1) << SUB_BITS) - 1
        if n >= 0:
            available.add(g.revs[n])
        return gi, n

    def compact(self, at_rev: int, available: set[int]) -> None:
        """Drop revisions <= ``at_rev`` except the latest (unless it is a tombstone)."""
        gi, n = self._do_compact(at_rev, available)
        gens = self.generations
        g = gens[gi]
        if g.revs:
            if n != -1:
                del g.revs[:n]
            # A lone tombstone left in a finished generation is not kept.
            if len(g.revs) == 1 and gi != len(gens) - 1:
                available.discard(g.revs[0])
                gi += 1
        del gens[:gi]

    def keep(self, at_rev: int, available: set[int]) -> None:
        """Add to ``available`` what ``compact(at_rev)`` would keep, without changing anything."""
        if self.is_empty():
            return
        gi, n = self._do_compact(at_rev, available)
        g = self.generations[gi]
        if g.revs and n == len(g.revs) - 1 and gi != len(self.generations) - 1:
            available.discard(g.revs[n])


class TreeIndex:
    """All keys' ``KeyIndex`` in key order (etcd ``treeIndex``), and the number of live keys."""

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()
        self.live_keys = 0

    def __len__(self) -> int:
        return len(self._tree)

    def key_index(self, key: bytes) -> KeyIndex | None:
        ki: KeyIndex | None = self._tree.get(key)
        return ki

    def put(self, key: bytes, rev: int) -> KeyIndex:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._tree[key] = ki
        if ki.put(rev):
            self.live_keys += 1
        return ki

    def insert_restored(self, key: bytes, created: int, modified: int, ver: int) -> KeyIndex:
        ki = KeyIndex(key)
        ki.restore(created, modified, ver)
        self._tree[key] = ki
        self.live_keys += 1
        return ki

    def tombstone(self, key: bytes, rev: int) -> bool:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None or not ki.tombstone(rev):
            return False
        self.live_keys -= 1
        return True

    def get(self, key: bytes, at_rev: int) -> tuple[int, int, int] | None:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            return None
        return ki.get(at_rev)

    def iter_range(self, key: bytes, end: bytes | None) -> Iterable[KeyIndex]:
        """KeyIndexes of ``[key, end)`` (``end`` empty: only ``key``; ``END_OF_KEYSPACE``: all)."""
        tree = self._tree
        if not end:
            ki: KeyIndex | None = tree.get(key)
            return () if ki is None else (ki,)
        keys = (
            tree.irange(key)
            if end == END_OF_KEYSPACE
            else tree.irange(key, end, inclusive=(True, False))
        )
        # map() over the dict lookup: cheaper per key than a generator function.
        return map(tree.__getitem__, keys)

    def revisions(
        self, key: bytes, end: bytes | None, at_rev: int, limit: int = 0
    ) -> tuple[list[int], int]:
        """Packed revisions of the keys alive at ``at_rev`` (at most ``limit``), and their total."""
        revs: list[int] = []
        total = 0
        if limit <= 0:
            limit = -1
        for ki in self.iter_range(key, end):
            if at_rev >= ki.modified >> SUB_BITS:
                # Inlined fast path of KeyIndex.get: the live generation answers.
                live = ki.generations[-1].revs
                if not live:
                    continue
                rev = live[-1]
            else:
                found = ki.get(at_rev)
                if found is None:
                    continue
                rev = found[0]
            total += 1
            if total <= limit or limit < 0:
                revs.append(rev)
        return revs, total

    def count(self, key: bytes, end: bytes | None, at_rev: int) -> int:
        return self.revisions(key, end, at_rev, 1)[1]

    def live_in_range(self, key: bytes, end: bytes | None) -> list[KeyIndex]:
        """KeyIndexes of the keys alive now (what a DeleteRange in a write txn deletes)."""
        return [ki for ki in self.iter_range(key, end) if ki.generations[-1].revs]

    def compact_chunk(
        self, at_rev: int, after: bytes | None, n: int, available: set[int]
    ) -> bytes | None:
        """Compact up to ``n`` keys after ``after``; returns the last key done, None when finished.

        Compacting key by key is safe while writes go on: writes only add revisions above
        ``at_rev``, which compaction never touches.
        """
        tree = self._tree
        it = tree.irange(after, inclusive=(False, True)) if after is not None else iter(tree)
        keys: list[bytes] = list(islice(it, n))
        for k in keys:
            ki: KeyIndex = tree[k]
            ki.compact(at_rev, available)
            if ki.is_empty():
                del tree[k]
        return keys[-1] if len(keys) == n and keys else None

    def keep(self, at_rev: int) -> set[int]:
        available: set[int] = set()
        for ki in self._tree.values():
            ki.keep(at_rev, available)
        return available

    def leased_keys(self) -> Iterator[tuple[bytes, int]]:
        """``(key, lease)`` of every live key attached to a lease (the lessor's restore)."""
        for ki in self._tree.values():
            if ki.lease and ki.generations[-1].revs:
                yield ki.key, ki.lease
