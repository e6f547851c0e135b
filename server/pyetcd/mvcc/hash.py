"""HashKV: etcd's CRC-32C over the ``key`` bucket up to a revision (``server/mvcc/hash.go``).

The hash covers the bucket name ``b"key"``, then every ``(revision key, KeyValue)`` pair of the
``key`` bucket with main revision <= the hashed revision, in bucket order. Revisions at or below
the compact revision count only if they are in ``keep`` (what compaction keeps), so a member that
has physically finished a compaction and one that has not yet hash alike; ``keep`` is empty when
nothing was compacted, and then nothing is skipped.

Compaction hashes the revisions it walks anyway (previous compact revision .. compact revision)
and stores the result; ``HashStorage`` answers a HashKV at exactly such a revision from that
store, like etcd's ``hashStorage.HashByRev``.
"""

from __future__ import annotations

from dataclasses import dataclass

import crc32c

from pyetcd.backend.contract import KEY
from pyetcd.mvcc.revision import SUB_BITS, bytes_to_packed

HASH_STORAGE_MAX_SIZE = 10  # etcd hashStorageMaxSize


@dataclass(frozen=True, slots=True)
class KeyValueHash:
    hash: int
    compact_revision: int
    revision: int


class KVHasher:
    """Incremental etcd ``kvHasher``: feed ``(key, value)`` pairs of the key bucket in order."""

    __slots__ = ("_crc", "_keep", "_lower", "_upper", "compact_revision", "revision")

    def __init__(self, compact_revision: int, revision: int, keep: set[int]) -> None:
        self.compact_revision = compact_revision
        self.revision = revision
        self._keep = keep
        self._upper = (revision + 1) << SUB_BITS
        self._lower = (compact_revision + 1) << SUB_BITS
        self._crc: int = crc32c.crc32c(KEY)

    def write(self, key: bytes, value: bytes) -> None:
        kr = bytes_to_packed(key)
        if kr >= self._upper:
            return
        # Skip revisions that compaction deletes (or already deleted).
        if kr < self._lower and self._keep and kr not in self._keep:
            return
        self._crc = crc32c.crc32c(value, crc32c.crc32c(key, self._crc))

    def result(self) -> KeyValueHash:
        return KeyValueHash(self._crc, self.compact_revision, self.revision)


class HashStorage:
    """The last few compaction hashes, by revision (etcd ``hashStorage``)."""

    def __init__(self) -> None:
        self._hashes: list[KeyValueHash] = []

    def store(self, h: KeyValueHash) -> None:
        self._hashes.append(h)
        self._hashes.sort(key=lambda x: x.revision)
        del self._hashes[:-HASH_STORAGE_MAX_SIZE]

    def get(self, revision: int) -> KeyValueHash | None:
        for h in self._hashes:
            if h.revision == revision:
                return h
        return None

    def hashes(self) -> list[KeyValueHash]:
        return list(self._hashes)
