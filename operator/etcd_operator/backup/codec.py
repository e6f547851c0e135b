"""The backup object format: etcd's snapshot stream, compressed, then encrypted in chunks.

What a backup object holds, layer by layer (each optional layer chosen per backup and recorded in
the object's metadata, see ``backup.metadata``):

1. the *raw stream*: exactly what ``Maintenance.Snapshot`` sent, i.e. etcd's bbolt database
   followed by etcd's 32-byte sha256 of it (the trailer ``etcdctl snapshot save`` writes and
   ``snapshot restore`` checks). Our own sha256 is of this whole stream, trailer included.
   With neither compression nor encryption, the object *is* an etcd snapshot file;
2. optional compression of the raw stream: one gzip member (zlib, level 6) or one zstd frame
   (level 3, with zstd's content checksum), written and read incrementally;
3. optional client-side encryption of the (compressed) stream with AES-256-GCM in independently
   authenticated chunks behind a 36-byte ``EOBK`` header: ``backup.cipher`` holds that layer
   and documents its layout and what each part of it protects against.

This module composes the layers. Encoding is push-style (:class:`Encoder`: bytes in, bytes out)
because the upload receives the stream from etcd; decoding is pull-style (:func:`open_reader`:
``read(n)`` returns at most ``n`` bytes) so that a small object that decompresses to gigabytes
never sits in memory at once. Both are synchronous CPU work that releases the GIL (hashlib,
zlib, zstd, OpenSSL): callers run them in worker threads. Nothing here does I/O of its own.
The format's encryption names (``parse_key``, ``HEADER``, the chunk sizes, the metadata
markers, ...) stay importable from here too. The module stays over 300 lines because it is one
role: the digest, the compressors and decompressors and ``decode``'s checks are the layered
stream itself, and the encryption layer already lives apart.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import zlib
from collections.abc import Callable
from typing import Protocol

import zstandard

from etcd_operator.api.backup import Compression
from etcd_operator.backup.cipher import (
    DEFAULT_CHUNK_SIZE,
    ENCRYPTION_AES_GCM,
    ENCRYPTION_NONE,
    HEADER,
    MIN_CHUNK_SIZE,
    TAG_SIZE,
    Opener,
    Reader,
    Sealer,
    key_check,
    parse_key,
)
from etcd_operator.backup.errors import (
    CorruptObjectError,
    EncryptionKeyRequiredError,
    TrailerMismatchError,
    TruncatedObjectError,
)

__all__ = [
    "DECODE_PIECE",
    "DEFAULT_CHUNK_SIZE",
    "ENCRYPTION_AES_GCM",
    "ENCRYPTION_NONE",
    "GZIP_LEVEL",
    "HEADER",
    "MIN_CHUNK_SIZE",
    "READ_SIZE",
    "TAG_SIZE",
    "TRAILER_SIZE",
    "ZSTD_LEVEL",
    "Encoder",
    "Reader",
    "SnapshotDigest",
    "decode",
    "decode_bytes",
    "encode",
    "key_check",
    "open_reader",
    "parse_key",
]

TRAILER_SIZE = 32  # etcd's sha256 of the database, at the end of the raw stream
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
# How much compressed input a decompressor pulls per step, and how much plaintext a
# caller of ``decode`` asks for per read: bounded steps keep memory bounded.
READ_SIZE = 256 << 10
DECODE_PIECE = 1 << 20


# -- the raw stream -------------------------------------------------------------------------------


class SnapshotDigest:
    """sha256 of the raw stream and etcd's trailer check, in one pass over the bytes.

    One running hash covers the database (everything but the last 32 bytes seen so far); the
    stream's sha256 is that hash continued with the held-back 32 bytes, and the trailer is
    right when those 32 bytes equal the database hash.
    """

    def __init__(self) -> None:
        self._db = hashlib.sha256()
        self._tail = b""
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self.size += n
        if n >= TRAILER_SIZE:
            view = memoryview(data)
            self._db.update(self._tail)
            self._db.update(view[: n - TRAILER_SIZE])
            self._tail = bytes(view[n - TRAILER_SIZE :])
        else:
            buf = self._tail + bytes(data)
            cut = max(0, len(buf) - TRAILER_SIZE)
            self._db.update(buf[:cut])
            self._tail = buf[cut:]

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything seen (the raw stream, trailer included)."""
        whole = self._db.copy()
        whole.update(self._tail)
        return whole.hexdigest()

    @property
    def trailer_ok(self) -> bool:
        return len(self._tail) == TRAILER_SIZE and hmac.compare_digest(
            self._db.digest(), self._tail
        )

    def check_trailer(self, source: str) -> None:
        """Raise :class:`TrailerMismatchError` unless the stream ends with its db's sha256."""
        if self.size <= TRAILER_SIZE:
            raise TrailerMismatchError(
                f"the snapshot from {source} is {self.size} bytes long, too short for an etcd "
                "database and its sha256 trailer"
            )
        if not self.trailer_ok:
            raise TrailerMismatchError(
                f"the snapshot from {source} fails etcd's own sha256 check (its last 32 bytes "
                f"are {self._tail.hex()[:16]}..., the database hashes to "
                f"{self._db.hexdigest()[:16]}...): the stream was damaged or cut short"
            )


# -- encoding -------------------------------------------------------------------------------------


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


def _compressor(compression: Compression | str) -> _Compressor | None:
    match Compression(compression):
        case Compression.NONE:
            return None
        case Compression.GZIP:
            return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        case Compression.ZSTD:
            return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compressobj()


class Encoder:
    """Raw stream in, object bytes out: compress, then encrypt, incrementally.

    ``update`` returns what can be written so far (possibly ``b""``), ``finish`` the rest.
    Memory stays bounded by the compressor's window and one encryption chunk.
    """

    def __init__(
        self,
        compression: Compression | str = Compression.NONE,
        key: bytes | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.compression = Compression(compression)
        self._compressor = _compressor(compression)
        self._sealer = Sealer(key, chunk_size) if key is not None else None
        self.encryption = ENCRYPTION_NONE if key is None else ENCRYPTION_AES_GCM
        self.size = 0  # bytes of object produced so far

    def update(self, data: bytes) -> bytes:
        out = self._compressor.compress(data) if self._compressor is not None else data
        if self._sealer is not None:
            out = self._sealer.update(out)
        self.size += len(out)
        return out

    def finish(self) -> bytes:
        out = self._compressor.flush() if self._compressor is not None else b""
        if self._sealer is not None:
            out = self._sealer.update(out) + self._sealer.finish()
        self.size += len(out)
        return out


def encode(
    raw: bytes,
    compression: Compression | str = Compression.NONE,
    key: bytes | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """The whole object for a raw stream held in memory (tests and small tools)."""
    enc = Encoder(compression, key, chunk_size=chunk_size)
    return enc.update(raw) + enc.finish()


# -- decoding -------------------------------------------------------------------------------------


class _GzipReader:
    """One gzip member, decompressed in bounded steps."""

    def __init__(self, source: Reader, name: str) -> None:
        self._source = source
        self._name = name
        self._z = zlib.decompressobj(wbits=31)
        self._ended = False

    def read(self, size: int, /) -> bytes:
        while not self._ended:
            if self._z.eof:
                self._ended = True
                if self._z.unused_data or self._source.read(1):
                    raise CorruptObjectError(f"{self._name} is corrupt: data after its gzip end")
                return b""
            data = self._z.unconsumed_tail or self._source.read(READ_SIZE)
            try:
                if not data:
                    out = self._z.flush()
                    if not self._z.eof:
                        raise TruncatedObjectError(
                            f"{self._name} is truncated: its gzip stream ends early"
                        )
                else:
                    out = self._z.decompress(data, size)
            except zlib.error as err:
                raise CorruptObjectError(f"{self._name} is corrupt: gzip: {err}") from None
            if out:
                return out
        return b""


class _ZstdReader:
    """One zstd frame, decompressed in bounded steps (zstd checks its content checksum)."""

    def __init__(self, source: Reader, name: str) -> None:
        self._name = name
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source,  # type: ignore[arg-type]  # zstandard only calls read()
            read_size=READ_SIZE,
            read_across_frames=False,
        )

    def read(self, size: int, /) -> bytes:
        try:
            return self._reader.read(size)
        except zstandard.ZstdError as err:
            raise CorruptObjectError(f"{self._name} is corrupt: zstd: {err}") from None


def open_reader(
    source: Reader,
    compression: Compression | str,
    *,
    encrypted: bool,
    key: bytes | None,
    name: str = "the backup",
) -> Reader:
    """The raw stream of an object read from ``source``: decrypt, then decompress.

    ``name`` is how errors name the object. A truncated zstd frame decodes to fewer bytes
    without an error here: :func:`decode` catches it with the expected size and sha256.
    """
    reader = source
    if encrypted:
        if key is None:
            raise EncryptionKeyRequiredError(
                f"{name} is encrypted: give the encryption key Secret it was written with"
            )
        reader = Opener(source, key, name)
    match Compression(compression):
        case Compression.NONE:
            return reader
        case Compression.GZIP:
            return _GzipReader(reader, name)
        case Compression.ZSTD:
            return _ZstdReader(reader, name)


def decode(
    source: Reader,
    sink: Callable[[bytes], object],
    *,
    compression: Compression | str,
    encrypted: bool,
    key: bytes | None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    name: str = "the backup",
    check_trailer: bool = True,
) -> SnapshotDigest:
    """Decode an object into ``sink`` piece by piece and verify everything on the way.

    Checks the encryption (if any), the compression framing, the raw size and sha256 recorded at
    upload (when given), and etcd's own trailer. Raises a :class:`BackupError` subclass; the sink
    may have received data by then (the caller discards it).
    """
    reader = open_reader(source, compression, encrypted=encrypted, key=key, name=name)
    digest = SnapshotDigest()
    while piece := reader.read(DECODE_PIECE):
        digest.update(piece)
        if expected_size is not None and digest.size > expected_size:
            raise CorruptObjectError(
                f"{name} is corrupt: it decodes to more than the {expected_size} bytes recorded"
            )
        sink(piece)
    if expected_size is not None and digest.size < expected_size:
        raise TruncatedObjectError(
            f"{name} is truncated: it decodes to {digest.size} of the {expected_size} bytes "
            "recorded at upload"
        )
    if expected_sha256 is not None and not hmac.compare_digest(
        digest.sha256, expected_sha256.lower()
    ):
        raise CorruptObjectError(
            f"{name} is corrupt or was tampered with: its sha256 is {digest.sha256}, the upload "
            f"recorded {expected_sha256.lower()}"
        )
    if check_trailer:
        digest.check_trailer(name)
    return digest


def decode_bytes(
    data: bytes,
    compression: Compression | str = Compression.NONE,
    key: bytes | None = None,
    *,
    encrypted: bool | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    check_trailer: bool = True,
) -> bytes:
    """Decode and verify a whole object held in memory (tests and small tools)."""
    out = bytearray()
    decode(
        io.BytesIO(data),
        out.extend,
        compression=compression,
        encrypted=key is not None if encrypted is None else encrypted,
        key=key,
        expected_sha256=expected_sha256,
        expected_size=expected_size,
        check_trailer=check_trailer,
    )
    return bytes(out)
