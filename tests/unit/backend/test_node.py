"""B+tree nodes: bbolt's split rule, rebalance/merge, root collapse, spill order."""

from __future__ import annotations

import itertools
import random

import pytest
from pyetcd.backend.node import SEQ_FILL, Node, Tree, split, split_points


def reference_split(sizes: list[int], page_size: int, fill: float) -> list[int]:
    """bbolt's node.split/splitTwo/splitIndex transcribed literally; returns piece lengths."""
    pieces = []
    rest = list(sizes)
    while True:
        total = 16 + sum(16 + s for s in rest)
        if len(rest) <= 4 or total < page_size:
            pieces.append(len(rest))
            return pieces
        threshold = int(page_size * fill)
        sz, index = 16, 0
        for i in range(len(rest) - 2):
            index = i
            el = 16 + rest[i]
            if i >= 2 and sz + el > threshold:
                break
            sz += el
        pieces.append(index)
        rest = rest[index:]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fill", [0.5, SEQ_FILL, 1.0])
def test_split_points_match_bbolt(seed: int, fill: float) -> None:
    rnd = random.Random(seed)
    n = rnd.randint(1, 400)
    keys = [rnd.randbytes(rnd.randint(1, 40)) for _ in range(n)]
    vals = [rnd.randbytes(rnd.choice([0, 10, 200, 3000])) for _ in range(n)]
    node = Node(True, keys, vals)
    bounds, sizes = split_points(node, 4096, fill)
    lengths = [b - a for a, b in itertools.pairwise(bounds)]
    expect = reference_split([len(k) + len(v) for k, v in zip(keys, vals, strict=True)], 4096, fill)
    assert lengths == expect
    assert sum(sizes) == node.size() + 16 * (len(sizes) - 1)


def test_split_keeps_two_keys_per_piece_and_first_piece_is_the_node() -> None:
    keys = [bytes([i]) for i in range(1, 11)]
    node = Node(True, keys, [b"v" * 3000] * 10, [0] * 10)
    pieces, sizes = split(node, 4096, 0.5)
    assert pieces[0] is node
    assert all(len(p.keys) >= 2 for p in pieces)
    assert [k for p in pieces for k in p.keys] == keys
    assert all(p.flags == [0] * len(p.keys) for p in pieces)
    assert sizes == [p.size() for p in pieces]


class FakeWriter:
    """A PageWriter that hands out increasing page ids and records frees."""

    def __init__(self) -> None:
        self.next = 10
        self.freed: list[int] = []
        self.written: dict[int, Node] = {}

    def free(self, node: Node) -> None:
        if node.pgid:
            self.freed.append(node.pgid)
            node.pgid = 0

    def write(self, node: Node, size: int) -> None:
        span = -(-size // 4096)
        node.pgid, node.span = self.next, span
        self.next += span
        node.dirty = False
        self.written[node.pgid] = node


def no_loader(pgid: int) -> Node:
    raise AssertionError(f"unexpected page load {pgid}")


def check_tree(tree: Tree) -> list[bytes]:
    """Key order, branch keys equal to first child keys, all pieces written; returns keys."""
    assert tree.root is not None

    def walk(node: Node, depth: int, leaf_depths: set[int]) -> list[bytes]:
        assert node.pgid and not node.dirty
        if node.is_leaf:
            leaf_depths.add(depth)
            return list(node.keys)
        out: list[bytes] = []
        for i, child in enumerate(node.children):
            assert child is not None and child.pgid == node.pgids[i]
            assert child.keys and node.keys[i] == child.keys[0]
            out += walk(child, depth + 1, leaf_depths)
        return out

    depths: set[int] = set()
    keys = walk(tree.root, 0, depths)
    assert len(depths) == 1
    assert keys == sorted(keys)
    return keys


def test_spill_builds_levels_then_rebalance_merges_and_collapses() -> None:
    root = Node(True, [], [])
    tree = Tree(no_loader, 4096, root=root)
    w = FakeWriter()
    keys = [b"%08d" % i for i in range(5000)]
    for k in keys:
        tree.put(k, b"v" * 100, 0)
    tree.spill(w)
    assert check_tree(tree) == keys
    assert tree.root is not None and not tree.root.is_leaf
    assert tree.root_pgid == tree.root.pgid
    # Delete all but three keys: underfilled nodes merge, and the root collapses to a leaf.
    for k in keys[3:]:
        assert tree.delete(k)
    assert not tree.delete(b"absent")
    tree.rebalance(w)
    tree.spill(w)
    assert check_tree(tree) == keys[:3]
    assert tree.root is not None and tree.root.is_leaf
    assert len(set(w.freed)) == len(w.freed)


def test_random_edits_keep_the_tree_valid() -> None:
    rnd = random.Random(3)
    tree = Tree(no_loader, 4096, root=Node(True, [], []))
    w = FakeWriter()
    model: dict[bytes, bytes] = {}
    for step in range(30):
        for _ in range(rnd.randint(0, 800)):
            k = b"%06d" % rnd.randint(0, 20000)
            if rnd.random() < 0.4:
                assert tree.delete(k) == (k in model)
                model.pop(k, None)
            else:
                v = rnd.randbytes(rnd.randint(0, 300))
                tree.put(k, v, 0)
                model[k] = v
        tree.rebalance(w)
        tree.spill(w)
        if tree.root is not None and tree.root.keys:
            assert check_tree(tree) == sorted(model), step
        assert dict(tree.items()) == model
        assert list(tree.items(b"005", b"010")) == sorted(
            (k, v) for k, v in model.items() if b"005" <= k < b"010"
        )
