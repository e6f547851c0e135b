"""BoltScan: a read-only streaming walk gives what BoltBackend holds (multi-level trees,
overflow pages, inline buckets), counts the in-use pages as BoltBackend does, ignores bytes past
the db (a snapshot's trailer), never writes, and fails with a reason on files that are empty,
not bbolt, truncated, locked by a writer, or damaged (a page with the wrong id or type, a page
referenced twice)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.backend.contract import BackendError
from pyetcd.backend.scan import BoltScan

from .helpers import contents, rev_key

PS = 4096


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "db")


def make_etcd_like_db(path: str) -> None:
    """`key` with several levels and overflow values, small inline buckets, free pages."""
    with BoltBackend(path) as b:
        for name in (b"key", b"lease", b"meta", b"members"):
            b.create_bucket(name)
        for i in range(1, 4001):
            b.put(b"key", rev_key(i), b"v%d" % i * (i % 40), seq=True)
        b.put(b"key", rev_key(4001), os.urandom(3 * PS))  # spans overflow pages
        b.put(b"lease", (7).to_bytes(8, "big"), b"\x08\x07\x10\x3c")
        b.put(b"meta", b"consistent_index", (9).to_bytes(8, "big"))
        b.commit()
        for i in range(1, 2001, 3):  # copy-on-write leaves free pages behind
            b.delete(b"key", rev_key(i))
        b.commit()


def test_items_are_the_backends_contents(db_path: str) -> None:
    make_etcd_like_db(db_path)
    with BoltBackend(db_path) as b:
        expected = contents(b)
        in_use = b.size_in_use()
        size = b.size()
    before = Path(db_path).read_bytes()
    with BoltScan(db_path) as scan:
        assert scan.bucket_names() == sorted(expected)
        assert {name: dict(scan.items(name)) for name in scan.bucket_names()} == expected
        assert [k for k, _ in scan.items(b"key")] == sorted(expected[b"key"])
        assert scan.size == size
        assert size - (scan.meta.pgid - scan.pages_in_use()) * PS == in_use
        assert in_use < size  # the deletes left free pages to tell apart
    assert Path(db_path).read_bytes() == before  # read-only


def test_pages_in_use_without_items_walks_every_bucket(db_path: str) -> None:
    make_etcd_like_db(db_path)
    with BoltBackend(db_path) as b:
        in_use = b.size_in_use()
    with BoltScan(db_path) as scan:
        assert scan.size - (scan.meta.pgid - scan.pages_in_use()) * PS == in_use
        # A half-read bucket is walked again, not counted twice or refused.
        first = next(scan.items(b"key"))
        assert first[0] == rev_key(2)
        assert scan.size - (scan.meta.pgid - scan.pages_in_use()) * PS == in_use


def test_bytes_past_size_are_not_read(db_path: str) -> None:
    make_etcd_like_db(db_path)
    db = Path(db_path).read_bytes()
    snap = Path(db_path + ".snap")
    snap.write_bytes(db + hashlib.sha256(db).digest())
    with BoltScan(str(snap), size=len(db)) as scan:
        assert scan.size == len(db)
        assert sum(1 for _ in scan.items(b"key")) == 4001 - 667
    with pytest.raises(BackendError, match=r"truncated: the database needs \d+ bytes"):
        BoltScan(str(snap), size=len(db) - PS)


def test_missing_bucket(db_path: str) -> None:
    make_etcd_like_db(db_path)
    with BoltScan(db_path) as scan:
        assert not scan.has_bucket(b"alarm")
        with pytest.raises(BackendError, match="bucket b'alarm' does not exist"):
            list(scan.items(b"alarm"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x01" * 1000, "not a bbolt database: 1000 bytes is less than two pages"),
        (b"\x01" * 8192, "not a bbolt database: meta page 0: invalid magic 0x01010101; no valid"),
    ],
)
def test_not_a_db(db_path: str, data: bytes, message: str) -> None:
    Path(db_path).write_bytes(data)
    with pytest.raises(BackendError, match=message) as e:
        BoltScan(db_path)
    assert str(e.value).startswith(f"{db_path}: ")


def test_missing_file(db_path: str) -> None:
    with pytest.raises(BackendError, match="cannot open: No such file or directory"):
        BoltScan(db_path)
    assert not os.path.exists(db_path)  # never created


def test_truncated_file(db_path: str) -> None:
    make_etcd_like_db(db_path)
    size = os.path.getsize(db_path)
    os.truncate(db_path, size // 2)
    with pytest.raises(BackendError, match=f"the file has {size // 2}$"):
        BoltScan(db_path)


def test_locked_by_a_writer(db_path: str) -> None:
    make_etcd_like_db(db_path)
    with BoltBackend(db_path), pytest.raises(BackendError, match="is a member running on it"):
        BoltScan(db_path)
    with BoltScan(db_path), BoltScan(db_path):
        pass  # readers share the lock


def _key_root(path: str) -> tuple[int, list[int]]:
    with BoltBackend(path) as b:
        tree = b._buckets[b"key"]
        root = tree._root()
        assert not root.is_leaf
        return tree.root_pgid, list(root.pgids)


def corrupt(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_page_with_another_id_fails_when_reached(db_path: str) -> None:
    make_etcd_like_db(db_path)
    _, children = _key_root(db_path)
    leaf = children[-1]
    corrupt(db_path, leaf * PS, (leaf + 1).to_bytes(8, "little"))
    scan = BoltScan(db_path)  # opening reads only the metas and the root bucket
    with scan, pytest.raises(BackendError, match=f"page {leaf} has id {leaf + 1} in its header"):
        list(scan.items(b"key"))


def test_page_of_the_wrong_type(db_path: str) -> None:
    make_etcd_like_db(db_path)
    root, _ = _key_root(db_path)
    corrupt(db_path, root * PS + 8, b"\x10\x00")
    with BoltScan(db_path) as scan:
        with pytest.raises(BackendError, match=f"page {root}: type 0x10, expected a branch"):
            list(scan.items(b"key"))
        with pytest.raises(BackendError, match=f"page {root}: type 0x10"):
            scan.pages_in_use()


def test_page_referenced_twice_is_not_walked_again(db_path: str) -> None:
    make_etcd_like_db(db_path)
    root, children = _key_root(db_path)
    # The root branch's second child pointer now names the root itself: a cycle.
    corrupt(db_path, root * PS + 16 + 16 + 8, root.to_bytes(8, "little"))
    scan = BoltScan(db_path)
    with scan, pytest.raises(BackendError, match=f"page {root} is referenced twice"):
        list(scan.items(b"key"))
    assert children[1] != root
