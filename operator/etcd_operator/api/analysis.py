"""The keyspace analysis API: ``EtcdCluster.spec.analysis`` and ``status.keyspace``.

With ``spec.analysis``, the operator reads the newest successful backup of the cluster offline
with ``pyetcdutl analyze`` (on its schedule, or when the annotation ``etcd.pyetcd.io/analyze``
gets a new value), stores the full report next to the backup in the same bucket, and records a
short summary in ``status.keyspace``: what fills the key space (by prefix), the biggest and the
hottest key, leases that hold no key. It reads a backup, never a member: the cluster serves no
extra load. Hence ``spec.backup`` is required (``ANALYSIS_NEEDS_BACKUP``).

``status.keyspace`` is also the record of the analyses as one-off runs (``KeyspaceAnalysisRun``:
``Running`` then ``Succeeded`` or ``Failed``, never backwards), and what the triggers acted on,
which makes them exactly-once, as ``status.backup`` does for backups. The summary stays from the
last success while later runs fail.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from etcd_operator.api.backup import schedule_field, time_zone_field
from etcd_operator.api.schedule import parse_schedule

# Any value not acted on before asks for one analysis (status.keyspace.lastRequest).
ANALYZE_ANNOTATION = "etcd.pyetcd.io/analyze"

# On the spec: analysis reads backups, so a cluster without them has nothing to analyse.
ANALYSIS_NEEDS_BACKUP = (
    "!has(self.analysis) || has(self.backup)",
    "analysis needs backup: the keyspace is analysed from the newest successful backup; set "
    "spec.backup (a store), or remove spec.analysis",
    ".analysis",
)

MAX_TOP = 50
# What status.keyspace lists of the report's prefixes.
STATUS_PREFIXES = 5


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


class WritesSpec(_Model):
    """A watch on the whole key space for a window, every interval: writes by prefix."""

    windowSeconds: int = Field(default=30, ge=5, le=300, description="How long each watch runs.")
    intervalSeconds: int = Field(
        default=600, ge=60, le=86400, description="From one window's start to the next."
    )


class AnalysisSpec(_Model):
    """When and how the newest backup is analysed."""

    schedule: str | None = schedule_field(
        f"A cron expression (5 fields, or @daily, ...); unset: on {ANALYZE_ANNOTATION} only."
    )
    timeZone: str | None = time_zone_field()
    separator: str = Field(
        default="/",
        min_length=1,
        max_length=16,
        pattern=r"^[^\x00]*$",
        description="The separator that delimits key prefixes.",
    )
    depth: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Prefixes end at this separator (2: /registry/pods/).",
    )
    top: int = Field(
        default=10,
        ge=1,
        le=MAX_TOP,
        description="Entries in each list of the report.",
    )

    writes: WritesSpec | None = Field(
        default=None,
        description="Also sample the live cluster's writes by prefix (status.keyspace.writes).",
    )

    @model_validator(mode="after")
    def _schedule_parses(self) -> AnalysisSpec:
        if self.schedule is not None:
            parse_schedule(self.schedule, self.timeZone)  # ScheduleError is a ValueError
        return self


class KeyspaceAnalysisPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self is not KeyspaceAnalysisPhase.RUNNING


class AnalysisTrigger(StrEnum):
    SCHEDULE = "Schedule"
    ANNOTATION = "Annotation"
    RETRY = "Retry"


class KeyspaceAnalysisRun(_Model):
    phase: KeyspaceAnalysisPhase
    trigger: AnalysisTrigger
    attempt: int = Field(default=1, description="Retries count up.")
    backup: str | None = None
    startedAt: str
    completedAt: str | None = None
    reason: str | None = None
    message: str | None = None


# One key prefix and what its keys take (docstrings of status types would be CRD descriptions:
# the CRD's size is bounded, and the field descriptions say it).
class KeyspacePrefix(_Model):
    prefix: str = Field(description="UTF-8; other bytes as \\xNN.")
    liveKeys: int
    liveBytes: int = Field(description="Keys and values.")
    storedBytes: int = Field(description="Every stored revision.")


class BiggestKey(_Model):
    key: str
    valueSize: int


class HottestKey(_Model):
    key: str
    revisions: int = Field(description="Stored revisions (history not compacted yet).")


class PrefixWrites(_Model):
    prefix: str
    writes: int


class KeyWrites(_Model):
    key: str
    writes: int


class WritesStatus(_Model):
    sampledAt: str = Field(description="When the window began (RFC 3339).")
    windowSeconds: int
    fromRevision: int
    toRevision: int
    writes: int = Field(description="Puts and deletes seen.")
    prefixes: list[PrefixWrites] | None = Field(
        default=None,
        max_length=STATUS_PREFIXES,
        description=f"The top {STATUS_PREFIXES} by writes (lower bounds).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    hottestKey: KeyWrites | None = None


class KeyspaceStatus(_Model):
    """The last successful analysis, the last run, and what the triggers acted on."""

    backup: str | None = Field(default=None, description="The EtcdBackup analysed.")
    revision: int | None = Field(default=None, description="Its revision.")
    analyzedAt: str | None = Field(default=None, description="When (RFC 3339).")
    liveKeys: int | None = Field(default=None, description="Live keys.")
    liveBytes: int | None = Field(default=None, description="Their key and value bytes.")
    dbSize: int | None = Field(default=None, description="The db file's bytes.")
    dbSizeInUse: int | None = Field(default=None, description="Its bytes in use.")
    prefixes: list[KeyspacePrefix] | None = Field(
        default=None,
        max_length=STATUS_PREFIXES,
        description=f"The top {STATUS_PREFIXES} by stored bytes.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    leasesWithoutKeys: int | None = Field(default=None, description="Leases holding no key.")
    biggestKey: BiggestKey | None = Field(default=None, description="The biggest value.")
    hottestKey: HottestKey | None = Field(default=None, description="The most revisions.")
    report: str | None = Field(default=None, description="s3://bucket/key of the full report.")
    lastRun: KeyspaceAnalysisRun | None = Field(default=None, description="The latest run.")
    lastScheduledTime: str | None = Field(default=None, description="The last slot acted on.")
    nextScheduledTime: str | None = Field(default=None, description="The next slot.")
    lastRequest: str | None = Field(default=None, description="The annotation acted on.")
    writes: WritesStatus | None = Field(default=None, description="The last write sample.")
