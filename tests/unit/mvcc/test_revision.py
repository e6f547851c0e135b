"""Revision keys: etcd's 17/18-byte format and the packed in-memory form."""

from __future__ import annotations

import pytest
from pyetcd.backend.contract import KEY, Backend
from pyetcd.mvcc import KVStore
from pyetcd.mvcc.revision import (
    bytes_to_packed,
    bytes_to_rev,
    is_tombstone,
    main_of,
    pack,
    packed_to_bytes,
    rev_to_bytes,
    sub_of,
    tombstone_bytes,
)


@pytest.mark.parametrize(
    ("main", "sub", "hexkey"),
    [
        (2, 0, "00000000000000025f0000000000000000"),
        (1, 5, "00000000000000015f0000000000000005"),
        (0x0102030405060708, 0x1112, "01020304050607085f0000000000001112"),
    ],
)
def test_revision_bytes_round_trip(main: int, sub: int, hexkey: str) -> None:
    b = rev_to_bytes(main, sub)
    assert b.hex() == hexkey
    assert bytes_to_rev(b) == (main, sub)
    assert packed_to_bytes(pack(main, sub)) == b
    assert bytes_to_packed(b) == pack(main, sub)
    assert (main_of(pack(main, sub)), sub_of(pack(main, sub))) == (main, sub)
    assert not is_tombstone(b)
    t = tombstone_bytes(main, sub)
    assert t == b + b"t" and is_tombstone(t) and bytes_to_rev(t) == (main, sub)


def test_packed_order_is_revision_order() -> None:
    revs = [(1, 0), (1, 1), (1, 200), (2, 0), (2, 1), (300, 0)]
    packed = [pack(m, s) for m, s in revs]
    assert packed == sorted(packed)
    assert [rev_to_bytes(m, s) for m, s in revs] == sorted(rev_to_bytes(m, s) for m, s in revs)


def test_first_put_matches_etcd_fixture_bytes(backend: Backend) -> None:
    # etcd reference fixture: key {2,0} -> KeyValue{foo, create 2, mod 2, version 1, "bar"}.
    store = KVStore(backend)
    store.put(b"foo", b"bar")
    assert list(backend.range(KEY, b"")) == [
        (
            bytes.fromhex("00000000000000025f0000000000000000"),
            bytes.fromhex("0a03666f6f1002180220012a03626172"),
        )
    ]
