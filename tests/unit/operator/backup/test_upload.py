"""The streaming uploader against an in-memory S3: parts, staging and copy, metadata, the abort
on every kind of failure, and the memory bound while gigabytes stream through it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcd_operator.api.backup import Compression, ServerSideEncryption
from etcd_operator.backup import multipart
from etcd_operator.backup.codec import decode_bytes
from etcd_operator.backup.download import download_snapshot
from etcd_operator.backup.errors import (
    AccessDeniedError,
    EtcdStreamError,
    NoSuchBucketError,
    TrailerMismatchError,
)
from etcd_operator.backup.metadata import ObjectMetadata, SnapshotInfo
from etcd_operator.backup.store import StoreSettings
from etcd_operator.backup.upload import (
    DEFAULT_PART_SIZE,
    MIN_PART_SIZE,
    UploadResult,
    upload_snapshot,
)
from pyetcd.client import EtcdClientError

from tests.unit.operator.backup.fake_s3 import FakeS3, client_error

MiB = 1 << 20
KEY = bytes(range(32))
STORE = StoreSettings(bucket="backups", prefix="ns/demo")
OBJECT_KEY = STORE.key_for("demo-20250101-000000")
PIECE = 32 * 1024  # what etcd sends per message


def snapshot(size: int, seed: bytes = b"db") -> bytes:
    db = hashlib.shake_256(seed).digest(size)
    return db + hashlib.sha256(db).digest()


async def stream(raw: bytes, piece: int = PIECE) -> AsyncIterator[bytes]:
    for i in range(0, len(raw), piece):
        yield raw[i : i + piece]


def run_upload(s3: FakeS3, chunks: AsyncIterator[bytes], **kwargs: Any) -> UploadResult:
    kwargs.setdefault("part_size", MIN_PART_SIZE)
    return asyncio.run(upload_snapshot(chunks, STORE, OBJECT_KEY, client=s3, **kwargs))


def assert_nothing_stored(s3: FakeS3) -> None:
    """No object, no multipart upload left: nothing that could look like a backup."""
    assert s3.objects == {}
    assert s3.uploads == {}


# -- success ------------------------------------------------------------------------------------


def test_small_snapshot_is_one_put_with_full_metadata() -> None:
    s3 = FakeS3()
    raw = snapshot(100_000)
    info = SnapshotInfo(revision=7, cluster_id=0xABC, etcd_version="3.4.30", member="m1")
    result = run_upload(s3, stream(raw), compression="zstd", encryption_key=KEY, metadata=info)
    assert s3.calls == ["PutObject"]
    data, meta = s3.objects[OBJECT_KEY]
    assert (
        result.location
        == f"s3://backups/{OBJECT_KEY}"
        == "s3://backups/ns/demo/" + ("demo-20250101-000000")
    )
    assert (result.raw_size, result.stored_size, result.parts) == (len(raw), len(data), 0)
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    decoded = ObjectMetadata.from_s3(meta, "x")
    assert decoded == result.metadata
    assert decoded.snapshot == info
    assert (decoded.sha256, decoded.raw_size, decoded.stored_size) == (
        result.sha256,
        len(raw),
        len(data),
    )
    assert decode_bytes(data, "zstd", KEY) == raw


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_multipart_upload_goes_through_staging(
    compression: Compression, key: bytes | None, tmp_path: Path
) -> None:
    """Equal parts but the last, one in flight at a time; the final key appears only through
    the copy that carries the full metadata; the staging object is gone; it downloads back."""
    s3 = FakeS3()
    raw = snapshot(3 * MIN_PART_SIZE + 12345)
    # zstd and gzip find nothing to compress in shake output: still several parts.
    result = run_upload(s3, stream(raw), compression=compression, encryption_key=key)
    assert result.parts == 4
    assert s3.calls[0] == "CreateMultipartUpload"
    assert s3.calls[-3:] == ["CompleteMultipartUpload", "CopyObject", "DeleteObject"]
    assert s3.max_parts_in_flight == 1
    assert s3.completed == [OBJECT_KEY + ".partial"]
    assert list(s3.objects) == [OBJECT_KEY]
    data, meta = s3.objects[OBJECT_KEY]
    assert len(data) == result.stored_size
    assert ObjectMetadata.from_s3(meta, "x").sha256 == hashlib.sha256(raw).hexdigest()

    dest = tmp_path / "snapshot.db"
    got = asyncio.run(download_snapshot(STORE, OBJECT_KEY, dest, key, client=s3))
    assert dest.read_bytes() == raw
    assert (got.sha256, got.raw_size, got.stored_size) == (
        result.sha256,
        len(raw),
        result.stored_size,
    )


def test_part_sizes_are_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = FakeS3()
    sizes: list[int] = []
    original = s3.upload_part

    def upload_part(**kw: Any) -> dict[str, Any]:
        sizes.append(len(kw["Body"]))
        return original(**kw)

    monkeypatch.setattr(s3, "upload_part", upload_part)
    raw = snapshot(2 * MIN_PART_SIZE + 5)
    run_upload(s3, stream(raw, piece=100_003), compression="none")
    assert sizes == [MIN_PART_SIZE, MIN_PART_SIZE, len(raw) - 2 * MIN_PART_SIZE]


def test_stream_ending_on_a_part_boundary() -> None:
    s3 = FakeS3()
    db = hashlib.shake_256(b"x").digest(2 * MIN_PART_SIZE - 32)
    raw = db + hashlib.sha256(db).digest()
    result = run_upload(s3, stream(raw), compression="none")
    assert result.parts == 2
    assert s3.objects[OBJECT_KEY][0] == raw


def test_objects_over_the_copy_limit_are_copied_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipart, "MAX_COPY_SIZE", 8 * MiB)
    monkeypatch.setattr(multipart, "COPY_PART_SIZE", 5 * MiB)
    s3 = FakeS3()
    raw = snapshot(12 * MiB)
    run_upload(s3, stream(raw), compression="none")
    assert "CopyObject" not in s3.calls
    assert s3.calls.count("UploadPartCopy") == 3
    data, meta = s3.objects[OBJECT_KEY]
    assert data == raw
    assert ObjectMetadata.from_s3(meta, "x").complete
    assert list(s3.objects) == [OBJECT_KEY]


# -- failures: always aborted, nothing left -------------------------------------------------------


async def failing_stream(raw: bytes, after: int, error: Exception) -> AsyncIterator[bytes]:
    async for chunk in stream(raw[:after]):
        yield chunk
    raise error


def test_stream_failure_mid_upload_aborts() -> None:
    s3 = FakeS3()
    raw = snapshot(4 * MIN_PART_SIZE)
    err = EtcdClientError("Socket closed", grpc.StatusCode.UNAVAILABLE, "127.0.0.1:2379")
    with pytest.raises(EtcdStreamError, match=r"from member m0 failed: UNAVAILABLE: Socket closed"):
        run_upload(
            s3,
            failing_stream(raw, 3 * MIN_PART_SIZE, err),
            metadata=SnapshotInfo(member="m0"),
        )
    assert "CreateMultipartUpload" in s3.calls
    assert len(s3.aborted) == 1
    assert_nothing_stored(s3)


def test_stream_failure_before_the_first_part_stores_nothing() -> None:
    s3 = FakeS3()
    with pytest.raises(EtcdStreamError, match="OSError: boom"):
        run_upload(s3, failing_stream(snapshot(MiB), 1000, OSError("boom")))
    assert s3.calls == []
    assert_nothing_stored(s3)


def test_stream_ending_early_is_a_trailer_mismatch() -> None:
    s3 = FakeS3()
    raw = snapshot(3 * MIN_PART_SIZE)
    with pytest.raises(TrailerMismatchError, match="fails etcd's own sha256 check"):
        run_upload(s3, stream(raw[: 2 * MIN_PART_SIZE + 100]))
    assert len(s3.aborted) == 1
    assert "CompleteMultipartUpload" not in s3.calls
    assert_nothing_stored(s3)


def test_damaged_small_snapshot_is_never_put() -> None:
    s3 = FakeS3()
    raw = bytearray(snapshot(1000))
    raw[10] ^= 1
    with pytest.raises(TrailerMismatchError):
        run_upload(s3, stream(bytes(raw)))
    assert s3.calls == []


def fail_nth(operation: str, n: int, error: Exception) -> Callable[[str, dict[str, Any]], Any]:
    seen = 0
    lock = threading.Lock()

    def rule(op: str, _kwargs: dict[str, Any]) -> Exception | None:
        nonlocal seen
        if op != operation:
            return None
        with lock:
            seen += 1
            return error if seen == n else None

    return rule


def test_failing_part_upload_aborts() -> None:
    s3 = FakeS3()
    s3.fail = fail_nth("UploadPart", 2, client_error("AccessDenied", "UploadPart", 403))
    with pytest.raises(AccessDeniedError, match=r"allow the credentials s3:PutObject"):
        run_upload(s3, stream(snapshot(4 * MIN_PART_SIZE)))
    assert len(s3.aborted) == 1
    assert_nothing_stored(s3)


def test_failing_completion_and_copy_abort_and_clean_up() -> None:
    s3 = FakeS3()
    s3.fail = fail_nth("CompleteMultipartUpload", 1, client_error("InternalError", "x", 500))
    with pytest.raises(Exception, match="InternalError"):
        run_upload(s3, stream(snapshot(2 * MIN_PART_SIZE)))
    assert len(s3.aborted) == 1
    assert_nothing_stored(s3)

    s3 = FakeS3()
    s3.fail = fail_nth("CopyObject", 1, client_error("AccessDenied", "CopyObject", 403))
    with pytest.raises(AccessDeniedError, match="s3:GetObject and s3:PutObject"):
        run_upload(s3, stream(snapshot(2 * MIN_PART_SIZE)))
    assert s3.calls[-1] == "DeleteObject"  # the staging object
    assert_nothing_stored(s3)


def test_missing_bucket_is_named() -> None:
    s3 = FakeS3(bucket="elsewhere")
    with pytest.raises(NoSuchBucketError, match="bucket 'backups' does not exist"):
        run_upload(s3, stream(snapshot(1000)))


def test_cancellation_aborts() -> None:
    s3 = FakeS3()
    raw = snapshot(4 * MIN_PART_SIZE)
    reached = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        async for chunk in stream(raw[: 2 * MIN_PART_SIZE + PIECE]):
            yield chunk
        reached.set()
        await asyncio.Event().wait()  # etcd goes quiet
        yield b""

    async def main() -> None:
        task = asyncio.create_task(
            upload_snapshot(stalling(), STORE, OBJECT_KEY, client=s3, part_size=MIN_PART_SIZE)
        )
        await asyncio.wait_for(reached.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(s3.aborted) == 1
    assert_nothing_stored(s3)


@pytest.mark.parametrize("operation", ["CreateMultipartUpload", "UploadPart"])
def test_cancellation_during_an_s3_call_still_aborts(
    operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A boto3 call cannot be stopped in its thread: the abort waits for it to learn the
    upload id (or for the part to land) and then removes the multipart upload."""
    s3 = FakeS3()
    entered, release = threading.Event(), threading.Event()
    original = getattr(s3, boto3_method(operation))

    def blocking(**kw: Any) -> dict[str, Any]:
        entered.set()
        assert release.wait(30)
        result: dict[str, Any] = original(**kw)
        return result

    monkeypatch.setattr(s3, boto3_method(operation), blocking)

    async def main() -> None:
        task = asyncio.create_task(
            upload_snapshot(
                stream(snapshot(3 * MIN_PART_SIZE)),
                STORE,
                OBJECT_KEY,
                compression="none",
                client=s3,
                part_size=MIN_PART_SIZE,
            )
        )
        assert await asyncio.to_thread(entered.wait, 30)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(s3.aborted) == 1
    assert_nothing_stored(s3)


def boto3_method(operation: str) -> str:
    return {"CreateMultipartUpload": "create_multipart_upload", "UploadPart": "upload_part"}[
        operation
    ]


def test_closing_the_stream_on_failure() -> None:
    """The source is closed on failure (for EtcdClient.snapshot: the gRPC call is cancelled)."""
    s3 = FakeS3()
    s3.fail = fail_nth("UploadPart", 1, client_error("SlowDown", "UploadPart", 503))
    closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            async for chunk in stream(snapshot(4 * MIN_PART_SIZE)):
                yield chunk
        finally:
            closed = True

    with pytest.raises(Exception, match="SlowDown"):
        run_upload(s3, source())
    assert closed
    assert_nothing_stored(s3)


# -- memory -------------------------------------------------------------------------------------

STREAM_SIZE = 2 << 30
BLOCK = 8 * MiB  # random, repeated: longer than zstd's window at level 3, so incompressible


class Progress:
    """How far the generated stream got; part uploads wait on it to stay "in flight"."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.produced = 0
        self.ended = False

    def add(self, n: int) -> None:
        with self.cond:
            self.produced += n
            self.cond.notify_all()

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def hold_part(self) -> None:
        """Keep a part uploading until 1 MiB more was streamed: the uploader has then cut into
        the next part while this one is still in flight (the worst case for memory)."""
        with self.cond:
            start = self.produced
            done = self.cond.wait_for(
                lambda: self.ended or self.produced >= start + MiB, timeout=60
            )
        assert done, "the stream did not advance while a part was in flight"


async def generated(size: int, block: memoryview, progress: Progress) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    sent = 0
    while sent < size:
        offset = sent % BLOCK
        piece = bytes(block[offset : offset + min(PIECE, size - sent)])
        digest.update(piece)
        sent += len(piece)
        progress.add(len(piece))
        yield piece
    progress.end()
    yield digest.digest()


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
def test_memory_stays_bounded_while_streaming_gigabytes(compression: Compression) -> None:
    """2 GiB through the uploader at the default 16 MiB part size: Python's peak allocation
    stays at two parts (the one in flight, the one being filled) plus a few MiB.

    (tracemalloc sees Python's allocations, which is where parts live; zstd's own window,
    a few MiB of C memory, is not counted.)
    """
    s3 = FakeS3(keep_parts=False)
    progress = Progress()
    s3.part_gate = progress.hold_part
    block = memoryview(os.urandom(BLOCK))  # before tracing: the test's own data
    started = time.monotonic()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = asyncio.run(
            upload_snapshot(
                generated(STREAM_SIZE, block, progress),
                StoreSettings(bucket="backups"),
                "big",
                compression=compression,
                client=s3,
            )
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    print(
        f"\n{compression}: {STREAM_SIZE / MiB:.0f} MiB streamed in {elapsed:.1f}s, "
        f"{result.parts} parts, peak traced memory {peak / MiB:.1f} MiB"
    )
    assert result.raw_size == STREAM_SIZE + 32
    assert result.parts >= STREAM_SIZE // DEFAULT_PART_SIZE
    assert s3.max_parts_in_flight == 1
    assert peak < 2 * DEFAULT_PART_SIZE + 8 * MiB


@pytest.mark.parametrize("size", [MiB, 3 * MIN_PART_SIZE])  # one PutObject; parts and a copy
def test_unconfirmed_server_side_encryption_is_warned_about(
    size: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The fake, like versitygw, accepts the SSE headers and answers without the algorithm."""
    s3 = FakeS3()
    store = StoreSettings(
        bucket="backups",
        prefix="ns/demo",
        server_side_encryption=ServerSideEncryption(algorithm="AES256"),
    )
    with caplog.at_level("WARNING", logger="etcd_operator.backup.multipart"):
        asyncio.run(
            upload_snapshot(
                stream(snapshot(size)), store, OBJECT_KEY, client=s3, part_size=MIN_PART_SIZE
            )
        )
        asyncio.run(
            upload_snapshot(
                stream(snapshot(size)), STORE, OBJECT_KEY, client=FakeS3(), part_size=MIN_PART_SIZE
            )
        )
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned
    assert "did not confirm server-side encryption AES256" in warned[0]
    assert f"s3://backups/{OBJECT_KEY}" in warned[0]
