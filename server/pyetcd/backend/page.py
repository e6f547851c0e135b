"""bbolt page codecs: pure functions between page bytes and Python values.

Everything here is bbolt's exact on-disk layout (little-endian, as written by etcd on x86-64 and
arm64): the 16-byte page header, the meta page (FNV-1a 64 checksum), branch and leaf elements
whose ``pos`` is relative to the element itself, the 16-byte bucket header and the freelist page
(including its ``count = 0xFFFF`` form). No file I/O and no tree logic live here.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, replace
from itertools import accumulate
from operator import add

MAGIC = 0xED0CDAED
VERSION = 2
DEFAULT_PAGE_SIZE = 4096
PGID_NO_FREELIST = 0xFFFFFFFFFFFFFFFF

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10

BUCKET_LEAF_FLAG = 0x01  # leaf element flag: the value is a bucket header (+ inline page)

HEADER_SIZE = 16
ELEMENT_SIZE = 16  # both branch and leaf elements
BUCKET_HEADER_SIZE = 16
META_SIZE = 64
MIN_KEYS_PER_PAGE = 2
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2
MAX_ELEMENTS = 0xFFFF  # a page's count field; the freelist switches to its long form here

PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META_BODY = struct.Struct("<IIIIQQQQQ")  # meta without its trailing checksum (56 bytes)
_U64 = struct.Struct("<Q")
BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence

_BIG_ENDIAN = sys.byteorder == "big"

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64_MASK = 0xFFFFFFFFFFFFFFFF


class PageError(ValueError):
    """Bytes that are not a valid page of the expected kind; the message says why."""


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit, the hash bbolt's ``meta.sum64`` uses for the meta checksum."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _U64_MASK
    return h


def _u32_array(data: bytes) -> array[int]:
    a = array("I")
    a.frombytes(data)
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def _u32_bytes(a: array[int]) -> bytes:
    if _BIG_ENDIAN:
        a = array("I", a)
        a.byteswap()
    return a.tobytes()


# -- page header --------------------------------------------------------------------------------


def page_header(buf: bytes, offset: int = 0) -> tuple[int, int, int, int]:
    """(id, flags, count, overflow) of the page at ``offset``."""
    if len(buf) - offset < HEADER_SIZE:
        raise PageError(f"page header truncated: {len(buf) - offset} bytes")
    pgid, flags, count, overflow = PAGE_HEADER.unpack_from(buf, offset)
    return pgid, flags, count, overflow


# -- meta ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meta:
    """bbolt's ``meta`` struct (the checksum is computed, not stored here)."""

    page_size: int
    root: int  # root bucket's root page
    sequence: int  # root bucket's sequence
    freelist: int  # freelist page id or PGID_NO_FREELIST
    pgid: int  # high-water mark: first never-allocated page id
    txid: int
    flags: int = 0

    def with_txid(self, txid: int) -> Meta:
        return replace(self, txid=txid)


def encode_meta_body(meta: Meta) -> bytes:
    """The 64-byte meta struct, checksum included."""
    body = _META_BODY.pack(
        MAGIC,
        VERSION,
        meta.page_size,
        meta.flags,
        meta.root,
        meta.sequence,
        meta.freelist,
        meta.pgid,
        meta.txid,
    )
    return body + _U64.pack(fnv1a64(body))


def encode_meta_page(meta: Meta, page_id: int) -> bytes:
    """A full meta page: header (id, flags 0x04) + meta struct, zero padded to the page size."""
    head = PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + encode_meta_body(meta)
    return head + bytes(meta.page_size - len(head))


def decode_meta(buf: bytes, offset: int = 0) -> Meta:
    """The meta of the meta page at ``offset``; PageError on bad magic, version or checksum."""
    if len(buf) - offset < HEADER_SIZE + META_SIZE:
        raise PageError("meta page truncated")
    start = offset + HEADER_SIZE
    body = buf[start : start + 56]
    magic, version, page_size, flags, root, seq, freelist, pgid, txid = _META_BODY.unpack(body)
    if magic != MAGIC:
        raise PageError(f"invalid magic 0x{magic:08x}")
    if version != VERSION:
        raise PageError(f"version mismatch: {version}")
    (checksum,) = _U64.unpack_from(buf, start + 56)
    if checksum != fnv1a64(body):
        raise PageError("meta checksum mismatch")
    return Meta(page_size, root, seq, freelist, pgid, txid, flags)


# -- leaf and branch pages ----------------------------------------------------------------------


def decode_leaf(
    buf: bytes, count: int, offset: int = 0
) -> tuple[list[bytes], list[bytes], list[int] | None]:
    """Keys, values and element flags (None when all zero) of the leaf page at ``offset``."""
    elems_end = offset + HEADER_SIZE + ELEMENT_SIZE * count
    end = len(buf)
    if elems_end > end:
        raise PageError(f"{count} leaf elements overrun the page")
    a = _u32_array(buf[offset + HEADER_SIZE : elems_end])
    pos = a[1::4]
    ksz = a[2::4]
    vsz = a[3::4]
    keys: list[bytes] = []
    vals: list[bytes] = []
    kappend = keys.append
    vappend = vals.append
    elem = offset + HEADER_SIZE
    for i in range(count):
        k0 = elem + pos[i]
        k1 = k0 + ksz[i]
        v1 = k1 + vsz[i]
        if v1 > end or k0 < elems_end:
            raise PageError(f"leaf element {i} points outside the page")
        kappend(buf[k0:k1])
        vappend(buf[k1:v1])
        elem += ELEMENT_SIZE
    flags = a[0::4]
    return keys, vals, (flags.tolist() if any(flags) else None)


def decode_branch(buf: bytes, count: int, offset: int = 0) -> tuple[list[bytes], list[int]]:
    """Keys and child page ids of the branch page at ``offset``."""
    elems_end = offset + HEADER_SIZE + ELEMENT_SIZE * count
    end = len(buf)
    if elems_end > end:
        raise PageError(f"{count} branch elements overrun the page")
    a = _u32_array(buf[offset + HEADER_SIZE : elems_end])
    pos = a[0::4]
    ksz = a[1::4]
    keys: list[bytes] = []
    elem = offset + HEADER_SIZE
    for i in range(count):
        k0 = elem + pos[i]
        k1 = k0 + ksz[i]
        if k1 > end or k0 < elems_end:
            raise PageError(f"branch element {i} points outside the page")
        keys.append(buf[k0:k1])
        elem += ELEMENT_SIZE
    pgids = [lo | (hi << 32) for lo, hi in zip(a[2::4], a[3::4], strict=True)]
    return keys, pgids


def _positions(n: int, sizes: list[int]) -> array[int]:
    # pos_i = data_i - elem_i = (16 + 16n + cum_i) - (16 + 16i) = 16(n - i) + cum_i
    cum = accumulate(sizes, initial=0)
    return array("I", map(add, cum, range(ELEMENT_SIZE * n, 0, -ELEMENT_SIZE)))


def encode_leaf(
    keys: list[bytes],
    vals: list[bytes],
    flags: list[int] | None,
    *,
    pgid: int = 0,
    overflow: int = 0,
    page_size: int = 0,
) -> bytes:
    """A leaf page; zero padded to ``(overflow + 1) * page_size`` when ``page_size`` is set."""
    n = len(keys)
    ksz = list(map(len, keys))
    vsz = list(map(len, vals))
    a = array("I", bytes(ELEMENT_SIZE * n))
    if flags is not None:
        a[0::4] = array("I", flags)
    a[1::4] = _positions(n, list(map(add, ksz, vsz)))
    a[2::4] = array("I", ksz)
    a[3::4] = array("I", vsz)
    parts: list[bytes] = [b""] * (2 * n)
    parts[0::2] = keys
    parts[1::2] = vals
    page = PAGE_HEADER.pack(pgid, LEAF_PAGE, n, overflow) + _u32_bytes(a) + b"".join(parts)
    if page_size:
        page += bytes((overflow + 1) * page_size - len(page))
    return page


def encode_branch(
    keys: list[bytes], pgids: list[int], *, pgid: int, overflow: int, page_size: int
) -> bytes:
    """A branch page, zero padded to ``(overflow + 1) * page_size``."""
    n = len(keys)
    ksz = list(map(len, keys))
    a = array("I", bytes(ELEMENT_SIZE * n))
    a[0::4] = _positions(n, ksz)
    a[1::4] = array("I", ksz)
    a[2::4] = array("I", [p & 0xFFFFFFFF for p in pgids])
    a[3::4] = array("I", [p >> 32 for p in pgids])
    page = PAGE_HEADER.pack(pgid, BRANCH_PAGE, n, overflow) + _u32_bytes(a) + b"".join(keys)
    return page + bytes((overflow + 1) * page_size - len(page))


def leaf_size(keys: list[bytes], vals: list[bytes]) -> int:
    """bbolt ``node.size()`` of a leaf: header + elements + keys + values."""
    return HEADER_SIZE + ELEMENT_SIZE * len(keys) + sum(map(len, keys)) + sum(map(len, vals))


def branch_size(keys: list[bytes]) -> int:
    """bbolt ``node.size()`` of a branch: header + elements + keys."""
    return HEADER_SIZE + ELEMENT_SIZE * len(keys) + sum(map(len, keys))


# -- buckets ------------------------------------------------------------------------------------


def encode_bucket_value(root: int, sequence: int, inline_page: bytes = b"") -> bytes:
    """A bucket's value in its parent: 16-byte header, then the inline leaf page if root == 0."""
    return BUCKET_HEADER.pack(root, sequence) + inline_page


def decode_bucket_value(value: bytes) -> tuple[int, int]:
    """(root, sequence) of a bucket value; the inline page, if any, starts at offset 16."""
    if len(value) < BUCKET_HEADER_SIZE:
        raise PageError(f"bucket value of {len(value)} bytes is shorter than its header")
    root, seq = BUCKET_HEADER.unpack_from(value)
    return root, seq


# -- freelist -----------------------------------------------------------------------------------


def decode_freelist(buf: bytes, offset: int = 0) -> list[int]:
    """Page ids of the freelist page at ``offset`` (both the short and the 0xFFFF form)."""
    _, flags, count, _ = page_header(buf, offset)
    if flags != FREELIST_PAGE:
        raise PageError(f"page type 0x{flags:02x} is not a freelist")
    start = offset + HEADER_SIZE
    if count == MAX_ELEMENTS:
        if len(buf) < start + 8:
            raise PageError("freelist count truncated")
        (count,) = _U64.unpack_from(buf, start)
        start += 8
    end = start + 8 * count
    if end > len(buf):
        raise PageError(f"freelist of {count} ids overruns the page")
    return list(struct.unpack_from(f"<{count}Q", buf, start))


def freelist_pages_needed(n_ids: int, page_size: int) -> int:
    """Pages bbolt allocates for a freelist of ``n_ids`` ids (``est/pageSize + 1``)."""
    est = HEADER_SIZE + 8 * (n_ids + (1 if n_ids >= MAX_ELEMENTS else 0))
    return est // page_size + 1


def encode_freelist(ids: list[int], *, pgid: int, overflow: int, page_size: int) -> bytes:
    """A freelist page holding the sorted ``ids``, zero padded to ``(overflow+1)*page_size``."""
    ids = sorted(ids)
    n = len(ids)
    if n < MAX_ELEMENTS:
        head = PAGE_HEADER.pack(pgid, FREELIST_PAGE, n, overflow)
    else:
        head = PAGE_HEADER.pack(pgid, FREELIST_PAGE, MAX_ELEMENTS, overflow) + _U64.pack(n)
    page = head + struct.pack(f"<{n}Q", *ids)
    return page + bytes((overflow + 1) * page_size - len(page))
