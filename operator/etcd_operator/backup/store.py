"""Resolved settings of one S3-compatible store, and the boto3 client made from them.

The API type (``api.backup.BackupStore``) names Secrets; the callers (the operator's runtime, a
restore init container) read them and build :class:`StoreSettings` with plain values, so this
library needs no Kubernetes. Credentials are kept out of every ``repr``, message and metadata;
without credentials boto3's default chain applies (environment, web identity for an IAM role of
the service account, instance profile).

The client is configured for S3-compatible servers as well as AWS: path-style addressing when
asked for, SigV4, and checksums only where an operation requires one. Recent boto3 releases
send CRC32 checksums (and ``aws-chunked`` bodies) with every upload by default, which several
S3-compatible servers refuse; ``request_checksum_calculation="when_required"`` and
``response_checksum_validation="when_required"`` restore the behaviour those servers expect.
Our own sha256 and the encryption's tags cover integrity end to end anyway.

Tested against two independent servers (``tests/integration/test_backup_s3.py``): moto in
server mode and versitygw (an S3 gateway that stores objects as files). Where they differ from
AWS: versitygw accepts server-side encryption headers without applying them (the upload warns
when the answer does not confirm the algorithm), and refuses a key below an existing object
(``a`` and ``a/b``), which ``errors`` turns into a message naming the collision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import boto3.session
import botocore.config

from etcd_operator.api.backup import BackupStore, ServerSideEncryption

DEFAULT_REGION = "us-east-1"


class S3Client(Protocol):
    """The S3 calls the backup library makes (a boto3 S3 client; a fake in unit tests).

    boto3 clients are thread-safe; the library calls them from worker threads.
    """

    def put_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def head_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def delete_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def copy_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    def upload_part(self, **kwargs: Any) -> dict[str, Any]: ...
    def upload_part_copy(self, **kwargs: Any) -> dict[str, Any]: ...
    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, repr=False)
class Credentials:
    """Static S3 credentials, as a credentials Secret holds them. Never shown."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.secret_access_key:
            raise ValueError("S3 credentials need both an access key id and a secret access key")

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    __str__ = __repr__

    def secrets(self) -> tuple[str, ...]:
        return tuple(
            s for s in (self.access_key_id, self.secret_access_key, self.session_token) if s
        )


@dataclass(frozen=True)
class StoreSettings:
    """Everything needed to reach one bucket, with Secrets already resolved."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool = False
    credentials: Credentials | None = None
    ca_bundle: str | None = None  # path of a PEM file
    server_side_encryption: ServerSideEncryption | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3  # botocore's "standard" retry mode: connection errors, 5xx, throttling

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("a backup store needs a bucket")
        sse = self.server_side_encryption
        if sse is not None and sse.kmsKeyId and sse.algorithm != "aws:kms":
            raise ValueError("serverSideEncryption.kmsKeyId needs algorithm aws:kms")
        # A key prefix is a "directory": no leading slash, exactly one trailing slash.
        prefix = self.prefix.strip("/")
        object.__setattr__(self, "prefix", f"{prefix}/" if prefix else "")
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the S3 endpoint must be an http:// or https:// URL")
            if parts.username is not None or parts.password is not None:
                # It would show wherever the endpoint does; S3 takes credentials in headers.
                raise ValueError("the S3 endpoint URL must not hold credentials")

    @classmethod
    def from_api(
        cls,
        store: BackupStore,
        *,
        default_prefix: str,
        credentials: Credentials | None = None,
        ca_bundle: str | None = None,
    ) -> StoreSettings:
        """Settings from ``spec.backup.store`` and the values of the Secrets it names.

        ``default_prefix`` is the prefix when the store sets none (``<namespace>/<cluster>/``);
        ``credentials`` must be given when the store names a credentials Secret, ``ca_bundle``
        (a file path) when it names a CA bundle.
        """
        if store.credentialsSecret and credentials is None:
            raise ValueError(
                f"the store names credentials Secret {store.credentialsSecret!r}: "
                "resolve it and pass its values"
            )
        if store.caBundle is not None and ca_bundle is None:
            raise ValueError("the store names a CA bundle: pass the path of its PEM file")
        return cls(
            bucket=store.bucket,
            prefix=store.prefix if store.prefix is not None else default_prefix,
            endpoint=store.endpoint,
            region=store.region,
            force_path_style=store.forcePathStyle,
            credentials=credentials,
            ca_bundle=ca_bundle,
            server_side_encryption=store.serverSideEncryption,
        )

    # -- names -----------------------------------------------------------------------------------
    def key_for(self, name: str) -> str:
        """The object key of a backup called ``name`` under this store's prefix."""
        return f"{self.prefix}{name.lstrip('/')}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def display_endpoint(self) -> str:
        """The endpoint as messages show it (without a query), or "AWS S3 (region)"."""
        if self.endpoint is None:
            return f"AWS S3 ({self.region or DEFAULT_REGION})"
        parts = urlsplit(self.endpoint)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def redact(self, text: str) -> str:
        """``text`` with every credential value replaced (for text that came from elsewhere)."""
        secrets = self.credentials.secrets() if self.credentials else ()
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
        return text

    # -- S3 request arguments ------------------------------------------------------------------
    def sse_args(self) -> dict[str, str]:
        """Server-side encryption arguments for PutObject, CopyObject, CreateMultipartUpload."""
        sse = self.server_side_encryption
        if sse is None:
            return {}
        args: dict[str, str] = {"ServerSideEncryption": sse.algorithm}
        if sse.kmsKeyId:
            args["SSEKMSKeyId"] = sse.kmsKeyId
        return args


def client_config(settings: StoreSettings) -> botocore.config.Config:
    return botocore.config.Config(
        region_name=settings.region or DEFAULT_REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.force_path_style else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # Two parts in flight at most, plus the occasional HEAD or abort.
        max_pool_connections=4,
    )


def make_client(settings: StoreSettings) -> S3Client:
    """A boto3 S3 client for ``settings``; loading botocore's models takes a moment: call it
    from a worker thread in async code."""
    creds = settings.credentials
    # A session per client: boto3's default session is shared and not safe across threads.
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key_id if creds else None,
        aws_secret_access_key=creds.secret_access_key if creds else None,
        aws_session_token=creds.session_token if creds else None,
        region_name=settings.region or DEFAULT_REGION,
    )
    client: S3Client = session.client(
        "s3",
        endpoint_url=settings.endpoint,
        verify=settings.ca_bundle if settings.ca_bundle else True,
        config=client_config(settings),
    )
    return client
