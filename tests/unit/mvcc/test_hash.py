"""HashKV: etcd's CRC-32C over the key bucket, stable across members and physical compaction."""

from __future__ import annotations

import crc32c
import pytest
from pyetcd.backend.contract import KEY, Backend
from pyetcd.mvcc import ErrCompacted, ErrFutureRev, KeyValueHash, KVStore
from pyetcd.mvcc.revision import bytes_to_rev

from tests.unit.mvcc.conftest import BackendFactory
from tests.unit.mvcc.helpers import apply_random_history


def test_hash_is_crc32c_of_bucket_name_then_pairs(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"a", b"1")
    s.put(b"b", b"2")
    s.delete_range(b"a")
    expected = crc32c.crc32c(b"key")
    for k, v in backend.range(KEY, b""):
        expected = crc32c.crc32c(k, expected)
        expected = crc32c.crc32c(v, expected)
    h, cur = s.hash_kv()
    assert h == KeyValueHash(expected, -1, 4)
    assert cur == 4
    # At revision 3 only the entries with main revision <= 3 count.
    at3 = crc32c.crc32c(b"key")
    for k, v in backend.range(KEY, b""):
        if bytes_to_rev(k)[0] <= 3:
            at3 = crc32c.crc32c(v, crc32c.crc32c(k, at3))
    assert s.hash_kv(3)[0] == KeyValueHash(at3, -1, 3)


def test_same_history_same_hash_and_writes_change_it(make_backend: BackendFactory) -> None:
    a, b = KVStore(make_backend()), KVStore(make_backend())
    apply_random_history(a, 3)
    apply_random_history(b, 3)
    cur = a.current_revision
    assert all(a.hash_kv(rev) == b.hash_kv(rev) for rev in range(1, cur + 1))
    before = a.hash_kv()[0]
    a.put(b"k00", b"new")
    assert a.hash_kv()[0].hash != before.hash
    assert a.hash_kv(cur)[0] == before  # the past is unchanged
    b.put(b"k00", b"other value")
    assert a.hash_kv()[0].hash != b.hash_kv()[0].hash


def test_hash_is_the_same_before_and_after_physical_compaction(
    make_backend: BackendFactory,
) -> None:
    done, pending = KVStore(make_backend()), KVStore(make_backend())
    apply_random_history(done, 5)
    apply_random_history(pending, 5)
    cur = done.current_revision
    at = cur // 2
    done.compact(at)
    done.run_compactions()
    pending.compact(at)  # scheduled on this member, not yet applied to its backend
    # (HashKV exactly at `at` is answered from the finished compaction's stored hash instead.)
    for rev in range(at + 1, cur + 1):
        assert done.hash_kv(rev) == pending.hash_kv(rev), rev
        assert done.hash_kv(rev)[0].compact_revision == at


def test_hash_revision_errors(backend: Backend) -> None:
    s = KVStore(backend)
    for i in range(6):
        s.put(b"k", b"%d" % i)  # 2..7
    with pytest.raises(ErrFutureRev):
        s.hash_kv(8)
    s.compact(5)
    s.run_compactions()
    with pytest.raises(ErrCompacted):
        s.hash_kv(4)
    assert s.hash_kv(6)[0].revision == 6  # HashKV at the compact revision itself is allowed


def test_compaction_stores_its_hash_for_hashkv_at_that_revision(
    make_backend: BackendFactory,
) -> None:
    compacted, plain = KVStore(make_backend()), KVStore(make_backend())
    apply_random_history(compacted, 8)
    apply_random_history(plain, 8)
    cur = compacted.current_revision
    c1, c2 = cur // 3, 2 * cur // 3
    expected_c1 = plain.hash_kv(c1)[0]
    compacted.compact(c1)
    compacted.run_compactions()
    stored = compacted.hash_kv(c1)[0]
    # Served from the compaction's hash: prev compact revision (-1) and the same CRC.
    assert stored == KeyValueHash(expected_c1.hash, -1, c1)
    compacted.compact(c2)
    compacted.run_compactions()
    # The second compaction hashed (c1, c2] plus what c1 kept: what a member that compacted
    # only at c1 computes for c2.
    plain.compact(c1)
    plain.run_compactions()
    assert compacted.hash_kv(c2)[0] == plain.hash_kv(c2)[0]
    assert [h.revision for h in compacted.hashes.hashes()] == [c1, c2]
