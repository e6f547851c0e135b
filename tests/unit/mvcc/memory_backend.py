"""An in-memory implementation of the backend contract, for mvcc unit tests.

Buckets are ``SortedDict``s. ``range`` is a lazy iterator that fails loudly if its bucket is
written while it is being iterated: the contract forbids holding it across writes, and the
real bbolt backend would silently misbehave, so the tests must catch such use here.
"""

from __future__ import annotations

from collections.abc import Iterator

import crc32c
from pyetcd.backend.contract import BackendError, PendingCommit
from sortedcontainers import SortedDict


class _Pending:
    def __init__(self, txid: int) -> None:
        self.txid = txid
        self.written = False

    def write(self) -> None:
        self.written = True


class _Snapshot:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.size = len(data)

    def read(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


class MemoryBackend:
    """Sorted buckets in memory; commits only count transactions."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self.page_size = 4096
        self._buckets: dict[bytes, SortedDict] = {}
        self._versions: dict[bytes, int] = {}
        self._pending = 0
        self._txid = 1
        self._closed = False

    def _bucket(self, name: bytes) -> SortedDict:
        if self._closed:
            raise BackendError(f"{self.path}: backend is closed")
        b = self._buckets.get(name)
        if b is None:
            raise BackendError(f"{self.path}: bucket {name!r} does not exist")
        return b

    def create_bucket(self, name: bytes) -> None:
        if name not in self._buckets:
            self._buckets[name] = SortedDict()
            self._versions[name] = 0

    def put(self, bucket: bytes, key: bytes, value: bytes, *, seq: bool = False) -> None:
        self._bucket(bucket)[key] = value
        self._versions[bucket] += 1
        self._pending += 1

    def delete(self, bucket: bytes, key: bytes) -> None:
        b = self._bucket(bucket)
        if key in b:
            del b[key]
            self._versions[bucket] += 1
            self._pending += 1

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        value: bytes | None = self._bucket(bucket).get(key)
        return value

    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None, limit: int = 0
    ) -> Iterator[tuple[bytes, bytes]]:
        b = self._bucket(bucket)
        version = self._versions[bucket]
        keys = b.irange(start, end, inclusive=(True, False))
        for n, k in enumerate(keys, 1):
            if self._versions[bucket] != version:
                raise AssertionError("backend range iterator held across a write to its bucket")
            yield k, b[k]
            if limit and n >= limit:
                return

    def pending_writes(self) -> int:
        return self._pending

    def prepare_commit(self) -> PendingCommit | None:
        if not self._pending:
            return None
        self._txid += 1
        return _Pending(self._txid)

    def finish_commit(self, pending: PendingCommit) -> None:
        self._pending = 0

    def commit(self) -> None:
        p = self.prepare_commit()
        if p is not None:
            p.write()
            self.finish_commit(p)

    def snapshot(self) -> _Snapshot:
        parts = []
        for name in sorted(self._buckets):
            for k, v in self._buckets[name].items():
                parts.append(name + b"\0" + k + b"\0" + v)
        return _Snapshot(b"\n".join(parts))

    def size(self) -> int:
        return sum(len(k) + len(v) for b in self._buckets.values() for k, v in b.items())

    def size_in_use(self) -> int:
        return self.size()

    def hash(self) -> int:
        h = 0
        for name in sorted(self._buckets):
            h = crc32c.crc32c(name, h)
            for k, v in self._buckets[name].items():
                h = crc32c.crc32c(v, crc32c.crc32c(k, h))
        return h

    def defrag(self) -> None:
        pass

    def close(self) -> None:
        self.commit()
        self._closed = True

    # -- test helpers, not part of the contract --------------------------------------------

    def items(self, bucket: bytes) -> list[tuple[bytes, bytes]]:
        return list(self._bucket(bucket).items())
