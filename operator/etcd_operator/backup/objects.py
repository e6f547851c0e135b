"""Small objects beside a backup (keyspace reports, continuous-backup segments): one PutObject
each, with the store's server-side encryption, and S3's errors said as a backup's are."""

from __future__ import annotations

import asyncio

from etcd_operator.backup.errors import BackupError, classify_s3_error
from etcd_operator.backup.store import S3Client, StoreSettings


def store_error(
    err: Exception, store: StoreSettings, key: str | None, operation: str
) -> BackupError:
    """``err`` from S3 as the BackupError that says what failed where (no credentials)."""
    return classify_s3_error(
        err, endpoint=store.display_endpoint, bucket=store.bucket, key=key, operation=operation
    )


async def put_small_object(
    s3: S3Client,
    store: StoreSettings,
    key: str,
    body: bytes,
    *,
    content_type: str,
    metadata: dict[str, str],
    operation: str,
) -> None:
    """Write ``body`` under ``key`` in one PutObject; raises a BackupError."""
    try:
        await asyncio.to_thread(
            s3.put_object,
            Bucket=store.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            Metadata=metadata,
            **store.sse_args(),
        )
    except Exception as err:
        raise store_error(err, store, key, operation) from None
