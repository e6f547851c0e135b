"""A continuous backup's segments in S3: named, written, listed, checked for gaps, read, deleted.

A *chain* extends one full backup: the segments under ``<backup key>.continuous/`` hold, in
order, every watch event after the backup's revision (``backup.eventlog``). A segment covers
the revisions ``(after, upto]`` and the time ``(start, end]`` (unix milliseconds, when the
recorder received them), and its key says so, so that a listing alone shows what a chain covers:

    <backup key>.continuous/<after, 19 digits>-<upto, 19 digits>-<start ms, 13>-<end ms, 13>

Zero-padded numbers sort as numbers. An empty segment (``after == upto``) proves that nothing
was written in its time (a recorder writes one when a cluster stays idle). The key is a sibling
path of the backup object, never below it: some S3 servers refuse a key under an existing
object's key.

A segment object is the log encoded like a full backup (``backup.codec``: compression, then
the chunked AES-256-GCM of the cluster's key), one PutObject each; its metadata records the
format marker, the encoding, the log's sha256 and sizes, its event count and the chain's base
revision. Nothing secret goes into a key or metadata.

:func:`coverage` is pure: from a chain's listing and its base revision, how far the chain
reaches without a hole, and the first hole if there is one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from etcd_operator.api.backup import Compression
from etcd_operator.backup.codec import Encoder, decode
from etcd_operator.backup.errors import (
    CorruptObjectError,
    EncryptionKeyRequiredError,
    NoSuchKeyError,
    NotABackupError,
)
from etcd_operator.backup.metadata import COMPRESSION, ENCRYPTION, RAW_SIZE, SHA256, STORED_SIZE
from etcd_operator.backup.objects import put_small_object, store_error
from etcd_operator.backup.store import S3Client, StoreSettings, make_client

CHAIN_SUFFIX = ".continuous/"
FORMAT = "etcd-backup-segment-format"
FORMAT_VERSION = "1"
EVENTS = "etcd-events"
BASE_REVISION = "etcd-base-revision"
_NAME = re.compile(r"^(\d{19})-(\d{19})-(\d{13})-(\d{13})$")
# A segment is cut at this many raw bytes whatever its interval: bounded memory in the
# recorder and in the restore, and a recovery point that does not stretch under a write burst.
MAX_SEGMENT_BYTES = 16 << 20
_LIST_PAGE = 1000


def chain_prefix(backup_key: str) -> str:
    """Where the segments extending the backup under ``backup_key`` go."""
    return f"{backup_key}{CHAIN_SUFFIX}"


@dataclass(frozen=True, order=True)
class Segment:
    """One segment, as its key names it: revisions ``(after, upto]``, times ``(start, end]``."""

    after: int
    upto: int
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if not 0 <= self.after <= self.upto or not 0 <= self.start_ms <= self.end_ms:
            raise ValueError(f"not a segment: {self}")

    def name(self) -> str:
        return f"{self.after:019d}-{self.upto:019d}-{self.start_ms:013d}-{self.end_ms:013d}"

    def key(self, backup_key: str) -> str:
        return chain_prefix(backup_key) + self.name()

    @classmethod
    def parse(cls, name: str) -> Segment | None:
        """The segment a key's last part names; None for anything else."""
        m = _NAME.match(name)
        if m is None:
            return None
        try:
            return cls(*(int(g) for g in m.groups()))
        except ValueError:
            return None

    @property
    def empty(self) -> bool:
        return self.after == self.upto


@dataclass(frozen=True)
class Coverage:
    """How far a chain reaches from its base without a hole."""

    base: int  # the full backup's revision
    segments: tuple[Segment, ...]  # the unbroken run from the base, in order
    gap: str | None = None  # the first hole (or overlap), in words; later segments are not used

    @property
    def upto(self) -> int:
        """The last revision the chain can restore to."""
        return self.segments[-1].upto if self.segments else self.base

    @property
    def end_ms(self) -> int | None:
        """Until when the chain is known to hold every write (None: no segment yet)."""
        return self.segments[-1].end_ms if self.segments else None

    @property
    def blind_spells(self) -> tuple[tuple[int, int], ...]:
        """Times (from, to] in ms when no recorder watched live (the operator was down, say):
        no write is missing, the revisions follow on, but a write of that time was received
        only when watching resumed, so its time is not known closely enough to restore to."""
        return tuple(
            (a.end_ms, b.start_ms)
            for a, b in itertools.pairwise(self.segments)
            if b.start_ms > a.end_ms
        )


def coverage(base: int, segments: Sequence[Segment]) -> Coverage:
    """The unbroken run of ``segments`` from revision ``base``; the first break as ``gap``.

    Segments starting below ``base`` belong to no chain of this base and are ignored. A
    segment that starts after where the run reached is a hole; one that starts before it is an
    overlap, which a single recorder never writes: both end the run.
    """
    run: list[Segment] = []
    reached = base
    for seg in sorted(segments):
        if seg.after < base:
            continue
        if seg.after == reached:
            run.append(seg)
            reached = seg.upto
            continue
        if seg.after > reached:
            gap = f"revisions {reached + 1}..{seg.after} are missing"
        else:
            gap = f"segment {seg.name()} overlaps revisions up to {reached}"
        return Coverage(base, tuple(run), gap)
    return Coverage(base, tuple(run))


@dataclass(frozen=True)
class StoredSegment:
    location: str
    key: str
    segment: Segment
    stored_size: int
    raw_size: int
    events: int


async def client_for(store: StoreSettings) -> S3Client:
    """A boto3 client for ``store`` (loading botocore's models in a worker thread)."""
    try:
        return await asyncio.to_thread(make_client, store)
    except Exception as err:
        raise store_error(err, store, None, "connect") from None


def _encode(raw: bytes, compression: Compression, key: bytes | None) -> tuple[bytes, str, str]:
    encoder = Encoder(compression, key)
    body = encoder.update(raw) + encoder.finish()
    return body, hashlib.sha256(raw).hexdigest(), encoder.encryption


async def upload_segment(
    s3: S3Client,
    store: StoreSettings,
    backup_key: str,
    segment: Segment,
    log: bytes,
    *,
    events: int,
    base: int,
    compression: Compression | str,
    encryption_key: bytes | None,
) -> StoredSegment:
    """Write one segment (``log``, the raw event log of its revisions). Raises a BackupError."""
    key = segment.key(backup_key)
    body, sha, encryption = await asyncio.to_thread(
        _encode, log, Compression(compression), encryption_key
    )
    metadata = {
        FORMAT: FORMAT_VERSION,
        COMPRESSION: Compression(compression).value,
        ENCRYPTION: encryption,
        SHA256: sha,
        RAW_SIZE: str(len(log)),
        STORED_SIZE: str(len(body)),
        EVENTS: str(events),
        BASE_REVISION: str(base),
    }
    await put_small_object(
        s3, store, key, body, content_type="application/octet-stream", metadata=metadata,
        operation="segment upload",
    )  # fmt: skip
    return StoredSegment(store.location(key), key, segment, len(body), len(log), events)


async def list_chain(s3: S3Client, store: StoreSettings, backup_key: str) -> list[Segment]:
    """The segments of the chain of the backup under ``backup_key``, in order (the listing)."""
    prefix = chain_prefix(backup_key)
    found: list[Segment] = []
    token: str | None = None
    while True:
        args: dict[str, Any] = {"Bucket": store.bucket, "Prefix": prefix, "MaxKeys": _LIST_PAGE}
        if token:
            args["ContinuationToken"] = token
        try:
            page = await asyncio.to_thread(s3.list_objects_v2, **args)
        except Exception as err:
            raise store_error(err, store, prefix, "segment listing") from None
        for obj in page.get("Contents") or ():
            seg = Segment.parse(str(obj["Key"])[len(prefix) :])
            if seg is not None:
                found.append(seg)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return sorted(found)


async def fetch_segment(
    s3: S3Client,
    store: StoreSettings,
    backup_key: str,
    segment: Segment,
    encryption_key: bytes | None,
) -> bytes:
    """The raw event log of one segment, verified (size, sha256, encryption). Raises a
    BackupError."""
    key = segment.key(backup_key)
    location = store.location(key)
    try:
        resp = await asyncio.to_thread(s3.get_object, Bucket=store.bucket, Key=key)
        body = resp["Body"]
        try:
            data: bytes = await asyncio.to_thread(body.read)
        finally:
            body.close()
    except Exception as err:
        raise store_error(err, store, key, "segment download") from None
    meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
    if meta.get(FORMAT) != FORMAT_VERSION:
        raise NotABackupError(f"{location} is not a continuous-backup segment of this operator")
    try:
        raw_size, sha = int(meta[RAW_SIZE]), meta[SHA256]
        compression = Compression(meta[COMPRESSION])
        encrypted = meta[ENCRYPTION] != "none"
    except (KeyError, ValueError):
        raise NotABackupError(f"{location} has unreadable segment metadata") from None
    if encrypted and encryption_key is None:
        raise EncryptionKeyRequiredError(
            f"{location} is encrypted: give the encryption key Secret it was written with"
        )
    return await asyncio.to_thread(
        partial(
            _decode,
            data,
            compression=compression,
            encrypted=encrypted,
            key=encryption_key,
            sha=sha,
            raw_size=raw_size,
            location=location,
        )
    )


def _decode(
    data: bytes,
    *,
    compression: Compression,
    encrypted: bool,
    key: bytes | None,
    sha: str,
    raw_size: int,
    location: str,
) -> bytes:
    out = bytearray()
    digest = decode(
        io.BytesIO(data),
        out.extend,
        compression=compression,
        encrypted=encrypted,
        key=key,
        expected_sha256=sha,
        expected_size=raw_size,
        name=location,
        check_trailer=False,
    )
    if not hmac.compare_digest(digest.sha256, sha.lower()):  # decode checked; belt and braces
        raise CorruptObjectError(f"{location} is corrupt")
    return bytes(out)


async def delete_chain(s3: S3Client, store: StoreSettings, backup_key: str) -> int:
    """Delete every segment of a backup's chain (with the backup); returns how many."""
    segments = await list_chain(s3, store, backup_key)
    for seg in segments:
        key = seg.key(backup_key)
        try:
            await asyncio.to_thread(s3.delete_object, Bucket=store.bucket, Key=key)
        except Exception as err:
            error = store_error(err, store, key, "segment deletion")
            if not isinstance(error, NoSuchKeyError):
                raise error from None
    return len(segments)
