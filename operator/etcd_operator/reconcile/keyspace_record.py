"""The record of keyspace analyses in ``status.keyspace``: each run's moves, and the summary of a
success. Pure.

A run is a one-off operation in miniature: ``Running``, then ``Succeeded`` or ``Failed``, never
backwards (``ended`` leaves an ended run alone). ``started`` records what the run acts on (the
annotation's value, the schedule's slot) in the same write, which is what makes every trigger
exactly-once; a run refused before it got anywhere (no successful backup yet, no room in the
temporary directory) starts and ends in one write. A success replaces the summary; a failure
keeps the summary of the last success and says why in the run (``reason``, ``message``). A
run the operator's restart cut short ends ``Failed`` (``Interrupted``) and is retried like any
failure.
"""

from __future__ import annotations

from datetime import datetime

from etcd_operator.api.analysis import (
    KeyspaceAnalysisPhase,
    KeyspaceAnalysisRun,
    KeyspaceStatus,
)
from etcd_operator.api.times import rfc3339
from etcd_operator.reconcile.keyspace_report import Summary
from etcd_operator.reconcile.keyspace_requests import AnalysisRequest

# Reasons of a run's end (a CamelCase word each; the backup library adds its own on failures of
# the download or the report's upload: NoSuchKey, AccessDenied, CorruptBackup, ...).
ANALYZED = "Analyzed"
INTERRUPTED = "Interrupted"
NO_BACKUP = "NoSuccessfulBackup"
NO_SPACE = "InsufficientSpace"
TEMP_DIR_UNUSABLE = "TempDirUnusable"
SECRET_NOT_USABLE = "SecretNotUsable"
TOOL_MISSING = "AnalyzerNotFound"
TOOL_FAILED = "AnalyzerFailed"
TOOL_TIMEOUT = "AnalyzerTimedOut"
INVALID_REPORT = "InvalidReport"
BACKUP_GONE = "BackupDeleted"


def running(status: KeyspaceStatus | None) -> bool:
    """A run is under way (or was, when the operator that ran it stopped)."""
    run = status.lastRun if status is not None else None
    return run is not None and run.phase == KeyspaceAnalysisPhase.RUNNING


def started(
    status: KeyspaceStatus | None, request: AnalysisRequest, backup: str | None, now: datetime
) -> KeyspaceStatus:
    """A new run of ``request`` on ``backup``, with what it acts on recorded."""
    status = status or KeyspaceStatus()
    update: dict[str, object] = {
        "lastRun": KeyspaceAnalysisRun(
            phase=KeyspaceAnalysisPhase.RUNNING,
            trigger=request.trigger,
            attempt=request.attempt,
            backup=backup,
            startedAt=rfc3339(now),
        )
    }
    if request.value is not None:
        update["lastRequest"] = request.value
    if request.slot is not None:
        update["lastScheduledTime"] = rfc3339(request.slot)
    return status.model_copy(update=update)


def ended(
    status: KeyspaceStatus,
    phase: KeyspaceAnalysisPhase,
    reason: str,
    message: str,
    now: datetime,
) -> KeyspaceStatus:
    """The running run moved to the terminal ``phase``; an ended run stays as it ended."""
    run = status.lastRun
    if run is None or KeyspaceAnalysisPhase(run.phase).terminal:
        return status
    if not phase.terminal:
        raise ValueError(f"a run ends Succeeded or Failed, not {phase}")
    done = run.model_copy(
        update={"phase": phase, "completedAt": rfc3339(now), "reason": reason, "message": message}
    )
    return status.model_copy(update={"lastRun": done})


def failed(status: KeyspaceStatus, reason: str, message: str, now: datetime) -> KeyspaceStatus:
    return ended(status, KeyspaceAnalysisPhase.FAILED, reason, message, now)


def interrupted(status: KeyspaceStatus, now: datetime) -> KeyspaceStatus:
    return failed(
        status,
        INTERRUPTED,
        "the operator restarted while the analysis ran; it is retried",
        now,
    )


def succeeded(
    status: KeyspaceStatus, summary: Summary, report: str, now: datetime
) -> KeyspaceStatus:
    """The running run succeeded: its summary replaces the last one."""
    run = status.lastRun
    if run is None or KeyspaceAnalysisPhase(run.phase).terminal:
        return status
    message = (
        f"revision {summary.revision}: {summary.live_keys} live keys, {summary.live_bytes} "
        f"bytes; report {report}"
    )
    done = ended(status, KeyspaceAnalysisPhase.SUCCEEDED, ANALYZED, message, now)
    return done.model_copy(
        update={
            "backup": run.backup,
            "revision": summary.revision,
            "analyzedAt": rfc3339(now),
            "liveKeys": summary.live_keys,
            "liveBytes": summary.live_bytes,
            "dbSize": summary.db_size,
            "dbSizeInUse": summary.db_size_in_use,
            "prefixes": list(summary.prefixes),
            "leasesWithoutKeys": summary.leases_without_keys,
            "biggestKey": summary.biggest_key,
            "hottestKey": summary.hottest_key,
            "report": report,
        }
    )
