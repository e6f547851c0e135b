"""BoltBackend: file layout, commit protocol, reopen, crash safety, errors, maintenance."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import crc32c
import pytest
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.backend.contract import ALL_BUCKETS, Backend, BackendError, SnapshotReader
from pyetcd.backend.page import (
    BUCKET_HEADER,
    FREELIST_PAGE,
    LEAF_PAGE,
    PGID_NO_FREELIST,
    Meta,
    decode_freelist,
    encode_freelist,
    page_header,
)

from .helpers import contents, read_metas, rev_key, write_meta


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "db")


def test_backend_satisfies_the_contract(db_path: str) -> None:
    b: Backend = BoltBackend(db_path)
    b.close()
    b = BoltBackend.open(db_path)
    assert b.path == db_path and b.page_size == 4096
    b.close()


def test_fresh_file_is_bbolt_db_init(db_path: str) -> None:
    BoltBackend(db_path).close()  # nothing to commit: the file stays as created
    data = Path(db_path).read_bytes()
    assert len(data) == 4 * 4096
    m0, m1 = read_metas(db_path)
    assert m0 == Meta(4096, root=3, sequence=0, freelist=2, pgid=4, txid=0)
    assert m1 == Meta(4096, root=3, sequence=0, freelist=2, pgid=4, txid=1)
    assert page_header(data, 4096)[:2] == (1, 4)
    assert page_header(data, 2 * 4096) == (2, FREELIST_PAGE, 0, 0)
    assert page_header(data, 3 * 4096) == (3, LEAF_PAGE, 0, 0)


def test_first_commit_drops_the_freelist_page(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        for name in ALL_BUCKETS:
            b.create_bucket(name)
        b.commit()
        assert b.txid == 2
    meta = max(read_metas(db_path), key=lambda m: m.txid)
    assert meta.freelist == PGID_NO_FREELIST
    with BoltBackend(db_path) as b:
        assert b.bucket_names() == sorted(ALL_BUCKETS)
        assert b.free_page_count() >= 1  # pages 2 and 3 are free now


def random_ops(b: BoltBackend, model: dict[bytes, dict[bytes, bytes]], rnd: random.Random) -> None:
    bucket = rnd.choice(list(model))
    m = model[bucket]
    r = rnd.random()
    if r < 0.3 and m:
        k = rnd.choice(list(m))
        b.delete(bucket, k)
        del m[k]
    elif r < 0.35:
        k = rnd.randbytes(rnd.randint(1, 20))
        b.delete(bucket, k)
        m.pop(k, None)
    else:
        k = (
            rnd.randbytes(rnd.randint(1, 24))
            if rnd.random() < 0.7
            else b"%06d" % rnd.randint(0, 999)
        )
        v = rnd.randbytes(rnd.choice([0, 5, 50, 300, 1500]))
        b.put(bucket, k, v)
        m[k] = v


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_model(db_path: str, seed: int) -> None:
    rnd = random.Random(seed)
    model: dict[bytes, dict[bytes, bytes]] = {b"key": {}, b"meta": {}, b"lease": {}}
    b = BoltBackend(db_path)
    for name in model:
        b.create_bucket(name)
    for step in range(6000):
        random_ops(b, model, rnd)
        if rnd.random() < 0.01:
            b.commit()
        if rnd.random() < 0.002:
            # In-memory free + pending pages must be exactly what a reopen's walk finds free.
            b.commit()
            expected_free = b._freelist.all_ids()
            b.close()
            b = BoltBackend(db_path)
            assert b._freelist.free_ids() == expected_free, step
        if step % 500 == 0:
            assert contents(b) == model
            bucket = rnd.choice(list(model))
            lo, hi = sorted([rnd.randbytes(2), rnd.randbytes(2)])
            expect = sorted((k, v) for k, v in model[bucket].items() if lo <= k < hi)
            assert list(b.range(bucket, lo, hi)) == expect
            assert list(b.range(bucket, lo, hi, limit=3)) == expect[:3]
            assert all(b.get(bucket, k) == v for k, v in model[bucket].items())
    b.close()
    b = BoltBackend(db_path)
    assert contents(b) == model
    b.close()


def test_sequential_puts_fill_pages_to_ninety_percent(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"key")
        for i in range(1, 20001):
            b.put(b"key", rev_key(i), b"v" * 200, seq=True)
            if i % 5000 == 0:
                b.commit()
        tree = b._buckets[b"key"]
        leaves = list(tree.leaves())
        # 16 + (16 + 17 + 200) per element: 0.9 * 4096 fits 15 elements (0.5 would give 8).
        assert max(len(n.keys) for n in leaves) == 15
        assert sum(len(n.keys) for n in leaves) == 20000
        assert b.get(b"key", rev_key(12345)) == b"v" * 200
        assert b.get(b"key", rev_key(20001)) is None


def test_large_values_use_overflow_pages(db_path: str) -> None:
    big = {b"a": os.urandom(10_000), b"b": os.urandom(100_000), b"c": os.urandom(5000)}
    with BoltBackend(db_path) as b:
        b.create_bucket(b"key")
        for k, v in big.items():
            b.put(b"key", k, v)
        b.commit()
        spans = sorted(n.span for n in b._buckets[b"key"].nodes())
        assert spans[-1] >= 25  # the 100 kB value's page has >= 24 overflow pages
    with BoltBackend(db_path) as b:
        assert contents(b) == {b"key": big}
        b.delete(b"key", b"b")
        b.commit()
    with BoltBackend(db_path) as b:
        del big[b"b"]
        assert contents(b) == {b"key": big}
        assert b.free_page_count() >= 24


def bucket_root(db_path: str, name: bytes) -> int:
    with BoltBackend(db_path) as b:
        value = b._root.get(name)
        assert value is not None
        return int(BUCKET_HEADER.unpack_from(value)[0])


def test_small_buckets_are_inline_and_move_out_when_they_grow(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"meta")
        b.put(b"meta", b"consistent_index", bytes(8))
    assert bucket_root(db_path, b"meta") == 0
    with BoltBackend(db_path) as b:
        for i in range(40):
            b.put(b"meta", b"k%02d" % i, b"x" * 30)  # > 1024 bytes: not inlineable
    assert bucket_root(db_path, b"meta") != 0
    with BoltBackend(db_path) as b:
        for i in range(40):
            b.delete(b"meta", b"k%02d" % i)
    assert bucket_root(db_path, b"meta") == 0
    with BoltBackend(db_path) as b:
        assert contents(b) == {b"meta": {b"consistent_index": bytes(8)}}


def test_reads_see_writes_while_a_commit_is_written_in_a_thread(db_path: str) -> None:
    b = BoltBackend(db_path)
    b.create_bucket(b"key")
    for i in range(1, 3001):
        b.put(b"key", rev_key(i), b"a" * 100, seq=True)
    assert b.pending_writes() == 3000
    pending = b.prepare_commit()
    assert pending is not None and pending.txid == 2
    assert b.pending_writes() == 0
    with pytest.raises(BackendError, match="before finish_commit"):
        b.prepare_commit()
    done = threading.Event()

    def write_in_thread() -> None:
        pending.write()
        done.set()

    t = threading.Thread(target=write_in_thread)
    t.start()
    # The owner keeps applying and reading while the pages and meta are written.
    for i in range(3001, 4001):
        b.put(b"key", rev_key(i), b"b" * 100, seq=True)
    b.delete(b"key", rev_key(1))
    assert b.get(b"key", rev_key(1)) is None
    assert b.get(b"key", rev_key(3500)) == b"b" * 100
    assert len(list(b.range(b"key", rev_key(0), rev_key(5000)))) == 3999
    t.join()
    assert done.is_set()
    assert b.txid == 1  # not finished yet
    b.finish_commit(pending)
    assert b.txid == 2
    b.close()
    with BoltBackend(db_path) as b:
        assert b.txid == 3
        assert len(list(b.range(b"key", b""))) == 3999


def test_finish_commit_requires_a_completed_write(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"x")
        pending = b.prepare_commit()
        assert pending is not None
        with pytest.raises(BackendError, match="before its write"):
            b.finish_commit(pending)
        pending.write()
        b.finish_commit(pending)
        assert b.prepare_commit() is None  # nothing changed


def test_corrupt_newest_meta_falls_back_to_the_previous_txid(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"key")
        b.put(b"key", b"a", b"1")
        b.commit()
        b.put(b"key", b"a", b"2")
        b.put(b"key", b"b", b"2")
        b.commit()
        newest = b.txid
    with open(db_path, "r+b") as f:
        f.seek((newest % 2) * 4096 + 16 + 40)  # inside the meta: checksum no longer matches
        f.write(b"\xff")
    with BoltBackend(db_path) as b:
        assert b.txid == newest - 1
        assert contents(b) == {b"key": {b"a": b"1"}}


def test_commit_interrupted_before_its_meta_leaves_the_previous_state(db_path: str) -> None:
    b = BoltBackend(db_path)
    b.create_bucket(b"key")
    for i in range(2000):
        b.put(b"key", b"%05d" % i, b"old")
    b.commit()
    for i in range(0, 2000, 2):
        b.put(b"key", b"%05d" % i, b"new" * 50)
    pending = b.prepare_commit()
    assert pending is not None
    # Simulate a crash after the page writes and before the meta write.
    fd = os.open(db_path, os.O_WRONLY)
    for offset, data in pending._runs:
        os.pwrite(fd, data, offset)
    os.close(fd)
    b._close_fd()
    with BoltBackend(db_path) as b2:
        assert b2.txid == 2
        assert contents(b2) == {b"key": {b"%05d" % i: b"old" for i in range(2000)}}


def corrupt(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def make_db(path: str, n: int = 2000) -> int:
    """A committed db with a multi-level `key` bucket; returns the root page of `key`."""
    with BoltBackend(path) as b:
        b.create_bucket(b"key")
        for i in range(n):
            b.put(b"key", b"%06d" % i, b"v" * 100)
        b.commit()
        return b._buckets[b"key"].root_pgid


def test_error_bad_magic_in_both_metas(db_path: str) -> None:
    make_db(db_path)
    corrupt(db_path, 16, b"\0\0\0\0")
    corrupt(db_path, 4096 + 16, b"\0\0\0\0")
    with pytest.raises(BackendError) as e:
        BoltBackend(db_path)
    assert db_path in str(e.value) and "invalid magic" in str(e.value)


def test_error_file_smaller_than_two_pages(db_path: str) -> None:
    make_db(db_path)
    os.truncate(db_path, 5000)
    with pytest.raises(BackendError, match="smaller than two pages") as e:
        BoltBackend(db_path)
    assert db_path in str(e.value)
    os.truncate(db_path, 100)
    with pytest.raises(BackendError, match="smaller than two pages"):
        BoltBackend(db_path)


def test_error_truncated_file_invalidates_both_metas(db_path: str) -> None:
    make_db(db_path)
    os.truncate(db_path, 3 * 4096)
    with pytest.raises(BackendError, match="beyond the end of the file") as e:
        BoltBackend(db_path)
    assert db_path in str(e.value)


def test_error_page_of_the_wrong_type(db_path: str) -> None:
    root = make_db(db_path)
    corrupt(db_path, root * 4096 + 8, b"\x10\x00")  # flags = freelist
    with pytest.raises(BackendError, match=f"page {root} has type 0x10") as e:
        BoltBackend(db_path)
    assert db_path in str(e.value)


def test_error_branch_points_beyond_the_high_water_mark(db_path: str) -> None:
    root = make_db(db_path)
    corrupt(db_path, root * 4096 + 16 + 8, (10**9).to_bytes(8, "little"))
    with pytest.raises(BackendError, match="page 1000000000 is out of range"):
        BoltBackend(db_path)


def test_error_page_header_with_another_id(db_path: str) -> None:
    root = make_db(db_path)
    corrupt(db_path, root * 4096, (root + 1).to_bytes(8, "little"))
    with pytest.raises(BackendError, match=f"page {root} has id {root + 1}"):
        BoltBackend(db_path)


def test_error_garbage_leaf_elements(db_path: str) -> None:
    root = make_db(db_path)
    with BoltBackend(db_path) as b:
        tree = b._buckets[b"key"]
        assert tree.root is not None
        leaf = tree.root.pgids[0]
    corrupt(db_path, leaf * 4096 + 16 + 4, (99999).to_bytes(4, "little"))
    with pytest.raises(BackendError, match=f"page {leaf}: leaf element 0 points outside"):
        BoltBackend(db_path)
    assert root != leaf


def test_error_second_open_is_locked(db_path: str) -> None:
    with BoltBackend(db_path), pytest.raises(BackendError, match="locked"):
        BoltBackend(db_path)


def test_error_unknown_bucket(db_path: str) -> None:
    with BoltBackend(db_path) as b, pytest.raises(BackendError, match="does not exist"):
        b.put(b"nope", b"k", b"v")


def read_all(reader: SnapshotReader, chunk: int = 32 * 1024) -> bytes:
    parts: list[bytes] = []
    while True:
        data = reader.read(chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def test_snapshot_is_a_valid_db_and_pins_its_pages(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    rnd = random.Random(5)
    b = BoltBackend(path)
    b.create_bucket(b"key")
    b.create_bucket(b"meta")
    for i in range(5000):
        b.put(b"key", rev_key(i + 1), rnd.randbytes(150), seq=True)
    b.put(b"meta", b"consistent_index", (7).to_bytes(8, "big"))
    for i in range(0, 5000, 3):
        b.delete(b"key", rev_key(i + 1))
    b.commit()
    expected = contents(b)
    snap = b.snapshot()
    assert snap.size == b._meta.pgid * 4096
    first = snap.read(100)
    # Rewrite everything a few times while the snapshot is open: its pages must survive.
    for round_ in range(4):
        for i in range(5000):
            b.put(b"key", rev_key(i + 1), bytes([round_]) * 150)
        b.commit()
    data = first + read_all(snap)
    snap.close()
    assert len(data) == snap.size
    m0, m1 = read_metas_bytes(data)
    assert (m0.txid, m1.txid) == (snap.txid, snap.txid - 1)
    assert m0.freelist == PGID_NO_FREELIST
    out = tmp_path / "snap.db"
    out.write_bytes(data)
    with BoltBackend(str(out)) as s:
        assert contents(s) == expected
    b.close()


def read_metas_bytes(data: bytes) -> list[Meta]:
    from pyetcd.backend.page import decode_meta

    return [decode_meta(data, 0), decode_meta(data, 4096)]


def test_pages_are_reused_after_the_snapshot_closes(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"key")
        for i in range(3000):
            b.put(b"key", b"%06d" % i, b"x" * 100)
        b.commit()
        snap = b.snapshot()
        for _ in range(3):
            for i in range(3000):
                b.put(b"key", b"%06d" % i, b"y" * 100)
            b.commit()
        grown = b._meta.pgid
        snap.close()
        for _ in range(3):
            for i in range(3000):
                b.put(b"key", b"%06d" % i, b"z" * 100)
            b.commit()
        assert b._meta.pgid == grown  # freed pages were reused once nothing pinned them


def test_hash_is_crc32c_over_bucket_names_keys_and_values(db_path: str) -> None:
    with BoltBackend(db_path) as b:
        b.create_bucket(b"meta")
        b.create_bucket(b"key")
        b.put(b"key", b"k1", b"v1")
        b.put(b"key", b"k2", b"v2")
        b.put(b"meta", b"consistent_index", b"\0" * 8)
        expect = 0
        for part in [b"key", b"k1", b"v1", b"k2", b"v2", b"meta", b"consistent_index", b"\0" * 8]:
            expect = crc32c.crc32c(part, expect)
        assert b.hash() == expect
        skipped = 0
        for part in [b"key", b"k1", b"v1", b"k2", b"v2", b"meta"]:
            skipped = crc32c.crc32c(part, skipped)
        assert b.hash(ignore={(b"meta", b"consistent_index")}) == skipped


def test_defrag_compacts_and_keeps_content(db_path: str) -> None:
    b = BoltBackend(db_path)
    b.create_bucket(b"key")
    b.create_bucket(b"meta")
    for i in range(30000):
        b.put(b"key", rev_key(i + 1), os.urandom(200), seq=True)
        if i % 10000 == 9999:
            b.commit()
    for i in range(0, 30000):
        if i % 10:
            b.delete(b"key", rev_key(i + 1))
    b.put(b"meta", b"m", b"1")
    b.commit()
    before = contents(b)
    h = b.hash()
    size = b.size()
    snap = b.snapshot()  # an open snapshot keeps reading the old file
    b.defrag()
    assert contents(b) == before and b.hash() == h
    assert b.size() < size
    assert b.size_in_use() <= b.size()
    assert len(read_all(snap)) == snap.size
    snap.close()
    assert not os.path.exists(db_path + ".defrag.tmp")
    b.put(b"key", rev_key(10**6), b"after")
    b.close()
    with BoltBackend(db_path) as b:
        assert b.get(b"key", rev_key(10**6)) == b"after"
        assert len(list(b.range(b"key", b""))) == 3001


def add_freelist_page(path: str, page_size: int, extra_free: int = 0) -> list[int]:
    """Rewrite the newest meta of a closed db so that it has a persisted freelist page.

    ``extra_free`` pages are added past the high-water mark (sparse) to reach the long form.
    Returns the ids the freelist page lists.
    """
    with BoltBackend(path, page_size=page_size) as b:
        free = b._freelist.all_ids()
        meta = b._meta
    free += range(meta.pgid, meta.pgid + extra_free)
    at = meta.pgid + extra_free
    n = len(free)
    span = (16 + 8 * (n + (1 if n >= 0xFFFF else 0))) // page_size + 1
    page = encode_freelist(free, pgid=at, overflow=span - 1, page_size=page_size)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, page, at * page_size)
    os.close(fd)
    new = Meta(page_size, meta.root, meta.sequence, at, at + span, meta.txid + 1)
    write_meta(path, new, new.txid % 2)
    return free


@pytest.mark.parametrize(("page_size", "extra"), [(4096, 0), (1024, 70_000)])
def test_files_with_a_freelist_page(db_path: str, page_size: int, extra: int) -> None:
    with BoltBackend(db_path, page_size=page_size) as b:
        b.create_bucket(b"key")
        for i in range(3000):
            b.put(b"key", b"%06d" % i, b"v" * 50)
        b.commit()
        for i in range(0, 3000, 2):
            b.delete(b"key", b"%06d" % i)
        b.commit()
        expected = contents(b)
    listed = add_freelist_page(db_path, page_size, extra)
    with open(db_path, "rb") as f:
        meta = max(read_metas(db_path, page_size), key=lambda m: m.txid)
        f.seek(meta.freelist * page_size)
        head = f.read(page_size * ((len(listed) * 8) // page_size + 2))
    assert page_header(head)[2] == (0xFFFF if extra else len(listed))
    assert decode_freelist(head) == listed
    with BoltBackend(db_path, page_size=page_size) as b:
        assert b.page_size == page_size
        assert b._freelist.free_ids() == listed
        assert contents(b) == expected
        b.put(b"key", b"new", b"1")
        b.commit()  # frees the freelist page: from now on NoFreelistSync
    assert max(read_metas(db_path, page_size), key=lambda m: m.txid).freelist == PGID_NO_FREELIST
    with BoltBackend(db_path, page_size=page_size) as b:
        assert b.get(b"key", b"new") == b"1"
        assert b.free_page_count() >= len(listed)


@pytest.mark.parametrize("steps", [True, False])
def test_file_growth(db_path: str, steps: bool) -> None:
    with BoltBackend(db_path, grow_in_steps=steps) as b:
        b.create_bucket(b"key")
        sizes = set()
        for i in range(1, 60_001):
            b.put(b"key", rev_key(i), b"v" * 300, seq=True)
            if i % 5000 == 0:
                b.commit()
                hwm_bytes = b._meta.pgid * 4096
                assert b.size() >= hwm_bytes
                assert b.size_in_use() == hwm_bytes - b.free_page_count() * 4096
                if steps:
                    sizes.add(b.size())
                else:
                    assert b.size() == hwm_bytes
    if steps:
        # Powers of two up to 16 MiB, then 16 MiB beyond the need.
        small = sorted(s for s in sizes if s <= 16 << 20)
        assert all(s & (s - 1) == 0 for s in small)
        assert any(s > 16 << 20 for s in sizes)
