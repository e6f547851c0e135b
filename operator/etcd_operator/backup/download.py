"""Fetch a backup object into an etcd snapshot file, verified, written atomically.

The object is streamed (bounded memory, whatever its size), decrypted and decompressed
(``backup.codec``), and checked against everything recorded at upload: the stored size, the
raw size and sha256 in the metadata, and etcd's own sha256 trailer. The file appears under its
name only after all checks passed and its bytes are on disk (temporary file in the same
directory, fsync, rename, fsync of the directory); on any failure the temporary file is
removed, so a failed download leaves nothing that looks like a snapshot.

The result is the file ``etcdctl snapshot restore`` and ``pyetcdutl snapshot restore`` read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etcd_operator.backup.codec import SnapshotDigest, decode
from etcd_operator.backup.errors import (
    CorruptObjectError,
    EncryptionKeyRequiredError,
    NotABackupError,
    SnapshotFileError,
    TruncatedObjectError,
    classify_s3_error,
)
from etcd_operator.backup.metadata import ObjectMetadata
from etcd_operator.backup.store import S3Client, StoreSettings, make_client

READ_SIZE = 1 << 20


@dataclass(frozen=True)
class DownloadResult:
    """A verified snapshot file and what the object said about itself."""

    path: Path
    location: str
    stored_size: int
    raw_size: int
    sha256: str
    metadata: ObjectMetadata


class _CancelledError(Exception):
    """The awaiting task was cancelled: stop reading, remove the temporary file."""


async def download_snapshot(
    store: StoreSettings,
    key: str,
    dest: str | os.PathLike[str],
    encryption_key: bytes | None = None,
    *,
    client: S3Client | None = None,
) -> DownloadResult:
    """Download ``key`` from ``store`` into the snapshot file ``dest`` (replaced if it exists).

    ``encryption_key`` is needed for encrypted objects (32 bytes). Raises a ``BackupError``
    subclass with a one-line message; ``dest`` is then untouched.
    """
    if client is None:
        client = await asyncio.to_thread(make_client, store)
    cancel = threading.Event()
    work = asyncio.ensure_future(
        asyncio.to_thread(
            _download, client, store, key, Path(dest), encryption_key=encryption_key, cancel=cancel
        )
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # The thread cannot be interrupted: tell it to stop, and let it remove its temporary
        # file before the cancellation goes on.
        cancel.set()
        with contextlib.suppress(BaseException):
            await work
        raise


class _Body:
    """The object's body as a reader: counts bytes, maps read errors, honours cancellation."""

    def __init__(self, body: Any, store: StoreSettings, key: str, cancel: threading.Event) -> None:
        self._body = body
        self._store = store
        self._key = key
        self._cancel = cancel
        self.count = 0

    def read(self, size: int, /) -> bytes:
        if self._cancel.is_set():
            raise _CancelledError
        try:
            data: bytes = self._body.read(min(size, READ_SIZE))
        except Exception as err:
            raise classify_s3_error(
                err,
                endpoint=self._store.display_endpoint,
                bucket=self._store.bucket,
                key=self._key,
                operation="download",
            ) from None
        self.count += len(data)
        return data


def _download(
    s3: S3Client,
    store: StoreSettings,
    key: str,
    dest: Path,
    *,
    encryption_key: bytes | None,
    cancel: threading.Event,
) -> DownloadResult:
    location = store.location(key)
    try:
        resp = s3.get_object(Bucket=store.bucket, Key=key)
    except Exception as err:
        raise classify_s3_error(
            err,
            endpoint=store.display_endpoint,
            bucket=store.bucket,
            key=key,
            operation="download",
        ) from None
    body = resp["Body"]
    try:
        meta = ObjectMetadata.from_s3(resp.get("Metadata") or {}, location)
        if not meta.complete:
            raise NotABackupError(
                f"{location} is not a complete backup (no sha256 recorded): it is left over "
                "from an upload that did not finish"
            )
        length = int(resp.get("ContentLength", -1))
        _check_length(location, length, meta.stored_size)
        if meta.encrypted and encryption_key is None:
            raise EncryptionKeyRequiredError(
                f"{location} is encrypted: give the encryption key Secret it was written with"
            )
        source = _Body(body, store, key, cancel)
        digest = _write_atomically(dest, source, meta, encryption_key, location)
    finally:
        body.close()
    return DownloadResult(
        path=dest,
        location=location,
        stored_size=source.count,
        raw_size=digest.size,
        sha256=digest.sha256,
        metadata=meta,
    )


def _check_length(location: str, length: int, stored: int | None) -> None:
    if stored is None or length < 0 or length == stored:
        return
    if length < stored:
        raise TruncatedObjectError(
            f"{location} is truncated: the store holds {length} of the {stored} bytes uploaded"
        )
    raise CorruptObjectError(
        f"{location} is corrupt or was replaced: the store holds {length} bytes, the upload "
        f"wrote {stored}"
    )


def _write_atomically(
    dest: Path,
    source: _Body,
    meta: ObjectMetadata,
    encryption_key: bytes | None,
    location: str,
) -> SnapshotDigest:
    directory = dest.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{dest.name}.", suffix=".partial")
    except OSError as err:
        raise SnapshotFileError(f"cannot write {dest}: {err.strerror or err}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = decode(
                source,
                out.write,
                compression=meta.compression,
                encrypted=meta.encrypted,
                key=encryption_key,
                expected_sha256=meta.sha256,
                expected_size=meta.raw_size,
                name=location,
            )
            if source.read(1):
                raise CorruptObjectError(f"{location} is corrupt: it has data after its end")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise SnapshotFileError(f"cannot write {dest}: {exc.strerror or exc}") from None
        raise
    fsync_dir(directory)
    return digest


def fsync_dir(directory: Path) -> None:
    """Make the rename durable (a crash right after it must not lose the file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
