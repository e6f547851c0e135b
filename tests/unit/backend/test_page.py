"""Codec round trips and golden bytes of bbolt pages (reference §2.2-§2.6, §2.14)."""

from __future__ import annotations

import struct

import pytest
from pyetcd.backend.contract import ALL_BUCKETS
from pyetcd.backend.page import (
    BRANCH_PAGE,
    FREELIST_PAGE,
    LEAF_PAGE,
    MAGIC,
    MAX_ELEMENTS,
    META_PAGE,
    PAGE_HEADER,
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
    encode_meta_body,
    encode_meta_page,
    fnv1a64,
    freelist_pages_needed,
    leaf_size,
    page_header,
)


def test_fnv1a64_known_vectors() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_meta_checksum_matches_the_etcd_fixture() -> None:
    # corrupted_backup.db from etcd's test data: meta0 checksum is 0x98781d0da1aee125 (§2.14).
    body = encode_meta_body(Meta(4096, root=2, sequence=0, freelist=3, pgid=5, txid=10))
    assert struct.unpack("<Q", body[56:])[0] == 0x98781D0DA1AEE125
    assert len(body) == 64


def test_meta_page_round_trip() -> None:
    meta = Meta(4096, root=7, sequence=3, freelist=0xFFFFFFFFFFFFFFFF, pgid=99, txid=12345)
    page = encode_meta_page(meta, 1)
    assert len(page) == 4096
    assert page_header(page) == (1, META_PAGE, 0, 0)
    assert struct.unpack_from("<II", page, 16) == (MAGIC, 2)
    assert decode_meta(page) == meta


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [(16, b"\x00\x00\x00\x00", "invalid magic"), (20, b"\x03\x00\x00\x00", "version")],
)
def test_meta_rejects_bad_magic_and_version(offset: int, value: bytes, reason: str) -> None:
    page = bytearray(encode_meta_page(Meta(4096, 3, 0, 2, 4, 1), 1))
    page[offset : offset + 4] = value
    with pytest.raises(PageError, match=reason):
        decode_meta(bytes(page))


def test_meta_rejects_bad_checksum() -> None:
    page = bytearray(encode_meta_page(Meta(4096, 3, 0, 2, 4, 1), 1))
    page[64] ^= 1  # txid
    with pytest.raises(PageError, match="checksum"):
        decode_meta(bytes(page))


def test_leaf_element_pos_is_relative_to_the_element() -> None:
    # The etcd fixture's root page: 10 bucket elements, element 0 has pos 160 (§2.14).
    names = sorted(ALL_BUCKETS)
    empty = encode_bucket_value(0, 0, encode_leaf([], [], None))
    page = encode_leaf(names, [empty] * 10, [1] * 10, pgid=2, page_size=4096)
    assert page_header(page) == (2, LEAF_PAGE, 10, 0)
    flags, pos, ksize, vsize = struct.unpack_from("<IIII", page, 16)
    assert (flags, pos, ksize, vsize) == (1, 160, len(names[0]), 32)
    # Element i's key sits at its own address + pos.
    for i in range(10):
        _, pos, ksize, _ = struct.unpack_from("<IIII", page, 16 + 16 * i)
        key_at = 16 + 16 * i + pos
        assert page[key_at : key_at + ksize] == names[i]
    assert decode_leaf(page, 10) == (names, [empty] * 10, [1] * 10)


def test_empty_inline_bucket_value_is_32_bytes() -> None:
    value = encode_bucket_value(0, 0, encode_leaf([], [], None))
    assert value == bytes(16) + PAGE_HEADER.pack(0, LEAF_PAGE, 0, 0)
    assert len(value) == 32
    assert decode_bucket_value(value) == (0, 0)


def test_leaf_round_trip_with_overflow_padding() -> None:
    keys = [b"a", b"bb", b"ccc"]
    vals = [b"", b"x" * 5000, b"yz"]
    page = encode_leaf(keys, vals, None, pgid=9, overflow=1, page_size=4096)
    assert len(page) == 8192
    assert page_header(page) == (9, LEAF_PAGE, 3, 1)
    assert decode_leaf(page, 3) == (keys, vals, None)
    assert leaf_size(keys, vals) == 16 + 3 * 16 + 6 + 5002


def test_branch_round_trip_with_large_page_ids() -> None:
    keys = [b"\x00", b"m", b"zz"]
    pgids = [2, 1 << 33 | 5, 4096]
    page = encode_branch(keys, pgids, pgid=4, overflow=0, page_size=4096)
    assert page_header(page) == (4, BRANCH_PAGE, 3, 0)
    # Branch element: pos u32, ksize u32, pgid u64; element 0's key right after the elements.
    assert struct.unpack_from("<IIQ", page, 16) == (48, 1, 2)
    assert decode_branch(page, 3) == (keys, pgids)


def test_decode_leaf_rejects_elements_outside_the_page() -> None:
    page = bytearray(encode_leaf([b"k"], [b"v"], None, pgid=3, page_size=4096))
    struct.pack_into("<I", page, 16 + 4, 5000)  # pos beyond the page
    with pytest.raises(PageError, match="outside the page"):
        decode_leaf(bytes(page), 1)
    with pytest.raises(PageError, match="overrun"):
        decode_leaf(bytes(page[:24]), 1)


def test_freelist_short_form_round_trip() -> None:
    page = encode_freelist([9, 3, 4], pgid=2, overflow=0, page_size=4096)
    assert page_header(page) == (2, FREELIST_PAGE, 3, 0)
    assert struct.unpack_from("<3Q", page, 16) == (3, 4, 9)
    assert decode_freelist(page) == [3, 4, 9]
    empty = encode_freelist([], pgid=2, overflow=0, page_size=4096)
    assert page_header(empty) == (2, FREELIST_PAGE, 0, 0)
    assert decode_freelist(empty) == []


def test_freelist_long_form_round_trip() -> None:
    ids = list(range(10, 10 + MAX_ELEMENTS + 5))
    n = freelist_pages_needed(len(ids), 4096)
    assert n == (16 + 8 * (len(ids) + 1)) // 4096 + 1
    page = encode_freelist(ids, pgid=7, overflow=n - 1, page_size=4096)
    assert page_header(page) == (7, FREELIST_PAGE, 0xFFFF, n - 1)
    assert struct.unpack_from("<Q", page, 16) == (len(ids),)
    assert decode_freelist(page) == ids


def test_freelist_rejects_other_page_types() -> None:
    with pytest.raises(PageError, match="not a freelist"):
        decode_freelist(encode_leaf([], [], None, pgid=3, page_size=4096))
