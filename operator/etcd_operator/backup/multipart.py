"""The S3 side of an upload: parts, the staging object, the copy to the final key, the abort.

:class:`MultipartWriter` takes the encoded object in pieces (``backup.upload`` feeds it) and
cuts it into parts of a fixed size (S3 wants at least 5 MiB for all parts but the last, and some
S3-compatible servers want all but the last of one size). At most two parts are held at a time:
the one being uploaded and the one being filled. Every boto3 call runs in a worker thread.

A backup is only ever visible under its key once it is complete and verified:

* an object of less than one part goes up with one PutObject, with the full metadata;
* a larger one goes up as a multipart upload to a staging key (``<key>.partial``); only once the
  caller has verified the stream (etcd's trailing sha256) and calls ``finish`` is the upload
  completed, then copied server-side to the final key with the full metadata (S3 takes metadata
  at the start of a multipart upload, when our sha256 and sizes are not known yet; objects over
  5 GiB are copied in parts), and the staging object deleted.

On any failure ``abort`` aborts the multipart upload (after a part still in flight has finished,
so that no part outlives the abort) and deletes the staging object, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from etcd_operator.backup.errors import BackupError, StoreError, classify_s3_error
from etcd_operator.backup.metadata import ObjectMetadata
from etcd_operator.backup.store import S3Client, StoreSettings

log = logging.getLogger(__name__)

MiB = 1 << 20
MAX_PARTS = 10_000
# CopyObject copies at most 5 GiB; larger objects are copied in parts of COPY_PART_SIZE.
MAX_COPY_SIZE = 5 * 1024 * MiB
COPY_PART_SIZE = 1024 * MiB
STAGING_SUFFIX = ".partial"
CONTENT_TYPE = "application/octet-stream"

# Clean-ups that outlive a second cancellation; referenced until done.
_cleanups: set[asyncio.Task[None]] = set()


async def clean_up(coro: Coroutine[Any, Any, None]) -> None:
    """Run a clean-up to its end even if the caller is cancelled (again) meanwhile."""
    task = asyncio.ensure_future(coro)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Cancelled while cleaning up: the clean-up goes on in the background; the original
        # exception (raised by our caller) is what matters.
        pass
    except Exception as err:
        log.warning("cleaning up after a failed upload failed: %r", err)


class MultipartWriter:
    """The S3 side: parts, at most one in flight and one being filled; the final object."""

    def __init__(self, s3: S3Client, store: StoreSettings, key: str, part_size: int) -> None:
        self.s3 = s3
        self.store = store
        self.key = key
        self.staging = key + STAGING_SUFFIX
        self.part_size = part_size
        self.buffer: bytearray | None = None  # the part being filled
        self.filled = 0
        self.size = 0  # stored bytes written so far
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.parts_sent = 0
        self.in_flight: asyncio.Task[None] | None = None
        self.staged = False  # the staging object exists and must go on failure
        # Calls that create something in S3, while they run: a cancelled caller does not stop
        # a boto3 call in its thread, so the abort waits for them to learn what exists.
        self.creating: asyncio.Task[dict[str, Any]] | None = None
        self.completing: asyncio.Task[dict[str, Any]] | None = None

    async def _call(self, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """One boto3 call in a worker thread; failures become typed errors."""
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as err:
            raise classify_s3_error(
                err,
                endpoint=self.store.display_endpoint,
                bucket=self.store.bucket,
                key=self.key,
                operation="upload",
            ) from None

    def _put_args(self, meta: ObjectMetadata) -> dict[str, Any]:
        return {
            "Bucket": self.store.bucket,
            "Metadata": meta.to_s3(),
            "ContentType": CONTENT_TYPE,
            **self.store.sse_args(),
        }

    async def write(self, data: bytes, started: ObjectMetadata) -> None:
        if self.in_flight is not None and self.in_flight.done():
            await self._wait_in_flight()  # surface a failed part now, not a part later
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self.buffer is None:
                # Exactly one part's capacity, allocated only once the previous buffer went
                # out: never a third part in memory, no over-allocation from growing.
                self.buffer = bytearray(self.part_size)
            take = min(len(view) - pos, self.part_size - self.filled)
            self.buffer[self.filled : self.filled + take] = view[pos : pos + take]
            self.filled += take
            self.size += take
            pos += take
            if self.filled == self.part_size:
                part, self.buffer, self.filled = self.buffer, None, 0
                await self._send_part(part, started)

    def _take_rest(self) -> bytearray:
        rest, self.buffer, filled, self.filled = self.buffer or bytearray(), None, self.filled, 0
        del rest[filled:]
        return rest

    async def _wait_in_flight(self) -> None:
        task = self.in_flight
        if task is not None:
            # Shielded: a cancelled caller leaves the part to the abort, which waits for it.
            await asyncio.shield(task)
            self.in_flight = None

    async def _send_part(self, part: bytearray, started: ObjectMetadata) -> None:
        # The part just cut is the second one held: wait for the one in flight first.
        await self._wait_in_flight()
        if self.upload_id is None:
            self.creating = asyncio.ensure_future(
                self._call(
                    self.s3.create_multipart_upload, Key=self.staging, **self._put_args(started)
                )
            )
            resp = await asyncio.shield(self.creating)
            self.creating = None
            self.upload_id = str(resp["UploadId"])
        self.parts_sent += 1
        if self.parts_sent > MAX_PARTS:
            raise StoreError(
                f"the backup needs more than {MAX_PARTS} parts of {self.part_size} bytes: "
                "use a larger part size"
            )
        self.in_flight = asyncio.ensure_future(self._upload_part(self.parts_sent, part))

    async def _upload_part(self, number: int, part: bytearray) -> None:
        resp = await self._call(
            self.s3.upload_part,
            Bucket=self.store.bucket,
            Key=self.staging,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=part,
        )
        self.parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    async def finish(self, meta: ObjectMetadata) -> None:
        if self.upload_id is None:
            resp = await self._call(
                self.s3.put_object, Key=self.key, Body=self._take_rest(), **self._put_args(meta)
            )
            self._check_sse(resp)
            return
        if self.filled:
            await self._send_part(self._take_rest(), meta)
        await self._wait_in_flight()
        self.completing = asyncio.ensure_future(
            self._call(
                self.s3.complete_multipart_upload,
                Bucket=self.store.bucket,
                Key=self.staging,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": sorted(self.parts, key=lambda p: p["PartNumber"])},
            )
        )
        await asyncio.shield(self.completing)
        self.completing = None
        self.upload_id = None
        self.staged = True
        await self._copy_into_place(meta)
        await self._delete_staging()

    async def _copy_into_place(self, meta: ObjectMetadata) -> None:
        source = {"Bucket": self.store.bucket, "Key": self.staging}
        if self.size <= MAX_COPY_SIZE:
            resp = await self._call(
                self.s3.copy_object,
                Key=self.key,
                CopySource=source,
                MetadataDirective="REPLACE",
                **self._put_args(meta),
            )
            self._check_sse(resp)
            return
        resp = await self._call(
            self.s3.create_multipart_upload, Key=self.key, **self._put_args(meta)
        )
        upload_id = str(resp["UploadId"])
        try:
            parts = []
            for number, start in enumerate(range(0, self.size, COPY_PART_SIZE), start=1):
                end = min(start + COPY_PART_SIZE, self.size) - 1
                copied = await self._call(
                    self.s3.upload_part_copy,
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            done = await self._call(
                self.s3.complete_multipart_upload,
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            await clean_up(self._abort_upload(self.key, upload_id))
            raise
        self._check_sse(done)

    def _check_sse(self, resp: dict[str, Any]) -> None:
        """Warn when server-side encryption was asked for and the server does not confirm it.

        AWS (and moto) answer the call that wrote the object with the algorithm applied; some
        S3-compatible servers (versitygw's POSIX backend) accept the headers and store the
        object unencrypted. The backup is kept: a server may encrypt without saying so.
        """
        sse = self.store.server_side_encryption
        if sse is None or resp.get("ServerSideEncryption") == sse.algorithm:
            return
        log.warning(
            "S3 endpoint %s did not confirm server-side encryption %s of %s (it answered %s): "
            "the server may ignore it and store the backup unencrypted",
            self.store.display_endpoint,
            sse.algorithm,
            self.store.location(self.key),
            resp.get("ServerSideEncryption") or "none",
        )

    async def _delete_staging(self) -> None:
        try:
            await self._call(self.s3.delete_object, Bucket=self.store.bucket, Key=self.staging)
        except BackupError as err:
            # The backup itself is complete; a leftover staging object is garbage, not a backup.
            log.warning("could not delete staging object %s: %s", self.staging, err)
        else:
            self.staged = False

    async def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                self.s3.abort_multipart_upload,
                Bucket=self.store.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except BackupError as err:
            log.warning(
                "could not abort multipart upload %s of %s: %s (a bucket lifecycle rule "
                "AbortIncompleteMultipartUpload removes such leftovers)",
                upload_id,
                self.store.location(key),
                err,
            )

    async def abort(self, cause: BaseException) -> None:
        """Undo everything after a failure: no object may look like a complete backup."""
        creating, self.creating = self.creating, None
        if creating is not None and self.upload_id is None:
            with contextlib.suppress(Exception):
                self.upload_id = str((await creating)["UploadId"])
        task, self.in_flight = self.in_flight, None
        if task is not None:
            # AWS: a part still uploading when the upload is aborted may survive the abort.
            try:
                await task
            except Exception as err:
                log.debug("part upload failed during abort: %r", err)
        completing, self.completing = self.completing, None
        if completing is not None:
            try:
                await completing
            except Exception as err:
                log.debug("completing the upload failed: %r", err)
            else:
                self.upload_id, self.staged = None, True
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            await self._abort_upload(self.staging, upload_id)
            log.info(
                "aborted multipart upload of %s after: %s",
                self.store.location(self.key),
                cause if isinstance(cause, BackupError) else type(cause).__name__,
            )
        if self.staged:
            await self._delete_staging()
