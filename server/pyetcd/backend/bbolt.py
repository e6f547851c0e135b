"""``BoltBackend``: a bbolt-format database file, implementing the backend contract.

Role: file I/O and transaction bookkeeping around the in-memory trees of ``node.py``. It opens or
creates the file (bbolt's ``db.init`` layout), picks the active meta (highest valid txid), rebuilds
the freelist by walking reachable pages (etcd's ``NoFreelistSync``) or reads a persisted freelist
page, and commits copy-on-write transactions in three steps:

* ``prepare_commit()`` (owner thread): rebalance and spill dirty nodes into page images on newly
  allocated pages, free the old pages as pending of this txid, build the meta page.
* ``PendingCommit.write()`` (any thread, blocking): grow the file if needed (ftruncate + fsync),
  pwrite the pages sorted by id, fdatasync, pwrite the meta page ``txid % 2``, fdatasync.
* ``finish_commit()`` (owner thread): the new meta becomes the committed state.

While a ``write()`` is in flight the owner keeps applying puts and deletes and serving reads from
the in-memory nodes; it may call ``prepare_commit()`` again only after ``finish_commit()`` of the
previous commit. Pages are read from the file only for nodes not yet in memory, and such nodes
always belong to a durable transaction. Pages freed by txid T become reusable once T is durable
and no snapshot reader pinned at a txid < T is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Collection, Iterator
from itertools import islice

import crc32c

from .contract import BackendError, PendingCommit
from .freelist import HashmapFreelist
from .node import DEFAULT_FILL, SEQ_FILL, Node, Tree
from .page import (
    BRANCH_PAGE,
    BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG,
    DEFAULT_PAGE_SIZE,
    FREELIST_PAGE,
    LEAF_PAGE,
    MAX_ELEMENTS,
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    PAGE_HEADER,
    PGID_NO_FREELIST,
    Meta,
    PageError,
    decode_branch,
    decode_bucket_value,
    decode_freelist,
    decode_leaf,
    decode_meta,
    encode_branch,
    encode_bucket_value,
    encode_freelist,
    encode_leaf,
    encode_meta_page,
    page_header,
)

ALLOC_SIZE = 16 * 1024 * 1024  # bbolt DefaultAllocSize: growth step once the file is large
MIN_FILE_GROWTH = 32 * 1024  # bbolt's smallest mmap size
DEFRAG_LIMIT = 10_000  # etcd's defragLimit: keys copied per commit

_EMPTY_INLINE_BUCKET = encode_bucket_value(0, 0, encode_leaf([], [], None))


def _grow_target(needed: int, page_size: int) -> int:
    """File size for ``needed`` bytes: powers of two up to 16 MiB, then 16 MiB beyond need.

    This is bbolt's ``grow`` with its default mmap sizing (the file follows the mmap size while
    that is at most AllocSize, then grows in AllocSize steps), rounded to whole pages.
    """
    if needed <= ALLOC_SIZE:
        size = MIN_FILE_GROWTH
        while size < needed:
            size *= 2
    else:
        size = needed + ALLOC_SIZE
    return -(-size // page_size) * page_size


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class _Spiller:
    """The ``PageWriter`` of one transaction: allocates pages and collects their images."""

    __slots__ = ("freelist", "hwm", "page_size", "pages", "path", "txid")

    def __init__(
        self, freelist: HashmapFreelist, txid: int, hwm: int, page_size: int, path: str
    ) -> None:
        self.freelist = freelist
        self.txid = txid
        self.hwm = hwm
        self.page_size = page_size
        self.path = path
        self.pages: list[tuple[int, bytes]] = []

    def free(self, node: Node) -> None:
        if node.pgid:
            self.freelist.free(self.txid, node.pgid, node.span)
            node.pgid = 0
            node.span = 0

    def allocate(self, n: int) -> int:
        pgid = self.freelist.allocate(n)
        if not pgid:
            pgid = self.hwm
            self.hwm += n
        return pgid

    def write(self, node: Node, size: int) -> None:
        if len(node.keys) >= MAX_ELEMENTS:
            raise BackendError(f"{self.path}: a page cannot hold {len(node.keys)} elements")
        span = -(-size // self.page_size)
        pgid = self.allocate(span)
        if node.is_leaf:
            data = encode_leaf(
                node.keys,
                node.vals,
                node.flags,
                pgid=pgid,
                overflow=span - 1,
                page_size=self.page_size,
            )
        else:
            data = encode_branch(
                node.keys, node.pgids, pgid=pgid, overflow=span - 1, page_size=self.page_size
            )
        self.pages.append((pgid, data))
        node.pgid = pgid
        node.span = span
        node.dirty = False


class BoltPendingCommit:
    """Page images and meta page of one transaction; ``write()`` makes them durable."""

    def __init__(
        self,
        fd: int,
        path: str,
        *,
        page_size: int,
        meta: Meta,
        pages: list[tuple[int, bytes]],
        grow_to: int,
    ) -> None:
        self.txid = meta.txid
        self.meta = meta
        self.grow_to = grow_to
        self.written = False
        self.npages = sum(len(data) for _, data in pages) // page_size
        self._fd = fd
        self._path = path
        self._page_size = page_size
        self._lock = threading.Lock()
        # Coalesce contiguous pages into one pwrite each (sequential puts allocate at the end).
        pages.sort(key=lambda p: p[0])
        runs: list[tuple[int, list[bytes]]] = []
        next_pgid = -1
        for pgid, data in pages:
            if pgid == next_pgid:
                runs[-1][1].append(data)
            else:
                runs.append((pgid * page_size, [data]))
            next_pgid = pgid + len(data) // page_size
        self._runs = [(offset, b"".join(parts)) for offset, parts in runs]
        self._meta_page = encode_meta_page(meta, meta.txid % 2)

    def write(self) -> None:
        with self._lock:
            if self.written:
                return
            fd = self._fd
            try:
                if self.grow_to:
                    os.ftruncate(fd, self.grow_to)
                    os.fsync(fd)
                for offset, data in self._runs:
                    _pwrite_all(fd, data, offset)
                os.fdatasync(fd)
                _pwrite_all(fd, self._meta_page, (self.txid % 2) * self._page_size)
                os.fdatasync(fd)
            except OSError as e:
                raise BackendError(f"{self._path}: commit of txid {self.txid} failed: {e}") from e
            self._runs = []
            self.written = True


class BoltSnapshotReader:
    """``Tx.WriteTo`` bytes of one committed txid: two synthesized metas, then raw pages."""

    def __init__(self, backend: BoltBackend, fd: int, meta: Meta, generation: int) -> None:
        ps = meta.page_size
        self.size = meta.pgid * ps
        self.txid = meta.txid
        self._backend = backend
        self._generation = generation
        self._fd = fd
        self._pos = 0
        self._head = encode_meta_page(meta, 0) + encode_meta_page(meta.with_txid(meta.txid - 1), 1)
        self._lock = threading.Lock()
        self._closed = False

    def read(self, n: int) -> bytes:
        with self._lock:
            if self._closed:
                raise BackendError(f"{self._backend.path}: snapshot reader is closed")
            pos = self._pos
            n = min(n, self.size - pos)
            if n <= 0:
                return b""
            head = len(self._head)
            if pos < head:
                chunk = self._head[pos : pos + n]
                if len(chunk) < n:
                    chunk += os.pread(self._fd, n - len(chunk), head)
            else:
                chunk = os.pread(self._fd, n, pos)
            if len(chunk) < n:
                raise BackendError(
                    f"{self._backend.path}: file ends at {pos + len(chunk)}, "
                    f"before the snapshot size {self.size}"
                )
            self._pos = pos + n
            return chunk

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)
        self._backend._unpin(self.txid, self._generation)

    def __enter__(self) -> BoltSnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BoltBackend:
    """A bbolt file of top-level buckets; see the module docstring for the commit protocol."""

    def __init__(
        self, path: str, *, page_size: int = DEFAULT_PAGE_SIZE, grow_in_steps: bool = False
    ) -> None:
        """Open or create ``path``; ``page_size`` applies to a new file only.

        ``grow_in_steps``: grow the file with ftruncate + fsync ahead of the high-water mark, in
        bbolt's steps (see ``_grow_target``). False lets page writes extend the file, so that it
        ends at the high-water mark; that is what Debian's etcd 3.4.23 files look like (its db
        file size is exactly high-water mark x page size).
        """
        self.path = path
        self.page_size = page_size
        self._grow_in_steps = grow_in_steps
        self._new_page_size = page_size
        self._fd = -1
        self._closed = True
        self._generation = 0
        self._readers: dict[int, int] = {}
        self._readers_lock = threading.Lock()
        self._open()

    @classmethod
    def open(
        cls, path: str, *, page_size: int = DEFAULT_PAGE_SIZE, grow_in_steps: bool = False
    ) -> BoltBackend:
        """Same as the constructor: open or create the file at ``path``."""
        return cls(path, page_size=page_size, grow_in_steps=grow_in_steps)

    # -- open ----------------------------------------------------------------------------------

    def _fail(self, reason: str) -> BackendError:
        return BackendError(f"{self.path}: {reason}")

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise self._fail(f"cannot open: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                raise self._fail("database is locked by another process") from e
            if os.fstat(fd).st_size == 0:
                self._init_file(fd)
            self._fd = fd
            self._load_state()
        except BaseException:
            os.close(fd)
            self._fd = -1
            raise
        self._closed = False
        self._generation += 1

    def _init_file(self, fd: int) -> None:
        """bbolt's ``db.init``: metas (txid 0 and 1), an empty freelist page, an empty root."""
        ps = self._new_page_size
        pages = []
        for i in (0, 1):
            pages.append(encode_meta_page(Meta(ps, 3, 0, 2, 4, i), i))
        pages.append(encode_freelist([], pgid=2, overflow=0, page_size=ps))
        pages.append(encode_leaf([], [], None, pgid=3, overflow=0, page_size=ps))
        _pwrite_all(fd, b"".join(pages), 0)
        os.fdatasync(fd)
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _discover_page_size(self, fd: int, file_size: int) -> int:
        try:
            return decode_meta(os.pread(fd, 128, 0)).page_size
        except PageError as e:
            reason0 = str(e)
        # Meta 0 is unreadable: look for meta 1 at each plausible page size (bbolt getPageSize).
        for shift in range(15):
            ps = 1024 << shift
            if ps >= file_size:
                break
            try:
                meta = decode_meta(os.pread(fd, 128, ps))
            except PageError:
                continue
            if meta.page_size == ps:
                return ps
        raise self._fail(f"invalid database: meta page 0: {reason0}; no valid meta page 1")

    def _check_meta(self, meta: Meta, ps: int, file_size: int) -> None:
        if meta.page_size != ps:
            raise PageError(f"page size {meta.page_size} differs from {ps}")
        if meta.pgid < 2 or meta.pgid * ps > file_size:
            raise PageError(f"high-water mark {meta.pgid} is beyond the end of the file")
        if not 2 <= meta.root < meta.pgid:
            raise PageError(f"root page {meta.root} is out of range")
        if meta.freelist != PGID_NO_FREELIST and not 2 <= meta.freelist < meta.pgid:
            raise PageError(f"freelist page {meta.freelist} is out of range")

    def _load_state(self) -> None:
        fd = self._fd
        file_size = os.fstat(fd).st_size
        if file_size < 2 * 1024:
            raise self._fail(f"file size {file_size} is smaller than two pages")
        ps = self._discover_page_size(fd, file_size)
        if ps < 512 or ps & (ps - 1):
            raise self._fail(f"invalid page size {ps}")
        if file_size < 2 * ps:
            raise self._fail(f"file size {file_size} is smaller than two pages of {ps} bytes")
        metas: list[Meta] = []
        reasons: list[str] = []
        for i in (0, 1):
            try:
                meta = decode_meta(os.pread(fd, 128, i * ps))
                self._check_meta(meta, ps, file_size)
                metas.append(meta)
            except PageError as e:
                reasons.append(f"meta page {i}: {e}")
        if not metas:
            raise self._fail("invalid database: " + "; ".join(reasons))
        meta = max(metas, key=lambda m: m.txid)
        self.page_size = ps
        self._meta = meta
        self._file_size = file_size
        self._hwm = meta.pgid
        self._inflight: BoltPendingCommit | None = None
        self._changed = False
        self._writes = 0
        self._freelist = HashmapFreelist()
        self._root = Tree(self._load, ps, root_pgid=meta.root, sequence=meta.sequence)
        self._buckets: dict[bytes, Tree] = {}
        for name, value, flag in self._root.items_with_flags():
            if not flag & BUCKET_LEAF_FLAG:
                raise self._fail(f"root bucket holds a key {name!r} that is not a bucket")
            self._buckets[name] = self._bucket_tree(value, f"bucket {name!r}")
        self._freelist_page: tuple[int, int] | None = None
        if meta.freelist == PGID_NO_FREELIST:
            self._freelist.load(self._unreachable_pages())
        else:
            self._read_freelist_page(meta.freelist)

    def _bucket_tree(self, value: bytes, what: str) -> Tree:
        try:
            root, seq = decode_bucket_value(value)
            if root:
                return Tree(self._load, self.page_size, root_pgid=root, sequence=seq)
            _, flags, count, _ = page_header(value, BUCKET_HEADER_SIZE)
            if flags != LEAF_PAGE:
                raise PageError(f"inline page has type 0x{flags:02x}, expected a leaf")
            keys, vals, fl = decode_leaf(value, count, BUCKET_HEADER_SIZE)
        except PageError as e:
            raise self._fail(f"{what}: {e}") from None
        return Tree(self._load, self.page_size, root=Node(True, keys, vals, fl), sequence=seq)

    def _read_page(self, pgid: int) -> tuple[bytes, int, int]:
        """Bytes (all overflow pages included), flags and count of a committed page."""
        ps = self.page_size
        hwm = self._meta.pgid
        if not 2 <= pgid < hwm:
            raise self._fail(f"page {pgid} is out of range (high-water mark {hwm})")
        buf = os.pread(self._fd, ps, pgid * ps)
        if len(buf) < ps:
            raise self._fail(f"page {pgid} is beyond the end of the file")
        pid, flags, count, overflow = PAGE_HEADER.unpack_from(buf)
        if pid != pgid:
            raise self._fail(f"page {pgid} has id {pid} in its header")
        if overflow:
            if pgid + overflow >= hwm:
                raise self._fail(f"page {pgid} overflows past the high-water mark {hwm}")
            more = os.pread(self._fd, overflow * ps, (pgid + 1) * ps)
            if len(more) < overflow * ps:
                raise self._fail(f"page {pgid} is beyond the end of the file")
            buf += more
        return buf, flags, count

    def _load(self, pgid: int) -> Node:
        """Parse a branch or leaf page into a node (the node loader of every tree)."""
        buf, flags, count = self._read_page(pgid)
        span = len(buf) // self.page_size
        try:
            if flags == LEAF_PAGE:
                keys, vals, fl = decode_leaf(buf, count)
                return Node(True, keys, vals, fl, pgid=pgid, span=span)
            if flags == BRANCH_PAGE:
                keys, pgids = decode_branch(buf, count)
                if not keys:  # an emptied root branch: treat it as an empty leaf
                    return Node(True, [], [], pgid=pgid, span=span)
                return Node(False, keys, pgids=pgids, pgid=pgid, span=span)
        except PageError as e:
            raise self._fail(f"page {pgid}: {e}") from None
        raise self._fail(f"page {pgid} has type 0x{flags:02x}, expected a branch or leaf page")

    def _unreachable_pages(self) -> list[int]:
        """Every page in [2, hwm) not reachable from the root: bbolt's ``freepages()``.

        Walking loads (and caches) every node of every bucket, which also validates the file.
        """
        hwm = self._meta.pgid
        seen = bytearray(hwm)
        seen[0] = seen[1] = 1

        def mark(node: Node) -> None:
            for p in range(node.pgid, node.pgid + node.span):
                if seen[p]:
                    raise self._fail(f"page {p} is referenced twice")
                seen[p] = 1

        def walk(tree: Tree) -> None:
            for node in tree.nodes():
                mark(node)
                if node.is_leaf and node.has_sub_buckets():
                    assert node.flags is not None
                    for k, v, f in zip(node.keys, node.vals, node.flags, strict=True):
                        if f & BUCKET_LEAF_FLAG:
                            walk(self._bucket_tree(v, f"nested bucket {k!r}"))

        for node in self._root.nodes():  # its sub-buckets are the trees in self._buckets
            mark(node)
        for tree in self._buckets.values():
            walk(tree)
        return [p for p in range(2, hwm) if not seen[p]]

    def _read_freelist_page(self, pgid: int) -> None:
        buf, flags, _ = self._read_page(pgid)
        if flags != FREELIST_PAGE:
            raise self._fail(f"page {pgid} has type 0x{flags:02x}, expected a freelist page")
        try:
            ids = decode_freelist(buf)
        except PageError as e:
            raise self._fail(f"freelist page {pgid}: {e}") from None
        hwm = self._meta.pgid
        bad = [p for p in ids if not 2 <= p < hwm]
        if bad:
            raise self._fail(f"freelist page {pgid} holds out-of-range page {bad[0]}")
        self._freelist.load(ids)
        # Freed at the next commit: this backend does not persist the freelist (NoFreelistSync).
        self._freelist_page = (pgid, len(buf) // self.page_size)

    # -- reads and writes ----------------------------------------------------------------------

    def _tree(self, bucket: bytes) -> Tree:
        tree = self._buckets.get(bucket)
        if tree is None:
            raise self._fail(f"bucket {bucket!r} does not exist")
        return tree

    def bucket_names(self) -> list[bytes]:
        return sorted(self._buckets)

    def create_bucket(self, name: bytes) -> None:
        if name in self._buckets:
            return
        if not name or len(name) > MAX_KEY_SIZE:
            raise ValueError(f"invalid bucket name length {len(name)}")
        tree = Tree(self._load, self.page_size, root=Node(True, [], []))
        tree.root.dirty = True  # type: ignore[union-attr]
        tree.dirty = True
        self._buckets[name] = tree
        self._root.put(name, _EMPTY_INLINE_BUCKET, BUCKET_LEAF_FLAG)
        self._changed = True

    def put(self, bucket: bytes, key: bytes, value: bytes, *, seq: bool = False) -> None:
        tree = self._buckets.get(bucket) or self._tree(bucket)
        if not key or len(key) > MAX_KEY_SIZE:
            raise ValueError(f"invalid key length {len(key)}")
        if len(value) > MAX_VALUE_SIZE:
            raise ValueError(f"value too large: {len(value)} bytes")
        if seq:
            tree.fill = SEQ_FILL
        tree.put(key, value)
        self._writes += 1
        self._changed = True

    def delete(self, bucket: bytes, key: bytes) -> None:
        tree = self._buckets.get(bucket) or self._tree(bucket)
        if tree.delete(key):
            self._changed = True
        self._writes += 1

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        return (self._buckets.get(bucket) or self._tree(bucket)).get(key)

    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None, limit: int = 0
    ) -> Iterator[tuple[bytes, bytes]]:
        items = (self._buckets.get(bucket) or self._tree(bucket)).items(start, end)
        return islice(items, limit) if limit > 0 else items

    def pending_writes(self) -> int:
        return self._writes

    @property
    def txid(self) -> int:
        """Txid of the last finished commit."""
        return self._meta.txid

    # -- commit --------------------------------------------------------------------------------

    def prepare_commit(self) -> BoltPendingCommit | None:
        if self._closed:
            raise self._fail("backend is closed")
        if self._inflight is not None:
            raise self._fail(f"prepare_commit before finish_commit of txid {self._inflight.txid}")
        if not self._changed:
            self._writes = 0
            return None
        meta = self._meta
        txid = meta.txid + 1
        with self._readers_lock:
            floor = min([meta.txid, *self._readers])
        self._freelist.release(floor)
        ps = self.page_size
        spiller = _Spiller(self._freelist, txid, self._hwm, ps, self.path)
        if self._freelist_page is not None:
            pgid, span = self._freelist_page
            self._freelist.free(txid, pgid, span)
            self._freelist_page = None
        root = self._root
        max_inline = ps // 4
        for name, tree in self._buckets.items():
            if not tree.dirty:
                continue
            tree.rebalance(spiller)
            node = tree.root
            assert node is not None
            if node.is_leaf and not node.has_sub_buckets() and node.size() <= max_inline:
                # bbolt's inlineable rule: a small single-leaf bucket lives in its parent's value.
                spiller.free(node)
                node.dirty = False
                tree.root_pgid = 0
                value = encode_bucket_value(
                    0, tree.sequence, encode_leaf(node.keys, node.vals, node.flags)
                )
            else:
                tree.spill(spiller)
                value = encode_bucket_value(tree.root_pgid, tree.sequence)
            root.put(name, value, BUCKET_LEAF_FLAG)
            tree.dirty = False
            tree.fill = DEFAULT_FILL
        root.rebalance(spiller)
        root.spill(spiller)
        root.dirty = False
        new_meta = Meta(
            ps, root.root_pgid, root.sequence, PGID_NO_FREELIST, spiller.hwm, txid, meta.flags
        )
        grow_to = 0
        needed = spiller.hwm * ps
        if needed > self._file_size:
            grow_to = _grow_target(needed, ps) if self._grow_in_steps else 0
            self._file_size = grow_to or needed
        self._hwm = spiller.hwm
        pending = BoltPendingCommit(
            self._fd, self.path, page_size=ps, meta=new_meta, pages=spiller.pages, grow_to=grow_to
        )
        self._inflight = pending
        self._changed = False
        self._writes = 0
        return pending

    def finish_commit(self, pending: PendingCommit) -> None:
        if not isinstance(pending, BoltPendingCommit) or pending is not self._inflight:
            raise self._fail(f"finish_commit of txid {pending.txid}, which is not in flight")
        if not pending.written:
            raise self._fail(f"finish_commit of txid {pending.txid} before its write() completed")
        self._meta = pending.meta
        self._inflight = None

    def commit(self) -> None:
        pending = self.prepare_commit()
        if pending is not None:
            pending.write()
            self.finish_commit(pending)

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> BoltSnapshotReader:
        if self._closed:
            raise self._fail("backend is closed")
        # A separate open file description: it survives a defrag's rename and close of ours.
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        meta = self._meta
        with self._readers_lock:
            self._readers[meta.txid] = self._readers.get(meta.txid, 0) + 1
        return BoltSnapshotReader(self, fd, meta, self._generation)

    def _unpin(self, txid: int, generation: int) -> None:
        with self._readers_lock:
            if generation != self._generation:
                return  # pinned pages of a file that defrag has since replaced
            n = self._readers.get(txid, 0) - 1
            if n > 0:
                self._readers[txid] = n
            else:
                self._readers.pop(txid, None)

    # -- maintenance ---------------------------------------------------------------------------

    def size(self) -> int:
        # Tracked rather than fstat'ed: the quota check asks on every write.
        return self._file_size

    def size_in_use(self) -> int:
        """Like etcd's ``dbSizeInUse``: bytes up to the high-water mark minus free pages.

        Pending pages count as in use (as in etcd). The pre-grown tail of the file beyond the
        high-water mark is not counted: upstream etcd's file ends at the high-water mark, so
        this is the number etcd reports for the same pages.
        """
        return (self._hwm - self._freelist.free_count) * self.page_size

    def free_page_count(self) -> int:
        return self._freelist.free_count

    def hash(self, ignore: Collection[tuple[bytes, bytes]] = ()) -> int:
        """etcd's ``backend.Hash``: CRC-32C over each bucket name, then its keys and values.

        ``ignore`` holds (bucket, key) pairs left out, like etcd's ``DefaultIgnores``.
        """
        h = 0
        for name in sorted(self._buckets):
            h = crc32c.crc32c(name, h)
            for k, v in self._buckets[name].items():
                if ignore and (name, k) in ignore:
                    continue
                h = crc32c.crc32c(v, crc32c.crc32c(k, h))
        return int(h)

    def defrag(self) -> None:
        """Copy every bucket into a fresh file (fill 0.9, a commit every 10k keys), swap it in.

        Like etcd's ``defragdb`` it copies top-level buckets only: nested buckets (which etcd
        never creates) are not supported here. Open snapshot readers keep reading the old file.
        """
        if self._inflight is not None:
            raise self._fail("defrag while a commit is in flight")
        self.commit()
        tmp = self.path + ".defrag.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        self._new_page_size = self.page_size
        fresh = BoltBackend(tmp, page_size=self.page_size, grow_in_steps=self._grow_in_steps)
        try:
            for name in sorted(self._buckets):
                tree = self._buckets[name]
                fresh.create_bucket(name)
                fresh._buckets[name].sequence = tree.sequence
                for n, (k, v) in enumerate(tree.items(), 1):
                    fresh.put(name, k, v, seq=True)
                    if n % DEFRAG_LIMIT == 0:
                        fresh.commit()
            fresh.close()
        except BaseException:
            fresh._close_fd()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._close_fd()
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        with self._readers_lock:
            self._readers.clear()
        self._open()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._closed = True

    def close(self) -> None:
        if self._closed:
            return
        if self._inflight is not None:
            raise self._fail(f"close while the commit of txid {self._inflight.txid} is in flight")
        self.commit()
        self._close_fd()

    def __enter__(self) -> BoltBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
