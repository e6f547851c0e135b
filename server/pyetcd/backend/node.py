"""In-memory B+tree of one bucket: parsed nodes, edits, rebalance and split, as bbolt's node.go.

A ``Node`` is a parsed page kept in memory for as long as the backend is open (a cache of parsed
pages and the dirty state in one). Branch nodes hold ``children`` slots that are loaded on first
use from ``pgids``; a slot is only ever loaded from a page of a durable transaction, because every
node touched since then is already in memory.

Edits (``Tree.put``/``Tree.delete``) only change node lists and mark the path dirty. At commit,
``Tree.rebalance`` merges underfilled nodes (bbolt's threshold: a quarter page or too few keys)
and collapses a single-child root, then ``Tree.spill`` splits every dirty node by fill percent
(bbolt's ``splitTwo``/``splitIndex``, 0.9 for etcd's sequential puts) and hands each piece to a
``PageWriter``, children before parents, so that branch elements get their children's new ids.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import accumulate, pairwise, repeat
from operator import add
from typing import Protocol

from .page import (
    BUCKET_LEAF_FLAG,
    ELEMENT_SIZE,
    HEADER_SIZE,
    MIN_KEYS_PER_PAGE,
    branch_size,
    leaf_size,
)

DEFAULT_FILL = 0.5
SEQ_FILL = 0.9  # etcd's UnsafeSeqPut sets bucket.FillPercent = 0.9


class Node:
    """One page's worth of a B+tree (possibly more until it is split at commit)."""

    __slots__ = (
        "children",
        "dirty",
        "flags",
        "is_leaf",
        "keys",
        "pgid",
        "pgids",
        "span",
        "unbalanced",
        "vals",
    )

    def __init__(
        self,
        is_leaf: bool,
        keys: list[bytes],
        vals: list[bytes] | None = None,
        flags: list[int] | None = None,
        *,
        pgids: list[int] | None = None,
        children: list[Node | None] | None = None,
        pgid: int = 0,
        span: int = 0,
    ) -> None:
        self.is_leaf = is_leaf
        self.keys = keys
        self.vals: list[bytes] = vals if vals is not None else []
        self.flags = flags  # leaf element flags; None while all are zero
        self.pgids: list[int] = pgids if pgids is not None else []
        if children is None and not is_leaf:
            children = [None] * len(keys)
        self.children: list[Node | None] = children if children is not None else []
        self.pgid = pgid  # page this node was read from / written to; 0: none (new or inline)
        self.span = span  # pages occupied at pgid (overflow + 1)
        self.dirty = False
        self.unbalanced = False

    def size(self) -> int:
        if self.is_leaf:
            return leaf_size(self.keys, self.vals)
        return branch_size(self.keys)

    def min_keys(self) -> int:
        return 1 if self.is_leaf else 2

    def has_sub_buckets(self) -> bool:
        return self.flags is not None and any(f & BUCKET_LEAF_FLAG for f in self.flags)

    def absorb(self, other: Node) -> None:
        """Append ``other``'s elements (the right sibling) to this node."""
        if self.is_leaf:
            if self.flags is not None or other.flags is not None:
                mine = self.flags if self.flags is not None else [0] * len(self.keys)
                theirs = other.flags if other.flags is not None else [0] * len(other.keys)
                self.flags = mine + theirs
            self.vals += other.vals
        else:
            self.pgids += other.pgids
            self.children += other.children
        self.keys += other.keys


class PageWriter(Protocol):
    """Where spilled nodes go: frees old pages and allocates, encodes and records new ones."""

    def free(self, node: Node) -> None:
        """Free the pages ``node`` was read from (pending for this txid); set its pgid to 0."""

    def write(self, node: Node, size: int) -> None:
        """Allocate pages for ``node`` (``size`` bytes), encode it, set pgid/span, clear dirty."""


Loader = Callable[[int], Node]


def split_points(node: Node, page_size: int, fill: float) -> tuple[list[int], list[int]]:
    """Piece boundaries [0, ..., n] and piece sizes of ``node``, by bbolt's ``split`` loop."""
    keys = node.keys
    n = len(keys)
    if node.is_leaf:
        sizes = map(add, map(len, keys), map(len, node.vals))
    else:
        sizes = map(len, keys)
    # prefix[i]: bytes of elements [0, i), element header included.
    prefix = list(accumulate(map(add, sizes, repeat(ELEMENT_SIZE)), initial=0))
    fill = min(max(fill, 0.1), 1.0)
    threshold = int(page_size * fill)
    bounds = [0]
    start = 0
    while (
        n - start > MIN_KEYS_PER_PAGE * 2 and HEADER_SIZE + prefix[n] - prefix[start] >= page_size
    ):
        # splitIndex: the first element i (>= MinKeysPerPage into the piece) that would take
        # the piece over the threshold starts the next piece; never leave fewer than
        # MinKeysPerPage elements behind.
        j = bisect_right(prefix, threshold - HEADER_SIZE + prefix[start], start + 3)
        start = min(j - 1, n - MIN_KEYS_PER_PAGE - 1)
        bounds.append(start)
    bounds.append(n)
    piece_sizes = [HEADER_SIZE + prefix[b] - prefix[a] for a, b in pairwise(bounds)]
    return bounds, piece_sizes


def split(node: Node, page_size: int, fill: float) -> tuple[list[Node], list[int]]:
    """``node`` cut into page-sized pieces; the first piece is ``node`` itself."""
    bounds, sizes = split_points(node, page_size, fill)
    if len(sizes) == 1:
        return [node], sizes
    keys, vals, flags, pgids, children = node.keys, node.vals, node.flags, node.pgids, node.children
    pieces: list[Node] = []
    for a, b in pairwise(bounds):
        if node.is_leaf:
            piece = Node(True, keys[a:b], vals[a:b], flags[a:b] if flags is not None else None)
        else:
            piece = Node(False, keys[a:b], pgids=pgids[a:b], children=children[a:b])
        pieces.append(piece)
    first = pieces[0]
    node.keys, node.vals, node.flags = first.keys, first.vals, first.flags
    node.pgids, node.children = first.pgids, first.children
    pieces[0] = node
    return pieces, sizes


class Tree:
    """One bucket's B+tree: root node (loaded lazily), sequence, fill percent, dirty state."""

    __slots__ = ("dirty", "fill", "loader", "page_size", "root", "root_pgid", "sequence")

    def __init__(
        self,
        loader: Loader,
        page_size: int,
        root: Node | None = None,
        root_pgid: int = 0,
        sequence: int = 0,
    ) -> None:
        self.loader = loader
        self.page_size = page_size
        self.root = root
        self.root_pgid = root_pgid
        self.sequence = sequence
        self.fill = DEFAULT_FILL
        self.dirty = False  # the bucket's value in its parent must be rewritten at commit

    # -- reads ---------------------------------------------------------------------------------

    def _root(self) -> Node:
        root = self.root
        if root is None:
            root = self.root = self.loader(self.root_pgid)
        return root

    def child(self, node: Node, i: int) -> Node:
        c = node.children[i]
        if c is None:
            c = node.children[i] = self.loader(node.pgids[i])
        return c

    def get(self, key: bytes) -> bytes | None:
        node = self.root or self._root()
        while not node.is_leaf:
            i = bisect_right(node.keys, key, 1) - 1  # lo=1: child 0 also takes keys below its key
            node = node.children[i] or self.child(node, i)
        keys = node.keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            return node.vals[i]
        return None

    def items(self, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end, ascending (end None: to the last key)."""
        node = self.root or self._root()
        stack: list[tuple[Node, int]] = []
        while not node.is_leaf:
            i = bisect_right(node.keys, start, 1) - 1  # lo=1: child 0 also takes keys below its key
            stack.append((node, i))
            node = node.children[i] or self.child(node, i)
        i = bisect_left(node.keys, start)
        while True:
            keys = node.keys
            if end is not None and keys and keys[-1] >= end:
                j = bisect_left(keys, end, i)
                yield from zip(keys[i:j], node.vals[i:j], strict=True)
                return
            if i == 0:
                yield from zip(keys, node.vals, strict=True)
            else:
                yield from zip(keys[i:], node.vals[i:], strict=True)
            # Next leaf: climb to the first ancestor with a right sibling, then go leftmost.
            while stack:
                parent, pi = stack.pop()
                if pi + 1 < len(parent.keys):
                    stack.append((parent, pi + 1))
                    node = parent.children[pi + 1] or self.child(parent, pi + 1)
                    while not node.is_leaf:
                        stack.append((node, 0))
                        node = node.children[0] or self.child(node, 0)
                    break
            else:
                return
            i = 0

    def items_with_flags(self) -> Iterator[tuple[bytes, bytes, int]]:
        """Every (key, value, element flags), ascending: for the root bucket and tree walks."""
        for node in self.leaves():
            flags = node.flags
            if flags is None:
                for k, v in zip(node.keys, node.vals, strict=True):
                    yield k, v, 0
            else:
                yield from zip(node.keys, node.vals, flags, strict=True)

    def leaves(self) -> Iterator[Node]:
        yield from (n for n in self.nodes() if n.is_leaf)

    def nodes(self) -> Iterator[Node]:
        """Every node, loading all of them (pre-order)."""
        stack = [self._root()]
        while stack:
            node = stack.pop()
            yield node
            if not node.is_leaf:
                stack.extend(self.child(node, i) for i in range(len(node.keys) - 1, -1, -1))

    # -- writes --------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, flag: int = 0) -> None:
        node = self.root or self._root()
        node.dirty = True
        while not node.is_leaf:
            i = bisect_right(node.keys, key, 1) - 1  # lo=1: child 0 also takes keys below its key
            node = node.children[i] or self.child(node, i)
            node.dirty = True
        keys = node.keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            node.vals[i] = value
            if node.flags is not None:
                node.flags[i] = flag
            elif flag:
                node.flags = [0] * len(keys)
                node.flags[i] = flag
        else:
            keys.insert(i, key)
            node.vals.insert(i, value)
            if node.flags is not None:
                node.flags.insert(i, flag)
            elif flag:
                node.flags = [0] * len(keys)
                node.flags[i] = flag
        self.dirty = True

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; False if it was absent (nothing is marked dirty then)."""
        node = self.root or self._root()
        path = [node]
        while not node.is_leaf:
            i = bisect_right(node.keys, key, 1) - 1  # lo=1: child 0 also takes keys below its key
            node = node.children[i] or self.child(node, i)
            path.append(node)
        keys = node.keys
        i = bisect_left(keys, key)
        if i >= len(keys) or keys[i] != key:
            return False
        del keys[i]
        del node.vals[i]
        if node.flags is not None:
            del node.flags[i]
        node.unbalanced = True
        for n in path:
            n.dirty = True
        self.dirty = True
        return True

    # -- commit --------------------------------------------------------------------------------

    def rebalance(self, writer: PageWriter) -> None:
        """Merge underfilled nodes that lost keys; collapse a root branch with one child."""
        root = self.root
        if root is None or not root.dirty:
            return
        if not root.is_leaf:
            self._rebalance_children(root, writer)
        while not root.is_leaf and len(root.keys) == 1:
            child = self.child(root, 0)
            writer.free(root)
            root = child
        if not root.is_leaf and not root.keys:
            writer.free(root)
            root = Node(True, [], [])
            root.dirty = True
        root.unbalanced = False
        self.root = root

    def _rebalance_children(self, node: Node, writer: PageWriter) -> None:
        # Post-order: a child branch first fixes its own children, which may leave it underfilled.
        for c in node.children:
            if c is not None and c.dirty and not c.is_leaf:
                self._rebalance_children(c, writer)
        threshold = self.page_size // 4
        keys, pgids, children = node.keys, node.pgids, node.children
        i = 0
        while i < len(children):
            c = children[i]
            if c is None or not c.unbalanced:
                i += 1
                continue
            c.unbalanced = False
            if len(c.keys) > c.min_keys() and c.size() > threshold:
                i += 1
                continue
            if not c.keys:
                writer.free(c)
                del keys[i], pgids[i], children[i]
                node.unbalanced = True
                continue
            if len(children) == 1:
                i += 1
                continue
            if i == 0:
                # The leftmost node takes its right sibling's elements.
                right = self.child(node, 1)
                c.absorb(right)
                writer.free(right)
                c.dirty = True
                del keys[1], pgids[1], children[1]
                i += 1
            else:
                left = self.child(node, i - 1)
                left.absorb(c)
                writer.free(c)
                left.dirty = True
                del keys[i], pgids[i], children[i]
            node.unbalanced = True

    def spill(self, writer: PageWriter) -> None:
        """Write every dirty node to new pages; afterwards ``root_pgid`` is the new root."""
        root = self.root
        if root is None:
            return
        if root.dirty:
            pieces = self._spill(root, writer)
            while len(pieces) > 1:
                parent = Node(
                    False,
                    [p.keys[0] for p in pieces],
                    pgids=[p.pgid for p in pieces],
                    children=list(pieces),
                )
                parent.dirty = True
                pieces = self._spill(parent, writer)
            root = self.root = pieces[0]
        self.root_pgid = root.pgid

    def _spill(self, node: Node, writer: PageWriter) -> list[Node]:
        if not node.is_leaf:
            keys, pgids, children = node.keys, node.pgids, node.children
            grown: dict[int, list[Node]] = {}
            for i, c in enumerate(children):
                if c is not None and c.dirty:
                    pieces = self._spill(c, writer)
                    if len(pieces) == 1:
                        keys[i] = c.keys[0]
                        pgids[i] = c.pgid
                    else:
                        grown[i] = pieces
            if grown:
                new_keys: list[bytes] = []
                new_pgids: list[int] = []
                new_children: list[Node | None] = []
                for i, c in enumerate(children):
                    group = grown.get(i)
                    if group is None:
                        new_keys.append(keys[i])
                        new_pgids.append(pgids[i])
                        new_children.append(c)
                    else:
                        new_keys.extend(p.keys[0] for p in group)
                        new_pgids.extend(p.pgid for p in group)
                        new_children.extend(group)
                node.keys, node.pgids, node.children = new_keys, new_pgids, new_children
        writer.free(node)
        pieces, sizes = split(node, self.page_size, self.fill)
        for piece, size in zip(pieces, sizes, strict=True):
            writer.write(piece, size)
        return pieces
