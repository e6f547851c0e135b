"""The backup API: where backups go, how they are written, when they are taken, how long kept.

These models are the types of ``EtcdCluster.spec.backup`` and the parts of the ``EtcdBackup``
kind (``api.etcdbackup``: one object per backup, an operation in the sense of ``api.operation``)
that say where a backup goes.

Names follow the issue's API: a store is an S3-compatible bucket (any endpoint, path-style
addressing for servers that need it, credentials from a Secret or boto3's default chain); a
backup object is etcd's snapshot as ``Maintenance.Snapshot`` streamed it, optionally compressed
(gzip, zstd) and then encrypted client-side (AES-256-GCM in chunks) with a key from a Secret.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from etcd_operator.api.schedule import TIME_ZONE_PATTERN, parse_schedule

# S3 bucket names: 3 to 63 lower-case letters, digits, dots and hyphens (AWS's rules; other
# servers accept a superset).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# An endpoint is a URL: scheme and host, optionally a port and a path.
ENDPOINT_PATTERN = r"^https?://[^\s/]+(/[^\s]*)?$"
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


class SecretKeyRef(_Model):
    """One key of a Secret in the cluster's namespace."""

    name: str = Field(pattern=SECRET_NAME_PATTERN, max_length=253, description="Secret name.")
    key: str = Field(pattern=SECRET_KEY_PATTERN, max_length=253, description="Key in it.")


class ServerSideEncryption(_Model):
    """Encryption at rest by the S3 server, passed through with every upload."""

    algorithm: Literal["AES256", "aws:kms"] = Field(
        description="S3's x-amz-server-side-encryption: AES256 or aws:kms."
    )
    kmsKeyId: str | None = Field(
        default=None, max_length=2048, description="The KMS key, with aws:kms."
    )


class BackupStore(_Model):
    """An S3-compatible bucket."""

    bucket: str = Field(pattern=BUCKET_PATTERN, description="The bucket; it must exist.")
    prefix: str | None = Field(
        default=None,
        max_length=512,
        description="Key prefix of this cluster's backups; <namespace>/<cluster>/ when unset.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=ENDPOINT_PATTERN,
        max_length=1024,
        description="The S3 endpoint URL of a non-AWS server; AWS when unset.",
    )
    region: str | None = Field(
        default=None, max_length=64, description="The bucket's region (us-east-1 when unset)."
    )
    forcePathStyle: bool = Field(
        default=False,
        description="Path-style addressing (endpoint/bucket/key), as most non-AWS servers need.",
    )
    credentialsSecret: str | None = Field(
        default=None,
        pattern=SECRET_NAME_PATTERN,
        max_length=253,
        description="A Secret with accessKeyId, secretAccessKey and optionally sessionToken; "
        "when unset, boto3's default chain (e.g. an IAM role for the service account).",
    )
    caBundle: SecretKeyRef | None = Field(
        default=None, description="PEM CA certificates to verify the endpoint's TLS with."
    )
    serverSideEncryption: ServerSideEncryption | None = Field(
        default=None, description="Encryption at rest by the S3 server."
    )


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class Encryption(_Model):
    """Client-side authenticated encryption of backups (AES-256-GCM, in chunks)."""

    keySecret: SecretKeyRef = Field(
        description="A Secret key holding 32 random bytes (raw, or base64 of them)."
    )


class DeletionPolicy(StrEnum):
    """What deleting an EtcdBackup object does to the backup in the store."""

    RETAIN = "Retain"
    DELETE = "Delete"


# The shape of a schedule, which the API server can check: a macro or five fields. The fields
# themselves (ranges, names, steps) are checked by the operator's cron library, which refuses
# the cluster with its message (Degraded, reason ReconcileFailed) when they are wrong.
SCHEDULE_PATTERN = r"^(@[a-z]+|[^\s]+(\s+[^\s]+){4})$"


def schedule_field(description: str) -> Any:
    """An optional cron schedule, as every scheduled operation takes it."""
    return Field(default=None, max_length=128, pattern=SCHEDULE_PATTERN, description=description)


def time_zone_field() -> Any:
    """The time zone of a ``schedule_field``."""
    return Field(
        default=None,
        max_length=64,
        pattern=TIME_ZONE_PATTERN.pattern,
        description="The schedule's time zone (IANA); UTC if unset.",
    )


# A Go-style duration of whole units, as maxAge takes it: "168h", "30m", "7d" is not Go's.
AGE_PATTERN = r"^([0-9]+(h|m|s))+$"
_AGE = re.compile(AGE_PATTERN)
_AGE_PART = re.compile(r"([0-9]+)(h|m|s)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_age(value: str) -> timedelta:
    """A duration of ``AGE_PATTERN`` ("168h", "1h30m", "90s") as a timedelta."""
    if not _AGE.match(value):
        raise ValueError(f"invalid age {value!r}: use whole hours, minutes, seconds (168h, 90m)")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _AGE_PART.findall(value))
    return timedelta(seconds=seconds)


class Retention(_Model):
    """Which successful backups to keep; the newest successful one is never deleted."""

    keepLast: int | None = Field(
        default=None, ge=1, le=10000, description="Keep at most this many successful backups."
    )
    maxAge: str | None = Field(
        default=None,
        pattern=AGE_PATTERN,
        max_length=32,
        description="Delete successful backups older than this (a duration: 168h, 90m).",
    )


class BackupVerification(_Model):
    """Restore backups into a scratch directory after they are taken, and check them."""

    everyNth: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Verify every Nth successful backup of the cluster (1: every one).",
    )


# What segmentInterval may be: a recovery point of a second to ten minutes.
MIN_SEGMENT_SECONDS = 1
MAX_SEGMENT_SECONDS = 600


class ContinuousBackup(_Model):
    """Record every write after the newest full backup, for restores to a revision or a time."""

    segmentInterval: str = Field(
        default="10s",
        pattern=AGE_PATTERN,
        max_length=16,
        description="Upload interval (1s-10m): the recovery point.",
    )

    @model_validator(mode="after")
    def _interval_in_range(self) -> ContinuousBackup:
        seconds = self.interval_seconds
        if not MIN_SEGMENT_SECONDS <= seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(
                f"continuous.segmentInterval must be within {MIN_SEGMENT_SECONDS}s and "
                f"{MAX_SEGMENT_SECONDS // 60}m, not {self.segmentInterval}"
            )
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_age(self.segmentInterval).total_seconds()


class BackupSpec(_Model):
    """``EtcdCluster.spec.backup``: where, when, how, and for how long."""

    store: BackupStore = Field(description="The S3-compatible bucket backups go to.")
    schedule: str | None = schedule_field(
        "A cron expression (5 fields, or @hourly, @daily, ...); none when unset "
        "(backups then only on the annotation or an EtcdBackup object)."
    )
    timeZone: str | None = time_zone_field()
    suspend: bool = Field(default=False, description="Take no scheduled backups meanwhile.")
    retention: Retention | None = Field(default=None, description="Which backups to keep.")
    compression: Compression = Field(default=Compression.ZSTD, description="none, gzip or zstd.")
    encryption: Encryption | None = Field(
        default=None, description="Client-side encryption; the objects are readable without it."
    )
    continuous: ContinuousBackup | None = Field(
        default=None,
        description="Record every write after the newest successful backup in the store, "
        "for restores to a revision or time.",
    )
    verify: BackupVerification | None = Field(
        default=None,
        description="Download each (or every Nth) backup after it is taken, restore it into a "
        "scratch directory and check its structure and hash; the result is the EtcdBackup's "
        "status.verified. Needs scratch space the size of the database in the operator's pod.",
    )

    @model_validator(mode="after")
    def _schedule_parses(self) -> BackupSpec:
        if self.schedule is not None:
            parse_schedule(self.schedule, self.timeZone)  # ScheduleError is a ValueError
        return self


# s3://bucket/key, the bucket as BUCKET_PATTERN.
LOCATION_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
# What etcd's and Kubernetes' documentation pass to `etcdutl snapshot restore --bump-revision`:
# more writes than any cluster makes between its last backup and its loss.
DEFAULT_BUMP_REVISION = 1_000_000_000


RESTORE_ONE_SOURCE = "bootstrap.backup needs name, location, or pointInTime alone"
POINT_IN_TIME_ONE = "pointInTime needs exactly one of revision and time"
# RFC 3339 with a zone: a time without one would mean the operator's zone, not the user's.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)


class PointInTime(_Model):
    """A point after the backup to restore to, replayed from its continuous backup."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.revision) != has(self.time)", "message": POINT_IN_TIME_ONE}
            ]
        }
    )

    revision: int | None = Field(
        default=None, ge=1, le=1 << 62, description="A revision of the source."
    )
    time: str | None = Field(
        default=None,
        max_length=40,
        pattern=TIME_PATTERN,
        description="RFC 3339: the revision recorded by then.",
    )

    @model_validator(mode="after")
    def _one(self) -> PointInTime:
        if (self.revision is None) == (self.time is None):
            raise ValueError(POINT_IN_TIME_ONE)
        if self.time is not None:
            try:
                datetime.fromisoformat(self.time)
            except ValueError:
                raise ValueError(f"pointInTime.time is no RFC 3339 time: {self.time}") from None
        return self

    def __str__(self) -> str:
        return f"revision {self.revision}" if self.revision is not None else str(self.time)


RESTORE_LOCATION_STORE = "bootstrap.backup.location needs store (where the object is)"


class RestoreSource(_Model):
    """The backup a new cluster starts from: an EtcdBackup by name, an object by location, or
    with pointInTime alone the newest Succeeded backup of this cluster's name before it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.name) ? !has(self.location) : "
                    "has(self.location) || has(self.pointInTime)",
                    "message": RESTORE_ONE_SOURCE,
                },
                {
                    "rule": "!has(self.location) || has(self.store)",
                    "message": RESTORE_LOCATION_STORE,
                },
            ]
        }
    )

    name: str | None = Field(
        default=None,
        max_length=253,
        pattern=SECRET_NAME_PATTERN,
        description="A Succeeded EtcdBackup in the cluster's namespace.",
    )
    location: str | None = Field(
        default=None,
        max_length=1100,
        pattern=LOCATION_PATTERN,
        description="s3://bucket/key of a backup object, with store (a backup of another "
        "Kubernetes cluster, say).",
    )
    store: BackupStore | None = Field(
        default=None, description="Where location is: its bucket, endpoint and credentials."
    )
    encryptionKeySecret: SecretKeyRef | None = Field(
        default=None,
        description="The key of an encrypted backup; spec.backup.encryption's key if unset.",
    )
    pointInTime: PointInTime | None = Field(
        default=None, description="Replay its continuous backup up to here."
    )
    bumpRevision: int = Field(
        default=DEFAULT_BUMP_REVISION,
        ge=0,
        le=1 << 62,
        description="Add this to every revision of the restored data, so that clients that "
        "cached revisions (kube-apiserver's watch cache) never see one go backwards (etcdutl "
        "snapshot restore --bump-revision); 0 turns it off.",
    )
    markCompacted: bool = Field(
        default=True,
        description="Mark the restored revisions compacted, so that watches from before the "
        "restore end with a compaction error and clients list again (--mark-compacted).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RestoreSource:
        named = self.name is not None
        if named == (self.location is not None) and (named or self.pointInTime is None):
            raise ValueError(RESTORE_ONE_SOURCE)
        if self.location is not None and self.store is None:
            raise ValueError(RESTORE_LOCATION_STORE)
        return self


class BootstrapSpec(_Model):
    """Where a new cluster's data comes from (empty when unset)."""

    backup: RestoreSource = Field(description="Restore this backup into every founding member.")
