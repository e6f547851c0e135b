"""An in-memory S3 with the calls of ``backup.store.S3Client``, for the uploader's unit tests.

It keeps objects and multipart uploads as S3 does (parts become an object only on completion),
answers with botocore's ``ClientError`` like a real client, can discard part bodies (the memory
test streams gigabytes through it), counts concurrent part uploads, and fails any call on demand.
The real S3 server (moto in server mode) is exercised by the integration tests.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"fake {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@dataclass
class Upload:
    key: str
    metadata: dict[str, str]
    parts: dict[int, bytes] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)


class _Body(io.BytesIO):
    """A StreamingBody stand-in: ``read(n)`` and ``close()``."""


# Decides whether a call fails: (operation, its arguments) -> an exception, or None.
FailureRule = Callable[[str, dict[str, Any]], Exception | None]


class FakeS3:
    def __init__(self, *, keep_parts: bool = True, bucket: str = "backups") -> None:
        self.bucket = bucket
        self.keep_parts = keep_parts
        # Called inside every part upload (in the uploader's worker thread): a test can hold
        # parts "in flight" until a condition of its own holds, like a slow connection.
        self.part_gate: Callable[[], None] | None = None
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.uploads: dict[str, Upload] = {}
        self.completed: list[str] = []
        self.aborted: list[str] = []
        self.calls: list[str] = []
        self.fail: FailureRule | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.parts_in_flight = 0
        self.max_parts_in_flight = 0
        self.part_started = threading.Event()

    # -- plumbing -----------------------------------------------------------------------------
    def _enter(self, op: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(op)
        if self.fail is not None:
            err = self.fail(op, kwargs)
            if err is not None:
                raise err
        if kwargs.get("Bucket", self.bucket) != self.bucket:
            raise client_error("NoSuchBucket", op, 404)

    def _upload(self, op: str, kwargs: dict[str, Any]) -> Upload:
        upload = self.uploads.get(kwargs["UploadId"])
        if upload is None or upload.key != kwargs["Key"]:
            raise client_error("NoSuchUpload", op, 404)
        return upload

    @staticmethod
    def _bytes(body: Any) -> bytes:
        return bytes(body) if not hasattr(body, "read") else body.read()

    # -- objects ------------------------------------------------------------------------------
    def put_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("PutObject", kw)
        self.objects[kw["Key"]] = (self._bytes(kw["Body"]), dict(kw.get("Metadata", {})))
        return {"ETag": '"put"'}

    def get_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("GetObject", kw)
        if kw["Key"] not in self.objects:
            raise client_error("NoSuchKey", "GetObject", 404)
        data, meta = self.objects[kw["Key"]]
        return {"Body": _Body(data), "Metadata": dict(meta), "ContentLength": len(data)}

    def head_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("HeadObject", kw)
        if kw["Key"] not in self.objects:
            raise client_error("404", "HeadObject", 404)
        data, meta = self.objects[kw["Key"]]
        return {"Metadata": dict(meta), "ContentLength": len(data)}

    def delete_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("DeleteObject", kw)
        self.objects.pop(kw["Key"], None)
        return {}

    def list_objects_v2(self, **kw: Any) -> dict[str, Any]:
        """One page of keys under ``Prefix`` in key order (S3's), ``MaxKeys`` per page."""
        self._enter("ListObjectsV2", kw)
        keys = sorted(k for k in self.objects if k.startswith(kw.get("Prefix", "")))
        start = int(kw.get("ContinuationToken") or 0)
        page = keys[start : start + kw.get("MaxKeys", 1000)]
        more = start + len(page) < len(keys)
        out: dict[str, Any] = {
            "Contents": [{"Key": k, "Size": len(self.objects[k][0])} for k in page],
            "IsTruncated": more,
        }
        if more:
            out["NextContinuationToken"] = str(start + len(page))
        return out

    def copy_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("CopyObject", kw)
        source = kw["CopySource"]["Key"]
        if source not in self.objects:
            raise client_error("NoSuchKey", "CopyObject", 404)
        assert kw["MetadataDirective"] == "REPLACE"
        self.objects[kw["Key"]] = (self.objects[source][0], dict(kw["Metadata"]))
        return {"CopyObjectResult": {"ETag": '"copy"'}}

    # -- multipart ----------------------------------------------------------------------------
    def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self._enter("CreateMultipartUpload", kw)
        upload_id = f"upload-{next(self._ids)}"
        self.uploads[upload_id] = Upload(kw["Key"], dict(kw.get("Metadata", {})))
        return {"UploadId": upload_id}

    def upload_part(self, **kw: Any) -> dict[str, Any]:
        with self._lock:
            self.parts_in_flight += 1
            self.max_parts_in_flight = max(self.max_parts_in_flight, self.parts_in_flight)
        self.part_started.set()
        try:
            self._enter("UploadPart", kw)
            upload = self._upload("UploadPart", kw)
            body = kw["Body"]
            number = kw["PartNumber"]
            upload.sizes[number] = len(body)
            if self.part_gate is not None:
                self.part_gate()
            if self.keep_parts:
                upload.parts[number] = bytes(body)
            return {"ETag": f'"{hashlib.md5(bytes(body[:64])).hexdigest()}-{number}"'}
        finally:
            with self._lock:
                self.parts_in_flight -= 1

    def upload_part_copy(self, **kw: Any) -> dict[str, Any]:
        self._enter("UploadPartCopy", kw)
        upload = self._upload("UploadPartCopy", kw)
        data = self.objects[kw["CopySource"]["Key"]][0]
        first, last = kw["CopySourceRange"].removeprefix("bytes=").split("-")
        piece = data[int(first) : int(last) + 1]
        upload.parts[kw["PartNumber"]] = piece
        upload.sizes[kw["PartNumber"]] = len(piece)
        return {"CopyPartResult": {"ETag": f'"copy-{kw["PartNumber"]}"'}}

    def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self._enter("CompleteMultipartUpload", kw)
        upload = self._upload("CompleteMultipartUpload", kw)
        numbers = [p["PartNumber"] for p in kw["MultipartUpload"]["Parts"]]
        assert numbers == sorted(upload.sizes), (numbers, sorted(upload.sizes))
        data = b"".join(upload.parts.get(n, b"") for n in numbers)
        self.objects[upload.key] = (data, upload.metadata)
        del self.uploads[kw["UploadId"]]
        self.completed.append(upload.key)
        return {}

    def abort_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self._enter("AbortMultipartUpload", kw)
        self._upload("AbortMultipartUpload", kw)
        del self.uploads[kw["UploadId"]]
        self.aborted.append(kw["UploadId"])
        return {}
