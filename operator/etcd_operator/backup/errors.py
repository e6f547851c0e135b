"""Typed backup errors, each with a one-line message a user can act on, and S3 error mapping.

Every failure of the backup library surfaces as a :class:`BackupError` subclass: the callers (the
operator's runtime, a restore init container) put ``str(err)`` into a status message or an event
and ``err.reason`` into a condition, so a message names what failed, where, and what to check,
on one line. Messages are built here from codes, names and locations only, never from request
data: they can carry no credentials (boto3's own exceptions are not chained for that reason; the
S3 error code and HTTP status stay available as attributes).
"""

from __future__ import annotations

from typing import ClassVar

import botocore.exceptions

__all__ = [
    "AccessDeniedError",
    "BackupError",
    "CorruptObjectError",
    "EncryptionKeyRequiredError",
    "EtcdStreamError",
    "InvalidCredentialsError",
    "InvalidEncryptionKeyError",
    "NoSuchBucketError",
    "NoSuchKeyError",
    "NotABackupError",
    "SnapshotFileError",
    "StoreError",
    "StoreUnreachableError",
    "TrailerMismatchError",
    "TruncatedObjectError",
    "WrongEncryptionKeyError",
    "classify_s3_error",
]


class BackupError(Exception):
    """A backup or restore failed; ``str(err)`` is one line for a user, ``reason`` a short code."""

    reason: ClassVar[str] = "BackupFailed"

    def __init__(self, message: str) -> None:
        # One line, whatever a server put into the text we were given.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


# -- the store ------------------------------------------------------------------------------------


class StoreError(BackupError):
    """An S3 call failed for a reason without a more specific class (the code is in the text)."""

    reason = "StoreError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class StoreUnreachableError(StoreError):
    """The S3 endpoint did not answer: wrong URL, DNS, refused connection, timeout, TLS."""

    reason = "StoreUnreachable"


class InvalidCredentialsError(StoreError):
    """The S3 server does not accept the credentials (unknown key, wrong secret, expired)."""

    reason = "InvalidCredentials"


class AccessDeniedError(StoreError):
    """The credentials are valid but not allowed to do this (bucket policy, IAM policy)."""

    reason = "AccessDenied"


class NoSuchBucketError(StoreError):
    reason = "NoSuchBucket"


class NoSuchKeyError(StoreError):
    reason = "NoSuchKey"


# -- the object -----------------------------------------------------------------------------------


class CorruptObjectError(BackupError):
    """A backup object does not decode to what was written: damaged or tampered with."""

    reason = "CorruptBackup"


class TruncatedObjectError(CorruptObjectError):
    """A backup object ends before its end: cut short in the store or on the way."""

    reason = "TruncatedBackup"


class NotABackupError(CorruptObjectError):
    """The object was not written by this library (no or unknown format metadata or header)."""

    reason = "NotABackup"


class WrongEncryptionKeyError(BackupError):
    """The object is encrypted with another key than the one given."""

    reason = "WrongEncryptionKey"


class EncryptionKeyRequiredError(WrongEncryptionKeyError):
    """The object is encrypted and no key was given."""

    reason = "EncryptionKeyRequired"


class InvalidEncryptionKeyError(BackupError, ValueError):
    """A configured key is not 32 bytes (raw, or base64 of 32 bytes)."""

    reason = "InvalidEncryptionKey"


class SnapshotFileError(BackupError):
    """The local snapshot file cannot be written (missing directory, disk full, permissions)."""

    reason = "SnapshotFileError"


# -- etcd -----------------------------------------------------------------------------------------


class EtcdStreamError(BackupError):
    """etcd's snapshot stream failed or ended early (member down, killed, partitioned)."""

    reason = "SnapshotStreamFailed"


class TrailerMismatchError(BackupError):
    """The snapshot's last 32 bytes are not the sha256 of the database before them."""

    reason = "SnapshotChecksumMismatch"


# -- botocore -> BackupError ----------------------------------------------------------------------

_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
_NO_KEY_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_REDIRECT_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301"})
# Servers that store objects as files (versitygw's POSIX backend) cannot hold an object "a/b"
# and an object "a/b/c": the second is refused with one of these (HTTP 409); AWS holds both.
_KEY_CONFLICT_CODES = frozenset({"ObjectParentIsFile", "ExistingObjectIsDirectory"})
# The IAM action an S3 API call needs (they differ: an UploadPart is allowed by s3:PutObject).
_IAM_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "CopyObject": "s3:GetObject and s3:PutObject",
    "UploadPartCopy": "s3:GetObject and s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}


def classify_s3_error(
    err: BaseException, *, endpoint: str, bucket: str, key: str | None, operation: str
) -> BackupError:
    """The :class:`BackupError` for a boto3/botocore exception (others: a generic StoreError).

    ``endpoint`` is how to name the server (a URL without credentials, or "AWS S3");
    ``operation`` what was being done ("upload", "download", ...).
    """
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    if isinstance(err, BackupError):
        return err
    if isinstance(
        err,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.IncompleteReadError,
    ):
        kind = type(err).__name__.removesuffix("Error")
        return StoreUnreachableError(
            f"S3 endpoint {endpoint} is unreachable during {operation} of {where} ({kind}): "
            "check the store's endpoint URL, its TLS CA bundle and that the server is up"
        )
    if isinstance(
        err,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.PartialCredentialsError
        | botocore.exceptions.CredentialRetrievalError,
    ):
        return InvalidCredentialsError(
            f"no usable S3 credentials for {operation} of {where} ({type(err).__name__}): "
            "set the store's credentials Secret (accessKeyId, secretAccessKey) or give the "
            "operator an identity in boto3's default chain"
        )
    if isinstance(err, botocore.exceptions.ClientError):
        error = err.response.get("Error", {}) if isinstance(err.response, dict) else {}
        code = str(error.get("Code") or "")
        meta = err.response.get("ResponseMetadata", {}) if isinstance(err.response, dict) else {}
        status_raw = meta.get("HTTPStatusCode")
        status = int(status_raw) if isinstance(status_raw, int) else None
        if code in _CREDENTIAL_CODES:
            return InvalidCredentialsError(
                f"S3 endpoint {endpoint} rejected the credentials ({code}) during {operation} "
                f"of {where}: check accessKeyId and secretAccessKey in the credentials Secret",
                code=code,
                status=status,
            )
        if code in _DENIED_CODES or (status == 403 and not code):
            action = _IAM_ACTIONS.get(err.operation_name or "", f"s3:{err.operation_name}")
            return AccessDeniedError(
                f"access denied ({code or 'HTTP 403'}) during {operation} of {where} at "
                f"{endpoint}: allow the credentials {action} on the bucket and prefix",
                code=code,
                status=status,
            )
        if code == "NoSuchBucket":
            return NoSuchBucketError(
                f"bucket {bucket!r} does not exist at {endpoint}: create it, or fix the "
                "store's bucket name",
                code=code,
                status=status,
            )
        if code in _NO_KEY_CODES:
            return NoSuchKeyError(
                f"backup object {where} does not exist at {endpoint}", code=code, status=status
            )
        if code in _KEY_CONFLICT_CODES:
            return StoreError(
                f"S3 endpoint {endpoint} refused {where} during {operation} ({code}): it stores "
                "objects as files, and the key collides with an existing object or key prefix; "
                "give the store a prefix of its own",
                code=code,
                status=status,
            )
        if code in _REDIRECT_CODES:
            return StoreError(
                f"S3 endpoint {endpoint} answered {code} during {operation} of {where}: the "
                "bucket is in another region or behind another endpoint; set the store's region",
                code=code,
                status=status,
            )
        detail = code or (f"HTTP {status}" if status else "unknown error")
        return StoreError(
            f"S3 {operation} of {where} at {endpoint} failed: {detail}", code=code, status=status
        )
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return StoreError(f"S3 {operation} of {where} at {endpoint} failed: {type(err).__name__}")
    return StoreError(f"{operation} of {where} at {endpoint} failed: {type(err).__name__}: {err}")
