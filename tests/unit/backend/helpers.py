"""Helpers shared by the backend tests: revision keys, content dumps, raw meta edits."""

from __future__ import annotations

import os
import struct

from pyetcd.backend.bbolt import BoltBackend
from pyetcd.backend.page import Meta, decode_meta, encode_meta_page

REV = struct.Struct(">QcQ")


def rev_key(main: int, sub: int = 0) -> bytes:
    """etcd's 17-byte revision key: BE main, '_', BE sub."""
    return REV.pack(main, b"_", sub)


def contents(b: BoltBackend) -> dict[bytes, dict[bytes, bytes]]:
    """Every bucket's key/value pairs."""
    return {name: dict(b.range(name, b"")) for name in b.bucket_names()}


def read_metas(path: str, page_size: int = 4096) -> list[Meta]:
    with open(path, "rb") as f:
        data = f.read(2 * page_size)
    return [decode_meta(data, 0), decode_meta(data, page_size)]


def write_meta(path: str, meta: Meta, slot: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, encode_meta_page(meta, slot), slot * meta.page_size)
    finally:
        os.close(fd)
