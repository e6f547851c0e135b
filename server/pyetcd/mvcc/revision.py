"""Revisions: etcd's ``{main, sub}`` pairs, as packed ints in memory and 17-byte keys on disk.

A revision names one change: ``main`` is the store revision of the write transaction and ``sub``
the index of the change inside it. In the ``key`` bucket a revision is the 17-byte key
``BE64(main) '_' BE64(sub)`` (big-endian, so bbolt's byte order is chronological order); a
tombstone (delete) appends ``'t'``.

In memory a revision is one Python int, ``main << SUB_BITS | sub``: int comparison then orders
revisions exactly like etcd's ``revision.GreaterThan``, and the index stores one small object per
revision instead of a tuple, which keeps puts and range scans cheap.
"""

from __future__ import annotations

import struct

SUB_BITS = 32
SUB_MASK = (1 << SUB_BITS) - 1

REV_BYTES_LEN = 17  # etcd revBytesLen
MARKED_REV_BYTES_LEN = 18  # etcd markedRevBytesLen
TOMBSTONE_MARK = b"t"

_REV = struct.Struct(">QcQ")
_MAIN = struct.Struct(">Q")


def pack(main: int, sub: int = 0) -> int:
    """The in-memory form of ``{main, sub}``."""
    return (main << SUB_BITS) | sub


def main_of(rev: int) -> int:
    return rev >> SUB_BITS


def sub_of(rev: int) -> int:
    return rev & SUB_MASK


def rev_to_bytes(main: int, sub: int = 0) -> bytes:
    """etcd ``revToBytes``: the 17-byte ``key`` bucket key of ``{main, sub}``."""
    return _REV.pack(main, b"_", sub)


def packed_to_bytes(rev: int) -> bytes:
    return _REV.pack(rev >> SUB_BITS, b"_", rev & SUB_MASK)


def tombstone_bytes(main: int, sub: int) -> bytes:
    """The 18-byte key of a deletion at ``{main, sub}``."""
    return _REV.pack(main, b"_", sub) + TOMBSTONE_MARK


def bytes_to_rev(key: bytes) -> tuple[int, int]:
    """etcd ``bytesToRev``: ``(main, sub)`` of a 17- or 18-byte revision key (mark ignored)."""
    main, _, sub = _REV.unpack_from(key)
    return main, sub


def bytes_to_packed(key: bytes) -> int:
    main: int
    sub: int
    main, _, sub = _REV.unpack_from(key)
    return (main << SUB_BITS) | sub


def main_prefix(main: int) -> bytes:
    """8-byte ``BE64(main)``: a range bound that sorts before every revision key of ``main``."""
    return _MAIN.pack(main)


def is_tombstone(key: bytes) -> bool:
    """etcd ``isTombstone``."""
    return len(key) == MARKED_REV_BYTES_LEN and key[17] == 0x74
