"""Stream etcd's snapshot into one S3 object: bounded memory, verified, all or nothing.

The raw stream from ``Maintenance.Snapshot`` is hashed, encoded (``backup.codec``: compression,
encryption) and handed to ``backup.multipart``, which cuts it into parts of a fixed size (16 MiB
by default) and holds at most two at a time. Every encoding step runs in a worker thread, so the
event loop keeps serving other clusters.

A backup is only ever visible under its key once it is complete and verified: etcd's trailer is
checked before the object is completed (``backup.multipart`` describes the staging key and the
copy to the final key). On any failure (the stream fails or ends early, a member is killed, S3
refuses a call, the trailer does not match, the task is cancelled) the writer's ``abort`` removes
whatever was uploaded; the error raised is a typed ``BackupError`` (or ``CancelledError``
re-raised).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from pyetcd.client import EtcdClientError

from etcd_operator.api.backup import Compression
from etcd_operator.backup.codec import Encoder, SnapshotDigest
from etcd_operator.backup.errors import BackupError, EtcdStreamError, classify_s3_error
from etcd_operator.backup.metadata import ObjectMetadata, SnapshotInfo
from etcd_operator.backup.multipart import STAGING_SUFFIX, MultipartWriter, clean_up
from etcd_operator.backup.store import S3Client, StoreSettings, make_client

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
# Raw bytes handed to a worker thread per encoding step (etcd sends 32 KiB messages): large
# enough that thread hops cost little, small next to a part.
FEED_BATCH = 1 * MiB


@dataclass(frozen=True)
class UploadResult:
    """A stored backup: where, how big (stored and raw), and the raw stream's sha256."""

    location: str  # s3://bucket/key
    bucket: str
    key: str
    stored_size: int
    raw_size: int
    sha256: str
    parts: int  # 0 when it went up in one PutObject
    metadata: ObjectMetadata


async def upload_snapshot(
    chunks: AsyncIterable[bytes],
    store: StoreSettings,
    key: str,
    *,
    compression: Compression | str = Compression.ZSTD,
    encryption_key: bytes | None = None,
    metadata: SnapshotInfo | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    client: S3Client | None = None,
    source: str | None = None,
) -> UploadResult:
    """Upload the snapshot stream ``chunks`` to ``key`` in ``store``.

    ``chunks`` is the raw stream (``EtcdClient.snapshot``); ``encryption_key`` 32 bytes or None;
    ``metadata`` what the caller knows of the source; ``source`` how messages name the member
    (default: ``metadata.member``). ``client`` replaces the boto3 client (tests).
    """
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part size must be within {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes")
    if key.endswith(STAGING_SUFFIX):
        raise ValueError(f"a backup key must not end with {STAGING_SUFFIX!r}")
    info = metadata or SnapshotInfo()
    origin = source or (f"member {info.member}" if info.member else "etcd")
    encoder = Encoder(compression, encryption_key)
    digest = SnapshotDigest()
    if client is None:
        try:
            client = await asyncio.to_thread(make_client, store)
        except Exception as err:
            await _close(aiter(chunks))
            raise classify_s3_error(
                err,
                endpoint=store.display_endpoint,
                bucket=store.bucket,
                key=key,
                operation="upload",
            ) from None
    writer = MultipartWriter(client, store, key, part_size)
    started = ObjectMetadata(
        compression=encoder.compression, encryption=encoder.encryption, snapshot=info
    )
    stream = aiter(chunks)
    try:
        batch: list[bytes] = []
        batched = 0
        while (chunk := await _next_chunk(stream, origin)) is not None:
            batch.append(chunk)
            batched += len(chunk)
            if batched >= FEED_BATCH:
                encoded = await asyncio.to_thread(_feed, digest, encoder, batch)
                batch, batched = [], 0
                await writer.write(encoded, started)
        encoded = await asyncio.to_thread(_finish, digest, encoder, batch)
        digest.check_trailer(origin)
        await writer.write(encoded, started)
        final = ObjectMetadata(
            compression=encoder.compression,
            encryption=encoder.encryption,
            sha256=digest.sha256,
            raw_size=digest.size,
            stored_size=writer.size,
            snapshot=info,
        )
        await writer.finish(final)
    except BaseException as exc:
        await clean_up(writer.abort(exc))
        raise
    finally:
        await _close(stream)
    log.info(
        "backup %s stored: %d bytes (%d raw), sha256 %s",
        store.location(key),
        writer.size,
        digest.size,
        digest.sha256,
    )
    return UploadResult(
        location=store.location(key),
        bucket=store.bucket,
        key=key,
        stored_size=writer.size,
        raw_size=digest.size,
        sha256=digest.sha256,
        parts=writer.parts_sent,
        metadata=final,
    )


async def _next_chunk(stream: AsyncIterator[bytes], origin: str) -> bytes | None:
    """The stream's next chunk, None at its end; its failures as :class:`EtcdStreamError`."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
    except EtcdClientError as err:
        raise EtcdStreamError(f"the snapshot stream from {origin} failed: {err}") from None
    except BackupError:
        raise
    except Exception as err:
        raise EtcdStreamError(
            f"the snapshot stream from {origin} failed: {type(err).__name__}: {err}"
        ) from None


def _feed(digest: SnapshotDigest, encoder: Encoder, batch: list[bytes]) -> bytes:
    data = batch[0] if len(batch) == 1 else b"".join(batch)
    digest.update(data)
    return encoder.update(data)


def _finish(digest: SnapshotDigest, encoder: Encoder, batch: list[bytes]) -> bytes:
    head = _feed(digest, encoder, batch) if batch else b""
    return head + encoder.finish()


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close the source stream (this cancels etcd's Snapshot call when it was not finished)."""
    aclose: Callable[[], Awaitable[object]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as err:  # the upload's own outcome matters more
            log.debug("closing the snapshot stream failed: %r", err)
