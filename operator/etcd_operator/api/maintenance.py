"""``EtcdCluster.spec.maintenance``: online defragmentation, by schedule and by thresholds.

etcd never shrinks its backend file by itself: compaction frees pages inside it, and only a
defragmentation rewrites the file without them. A member's db file therefore grows to its
high-water mark and stays there, counting against the quota (``--quota-backend-bytes``) until
the NOSPACE alarm stops every write. The operator defragments one member at a time (see
``reconcile/defrag.py``) when a schedule slot comes, or when a member's file is mostly free
pages or close to the quota.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from etcd_operator.api.backup import schedule_field, time_zone_field
from etcd_operator.api.schedule import parse_schedule

# etcd's own default quota when --quota-backend-bytes is unset or 0.
DEFAULT_QUOTA_BYTES = 2 * 1024**3


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


NOTHING_TO_GO_BY = "defrag needs a schedule, freeSpaceAbovePercent or quotaUsageAbovePercent"


class DefragSpec(_Model):
    """When members are defragmented: a schedule, thresholds, or both (at least one)."""

    # The same rule for the API server, so that an empty defrag is refused when applied.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.schedule) || has(self.freeSpaceAbovePercent)"
                    " || has(self.quotaUsageAbovePercent)",
                    "message": NOTHING_TO_GO_BY,
                }
            ]
        }
    )

    schedule: str | None = schedule_field(
        "A cron expression (5 fields, or @daily, @weekly, ...): every member, one at a time, "
        "at each slot."
    )
    timeZone: str | None = time_zone_field()
    freeSpaceAbovePercent: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="Defragment a member whose db file is more than this share free pages "
        "(dbSize - dbSizeInUse).",
    )
    quotaUsageAbovePercent: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Defragment a member whose db file uses more than this share of the quota "
        "(spec.etcd.quotaBackendBytes, etcd's 2 GiB when unset).",
    )

    @model_validator(mode="after")
    def _something_to_go_by(self) -> DefragSpec:
        if (
            self.schedule is None
            and self.freeSpaceAbovePercent is None
            and self.quotaUsageAbovePercent is None
        ):
            raise ValueError(NOTHING_TO_GO_BY)
        if self.schedule is not None:
            parse_schedule(self.schedule, self.timeZone)  # ScheduleError is a ValueError
        return self


class MaintenanceSpec(_Model):
    """Upkeep the operator does by itself."""

    defrag: DefragSpec | None = Field(
        default=None,
        description="Online defragmentation, one member at a time (the leader last), while "
        "every member is healthy or held by NOSPACE alone, which is then disarmed. None when "
        "unset.",
    )
