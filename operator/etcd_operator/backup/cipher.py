"""The encryption layer of a backup object: client-side AES-256-GCM in authenticated chunks.

This is layer 3 of the object format (``backup.codec`` composes the layers): the (compressed)
stream is encrypted in independently authenticated chunks::

    header (36 bytes, big-endian)
      0  4  magic  b"EOBK"
      4  1  format version (1)
      5  1  cipher (1 = AES-256-GCM)
      6  2  reserved (0)
      8  4  chunk size: plaintext bytes per chunk (4 KiB .. 16 MiB; 1 MiB by default)
     12  8  nonce prefix, random per object
     20 16  key check: HKDF-SHA256(key, info="etcd-operator backup v1 key check")[:16]
    chunks, i = 0, 1, ...: AES-256-GCM(ciphertext || 16-byte tag) of `chunk size` plaintext
      bytes each; the last chunk holds the rest (0 .. chunk size bytes) and always exists
      nonce = nonce prefix || uint32 i;  associated data = header || uint64 i || final flag

The AES key is HKDF-SHA256(key, info="etcd-operator backup v1 aes-256-gcm"), so the key
check (which tells a wrong key from a damaged object) is separate from the cipher key. The
header is authenticated by every chunk; the index in the nonce and the associated data
detects reordered chunks; the final flag detects a stream cut at a chunk boundary or chunks
appended after the end; the per-object nonce prefix detects chunks spliced in from another
object under the same key. The nonce prefix is 64 random bits: with one key, nonces stay
unique (and AES-GCM safe) for far more objects than a bucket will ever hold.

:class:`Sealer` encrypts push-style (bytes in, bytes out), :class:`Opener` decrypts pull-style
(``read(n)`` returns at most ``n`` bytes); :func:`parse_key` reads a key as a Secret holds it.
Nothing here does I/O of its own. Sealing and opening stay side by side in one module (a little
over 300 lines, a third of them this layout): a change to one must be read with the other.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from etcd_operator.backup.errors import (
    CorruptObjectError,
    InvalidEncryptionKeyError,
    NotABackupError,
    TruncatedObjectError,
    WrongEncryptionKeyError,
)

KEY_SIZE = 32
TAG_SIZE = 16
MAGIC = b"EOBK"
FORMAT_VERSION = 1
CIPHER_AES_256_GCM = 1
HEADER = struct.Struct(">4sBBHI8s16s")
NONCE_PREFIX_SIZE = 8
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 16 << 20
MAX_CHUNKS = 1 << 32  # the counter is 32 bits of the 96-bit nonce
# The metadata marker of this encryption format (``backup.metadata``).
ENCRYPTION_NONE = "none"
ENCRYPTION_AES_GCM = "aes-256-gcm-chunked-v1"

_INFO_AES = b"etcd-operator backup v1 aes-256-gcm"
_INFO_CHECK = b"etcd-operator backup v1 key check"


class Reader(Protocol):
    """A source of bytes: ``read(n)`` returns at most ``n`` bytes, ``b""`` at the end."""

    def read(self, size: int, /) -> bytes: ...


# -- keys -----------------------------------------------------------------------------------------


def parse_key(value: bytes | str) -> bytes:
    """A key as a Secret holds it: 32 raw bytes, or base64 (standard or URL-safe) of 32 bytes.

    The error never shows the value.
    """
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) == KEY_SIZE:
        return raw
    text = b"".join(raw.split())  # `kubectl create secret --from-file` keeps a trailing newline
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_SIZE:
            return key
    raise InvalidEncryptionKeyError(
        f"the backup encryption key must be {KEY_SIZE} bytes, raw or base64-encoded "
        f"(the Secret's value has {len(raw)} bytes): generate one with `openssl rand -base64 32`"
    )


def _derive(key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise InvalidEncryptionKeyError(
            f"the backup encryption key must be {KEY_SIZE} bytes (got {len(key)}); "
            "parse a Secret's value with parse_key()"
        )


def key_check(key: bytes) -> bytes:
    """The header's key check value: tells "wrong key" apart from "damaged object"."""
    _check_key(key)
    return _derive(key, _INFO_CHECK, 16)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


# -- encrypting ----------------------------------------------------------------------------------


class Sealer:
    """AES-256-GCM over fixed-size chunks; the last chunk is only sealed at ``finish``."""

    def __init__(self, key: bytes, chunk_size: int) -> None:
        _check_key(key)
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        self._aead = AESGCM(_derive(key, _INFO_AES, KEY_SIZE))
        self._prefix = os.urandom(NONCE_PREFIX_SIZE)
        self._chunk = chunk_size
        self.header = HEADER.pack(
            MAGIC, FORMAT_VERSION, CIPHER_AES_256_GCM, 0, chunk_size, self._prefix, key_check(key)
        )
        self._buf = bytearray()
        self._index = 0
        self._header_sent = False

    def _seal(self, plain: memoryview | bytes, final: bool) -> bytes:
        if self._index >= MAX_CHUNKS:
            raise ValueError("backup too large for the chunk counter; use a larger chunk size")
        sealed = self._aead.encrypt(
            _nonce(self._prefix, self._index), plain, _aad(self.header, self._index, final)
        )
        self._index += 1
        return sealed

    def _start(self) -> list[bytes]:
        if self._header_sent:
            return []
        self._header_sent = True
        return [self.header]

    def update(self, data: bytes) -> bytes:
        self._buf += data
        out = self._start()
        n = self._chunk
        # Seal only chunks that are certainly not the last: one byte more must be buffered.
        count = (len(self._buf) - 1) // n if self._buf else 0
        if count:
            with memoryview(self._buf) as view:
                out.extend(self._seal(view[i * n : (i + 1) * n], final=False) for i in range(count))
            del self._buf[: count * n]
        return b"".join(out)

    def finish(self) -> bytes:
        out = self._start()
        out.append(self._seal(bytes(self._buf), final=True))
        self._buf = bytearray()
        return b"".join(out)


# -- decrypting ----------------------------------------------------------------------------------


def _read_exact(source: Reader, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of ``source``."""
    first = source.read(size)
    if len(first) >= size or not first:
        return first
    parts = [first]
    got = len(first)
    while got < size:
        more = source.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class Opener:
    """Decrypts the chunked AES-256-GCM layer; ``read(n)`` returns at most ``n`` bytes."""

    def __init__(self, source: Reader, key: bytes, name: str) -> None:
        _check_key(key)
        self._source = source
        self._name = name
        header = _read_exact(source, HEADER.size)
        if len(header) < HEADER.size:
            if header and not MAGIC.startswith(header[: len(MAGIC)]):
                raise NotABackupError(f"{name} is not an encrypted backup (no EOBK header)")
            raise TruncatedObjectError(
                f"{name} is truncated: {len(header)} bytes, less than the encryption header"
            )
        magic, version, cipher, reserved, chunk, prefix, check = HEADER.unpack(header)
        if magic != MAGIC:
            raise NotABackupError(f"{name} is not an encrypted backup (no EOBK header)")
        if version != FORMAT_VERSION or cipher != CIPHER_AES_256_GCM:
            raise NotABackupError(
                f"{name} uses encryption format {version}, cipher {cipher}, which this version "
                "of the operator cannot read"
            )
        if reserved != 0 or not MIN_CHUNK_SIZE <= chunk <= MAX_CHUNK_SIZE:
            raise CorruptObjectError(f"{name} is corrupt: its encryption header is damaged")
        self._header = header
        self._prefix = prefix
        self._chunk = chunk
        self._check = key_check(key)
        self._key_matches = hmac.compare_digest(check, self._check)
        self._aead = AESGCM(_derive(key, _INFO_AES, KEY_SIZE))
        self._pending = _read_exact(source, chunk + TAG_SIZE)
        self._index = 0
        self._out = b""
        self._pos = 0
        self._done = False

    def read(self, size: int, /) -> bytes:
        while self._pos >= len(self._out):
            if self._done:
                return b""
            self._out, self._pos = self._next_chunk(), 0
        piece = self._out[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece

    def _open(self, sealed: bytes, final: bool) -> bytes:
        return self._aead.decrypt(
            _nonce(self._prefix, self._index), sealed, _aad(self._header, self._index, final)
        )

    def _next_chunk(self) -> bytes:
        sealed, index, full = self._pending, self._index, self._chunk + TAG_SIZE
        if len(sealed) < TAG_SIZE:
            raise TruncatedObjectError(
                f"{self._name} is truncated: it ends inside encrypted chunk {index}"
                if sealed or index
                else f"{self._name} is truncated: it ends right after its encryption header"
            )
        # A short chunk can only be the last; after a full one, look ahead to know.
        self._pending = _read_exact(self._source, full) if len(sealed) == full else b""
        final = not self._pending
        try:
            plain = self._open(sealed, final)
        except InvalidTag:
            raise self._explain(sealed, index, final) from None
        if index == 0 and not self._key_matches:
            # The data authenticates with this key, so only the check value was altered.
            raise CorruptObjectError(
                f"{self._name} is corrupt or was tampered with: its key check value is altered"
            )
        self._index += 1
        self._done = final
        return plain

    def _explain(self, sealed: bytes, index: int, final: bool) -> Exception:
        if index == 0 and not self._key_matches:
            # The header (with its key check) is authenticated too: if the chunk opens under
            # the header as it was with our key's check value, only that value was altered.
            with contextlib.suppress(InvalidTag):
                header = self._header[: -len(self._check)] + self._check
                self._aead.decrypt(_nonce(self._prefix, 0), sealed, _aad(header, 0, final))
                return CorruptObjectError(
                    f"{self._name} is corrupt or was tampered with: its key check value is altered"
                )
            return WrongEncryptionKeyError(
                f"{self._name} was encrypted with another key than the one given: use the "
                "encryption key Secret that was configured when the backup was taken"
            )
        if final and len(sealed) == self._chunk + TAG_SIZE:
            try:
                self._open(sealed, final=False)
            except InvalidTag:
                pass
            else:
                return TruncatedObjectError(
                    f"{self._name} is truncated: it ends after chunk {index}, which is not the "
                    "last one"
                )
        if final:
            # A short last chunk: damaged, or the object was cut inside a chunk.
            return CorruptObjectError(
                f"{self._name} is corrupt, truncated or was tampered with: its last encrypted "
                f"chunk ({index}) fails authentication"
            )
        return CorruptObjectError(
            f"{self._name} is corrupt or was tampered with: encrypted chunk {index} fails "
            "authentication"
        )
