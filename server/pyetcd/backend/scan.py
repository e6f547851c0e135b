"""``BoltScan``: a read-only, streaming walk over a bbolt file, for tools that read a db once.

Role: ``BoltBackend`` is the server's store: it opens the file for writing, takes bbolt's
exclusive lock and keeps every node it loads (all of them, when it rebuilds an unpersisted
freelist). A tool that reads a multi-GB backup once needs none of that. ``BoltScan`` opens the
file read-only under a shared lock (bbolt's ``ReadOnly`` mode: it fails while a server holds the
db), picks the active meta, and yields a bucket's entries in key order holding only the pages on
one root-to-leaf path. The db may be the front part of a longer file (``size``): a snapshot's
SHA-256 trailer is never read.

Every page is checked as it is read (in range, its own id in its header, the expected type, one
reference only), so a damaged file fails with a reason rather than looping or misreading.
``pages_in_use`` counts the pages reachable from the root, as bbolt's ``freepages`` does when
the freelist was not persisted (etcd's ``NoFreelistSync``), for etcd's ``dbSizeInUse``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

from .contract import BackendError
from .page import (
    BRANCH_PAGE,
    BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG,
    FREELIST_PAGE,
    HEADER_SIZE,
    LEAF_PAGE,
    META_SIZE,
    PAGE_HEADER,
    PGID_NO_FREELIST,
    Meta,
    PageError,
    decode_branch,
    decode_bucket_value,
    decode_leaf,
    decode_meta,
    page_header,
)

__all__ = ["BoltScan"]

_MIN_PAGE_SIZE = 1024
_MAX_PAGE_SHIFT = 15  # bbolt's getPageSize tries 1 KiB << 0..14


class BoltScan:
    """A committed bbolt db opened read-only; ``items(bucket)`` walks one bucket in key order."""

    def __init__(self, path: str, *, size: int | None = None) -> None:
        """Open ``path``; only its first ``size`` bytes (default: all) belong to the db."""
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise self._fail(f"cannot open: {e.strerror}") from None
        self._fd = fd
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise self._fail(
                    "database is locked by another process (is a member running on it?)"
                ) from None
            file_size = os.fstat(fd).st_size
            self.size = file_size if size is None else min(size, file_size)
            self.meta = self._active_meta()
            self.page_size = self.meta.page_size
            self._reached = bytearray(self.meta.pgid)
            self._reached[0] = self._reached[1] = 1
            self._complete: set[bytes] = set()
            self._buckets = self._read_root()
        except BaseException:
            os.close(fd)
            raise

    def _fail(self, reason: str) -> BackendError:
        return BackendError(f"{self.path}: {reason}")

    # -- meta ----------------------------------------------------------------------------------

    def _active_meta(self) -> Meta:
        """bbolt's choice (the valid meta with the higher txid), with a tool's stricter view: a
        newest meta whose pages lie beyond the end of the file means a truncated file, not a
        reason to fall back to the older one."""
        size = self.size
        if size == 0:
            raise self._fail("the file is empty")
        ps = self._page_size()
        metas: list[tuple[int, Meta]] = []
        reasons: list[str] = []
        for i in (0, 1):
            try:
                metas.append((i, decode_meta(os.pread(self._fd, HEADER_SIZE + META_SIZE, i * ps))))
            except PageError as e:
                reasons.append(f"meta page {i}: {e}")
        if not metas:
            raise self._fail("not a bbolt database: " + "; ".join(reasons))
        i, meta = max(metas, key=lambda im: im[1].txid)
        if meta.page_size != ps:
            raise self._fail(f"meta page {i}: page size {meta.page_size} differs from {ps}")
        needed = meta.pgid * ps
        if needed > size:
            raise self._fail(
                f"truncated: the database needs {needed} bytes (high-water mark {meta.pgid} x "
                f"page size {ps}), the file has {size}"
            )
        if not 2 <= meta.root < meta.pgid:
            raise self._fail(f"meta page {i}: root page {meta.root} is out of range")
        if meta.freelist != PGID_NO_FREELIST and not 2 <= meta.freelist < meta.pgid:
            raise self._fail(f"meta page {i}: freelist page {meta.freelist} is out of range")
        return meta

    def _page_size(self) -> int:
        size = self.size
        if size < 2 * _MIN_PAGE_SIZE:
            raise self._fail(f"not a bbolt database: {size} bytes is less than two pages")
        try:
            ps = decode_meta(os.pread(self._fd, HEADER_SIZE + META_SIZE, 0)).page_size
        except PageError as e:
            reason0 = str(e)
            # Meta 0 is unreadable: look for meta 1 at each plausible page size (getPageSize).
            for shift in range(_MAX_PAGE_SHIFT):
                ps = _MIN_PAGE_SIZE << shift
                if 2 * ps > size:
                    break
                try:
                    meta = decode_meta(os.pread(self._fd, HEADER_SIZE + META_SIZE, ps))
                except PageError:
                    continue
                if meta.page_size == ps:
                    return ps
            raise self._fail(
                f"not a bbolt database: meta page 0: {reason0}; no valid meta page 1"
            ) from None
        if ps < _MIN_PAGE_SIZE or ps & (ps - 1):
            raise self._fail(f"invalid page size {ps}")
        if 2 * ps > size:
            raise self._fail(f"truncated: {size} bytes is less than two pages of {ps} bytes")
        return ps

    # -- pages ---------------------------------------------------------------------------------

    def _read(self, pgid: int, seen: bytearray) -> tuple[bytes, int, int]:
        """Bytes (overflow pages included), flags and count of a page, marked in ``seen``."""
        ps = self.page_size
        hwm = self.meta.pgid
        if not 2 <= pgid < hwm:
            raise self._fail(f"page {pgid} is out of range (high-water mark {hwm})")
        buf = os.pread(self._fd, ps, pgid * ps)
        if len(buf) < ps:
            raise self._fail(f"truncated: page {pgid} is beyond the end of the file")
        pid, flags, count, overflow = PAGE_HEADER.unpack_from(buf)
        if pid != pgid:
            raise self._fail(f"page {pgid} has id {pid} in its header")
        end = pgid + overflow + 1
        if end > hwm:
            raise self._fail(f"page {pgid} overflows past the high-water mark {hwm}")
        if seen.find(1, pgid, end) != -1:
            raise self._fail(f"page {seen.find(1, pgid, end)} is referenced twice")
        ones = b"\x01" * (end - pgid)
        seen[pgid:end] = ones
        self._reached[pgid:end] = ones
        if overflow:
            more = os.pread(self._fd, overflow * ps, (pgid + 1) * ps)
            if len(more) < overflow * ps:
                raise self._fail(f"truncated: page {pgid} is beyond the end of the file")
            buf += more
        return buf, flags, count

    def _leaves(
        self, root: int, seen: bytearray
    ) -> Iterator[tuple[list[bytes], list[bytes], list[int] | None]]:
        """Every leaf of the tree at page ``root``, in key order, decoded."""
        stack: list[Iterator[int]] = [iter((root,))]
        while stack:
            pgid = next(stack[-1], None)
            if pgid is None:
                stack.pop()
                continue
            buf, flags, count = self._read(pgid, seen)
            try:
                if flags == BRANCH_PAGE:
                    stack.append(iter(decode_branch(buf, count)[1]))
                elif flags == LEAF_PAGE:
                    yield decode_leaf(buf, count)
                else:
                    raise PageError(f"type 0x{flags:02x}, expected a branch or leaf page")
            except PageError as e:
                raise self._fail(f"page {pgid}: {e}") from None

    def _bucket_leaves(
        self, value: bytes, what: str, seen: bytearray
    ) -> Iterator[tuple[list[bytes], list[bytes], list[int] | None]]:
        """The leaves of the bucket whose header (and inline page) is ``value``."""
        try:
            root, _ = decode_bucket_value(value)
            if not root:
                _, flags, count, _ = page_header(value, BUCKET_HEADER_SIZE)
                if flags != LEAF_PAGE:
                    raise PageError(f"inline page has type 0x{flags:02x}, expected a leaf")
                inline = decode_leaf(value, count, BUCKET_HEADER_SIZE)
        except PageError as e:
            raise self._fail(f"{what}: {e}") from None
        if root:
            yield from self._leaves(root, seen)
        else:
            yield inline

    def _read_root(self) -> dict[bytes, bytes]:
        buckets: dict[bytes, bytes] = {}
        seen = bytearray(self.meta.pgid)
        for keys, vals, flags in self._leaves(self.meta.root, seen):
            for j, (name, value) in enumerate(zip(keys, vals, strict=True)):
                if flags is None or not flags[j] & BUCKET_LEAF_FLAG:
                    raise self._fail(f"the root bucket holds a key {name!r} that is not a bucket")
                buckets[name] = value
        return buckets

    # -- reads ---------------------------------------------------------------------------------

    def bucket_names(self) -> list[bytes]:
        return sorted(self._buckets)

    def has_bucket(self, name: bytes) -> bool:
        return name in self._buckets

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every entry of a top-level bucket, in key order.

        Entries that are nested buckets (etcd has none) are left out. Pages are read as the
        iterator advances; a damaged page raises BackendError there.
        """
        value = self._buckets.get(bucket)
        if value is None:
            raise self._fail(f"bucket {bucket!r} does not exist")
        for keys, vals, flags in self._bucket_leaves(
            value, f"bucket {bucket!r}", bytearray(self.meta.pgid)
        ):
            if flags is None:
                yield from zip(keys, vals, strict=True)
            else:
                for k, v, f in zip(keys, vals, flags, strict=True):
                    if not f & BUCKET_LEAF_FLAG:
                        yield k, v
        self._complete.add(bucket)

    def pages_in_use(self) -> int:
        """Pages reachable from the root (metas and a persisted freelist included).

        Buckets whose ``items`` ran to the end are not read again. ``meta.pgid`` minus this is
        the number of free pages bbolt would find on open.
        """
        for name, value in self._buckets.items():
            if name not in self._complete:
                self._walk_pages(value, f"bucket {name!r}")
                self._complete.add(name)
        freelist = self.meta.freelist
        if freelist != PGID_NO_FREELIST and not self._reached[freelist]:
            _, flags, _ = self._read(freelist, bytearray(self.meta.pgid))
            if flags != FREELIST_PAGE:
                raise self._fail(f"page {freelist} has type 0x{flags:02x}, expected the freelist")
        return self._reached.count(1)

    def _walk_pages(self, value: bytes, what: str) -> None:
        seen = bytearray(self.meta.pgid)
        pending = [(value, what)]
        while pending:
            value, what = pending.pop()
            for keys, vals, flags in self._bucket_leaves(value, what, seen):
                if flags is not None:
                    pending += [
                        (v, f"nested bucket {k!r}")
                        for k, v, f in zip(keys, vals, flags, strict=True)
                        if f & BUCKET_LEAF_FLAG
                    ]

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also drops the shared lock
            self._fd = -1

    def __enter__(self) -> BoltScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
