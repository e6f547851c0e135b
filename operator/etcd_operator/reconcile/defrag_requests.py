"""On-demand defragmentation (EtcdDefrag objects): each request's phase, from what the cluster
did. Pure; the step runs before ``defrag``, which carries the requests out.

A Pending request starts (Running) once the cluster has formed and etcd answers: its members
(every voter when it names none) go to the defragmentation step as this pass's requested
members, which joins them to the run under way. It is Rejected when the cluster is hibernated or
it names a member the cluster does not have.

A Running request's members are done when the cluster's ``status.defrag.members`` records a
defragmentation of them at or after the request started: the record the report writes with the
sizes after, so the request's status carries the same numbers. It succeeds when none is left;
a member removed from the cluster meanwhile drops out. It fails (``DeadlineExceeded``) when it
has not ended ``activeDeadlineSeconds`` after it was created: the cluster was never healthy
enough to take a member out (a leader, every voter caught up, no other operation under way).

Each change of a request's status is one ``PatchOperationStatus``; an ending posts an event on
the cluster. Requests whose cluster does not exist, and the deletion of ended requests after
their ``ttlSecondsAfterFinished``, are ``runtime.defrags``' (no cluster pass sees them).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from etcd_operator.api.etcddefrag import KIND, EtcdDefrag, EtcdDefragStatus
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.api.v1alpha1 import EtcdCluster, MemberDefrag
from etcd_operator.reconcile.actions import (
    Action,
    Event,
    PatchOperationStatus,
)
from etcd_operator.reconcile.membership import member_name
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.operations import advance, ended
from etcd_operator.reconcile.pipeline import Decided, StepResult

# Decided.notes key: the member names that running requests still want defragmented.
REQUESTED = "defrag-requested"
REQUEST = "Request"
DEADLINE_EXCEEDED = "DeadlineExceeded"
WAITING = (
    "the cluster was not healthy enough to take a member out: it needs a leader, every "
    "voter answering and caught up, and no other operation (rollout, scaling, replacement, "
    "recovery) under way"
)


def _created(request: EtcdDefrag) -> datetime | None:
    return parse_rfc3339(request.metadata.get("creationTimestamp"))


def _past_deadline(request: EtcdDefrag, now: datetime) -> bool:
    created = _created(request)
    deadline = timedelta(seconds=request.spec.activeDeadlineSeconds)
    return created is not None and now - created > deadline


def _done_since(
    records: list[MemberDefrag], names: list[str], started: datetime | None
) -> list[MemberDefrag]:
    """The cluster's records of ``names`` defragmented at or after ``started``."""
    if started is None:
        return []
    found = []
    for record in records:
        when = parse_rfc3339(record.time)
        if record.member in names and when is not None and when >= started:
            found.append(record)
    return found


def _summary(done: list[MemberDefrag]) -> tuple[int | None, str]:
    reclaimed = [r.reclaimed for r in done if r.reclaimed is not None]
    total = sum(reclaimed) if reclaimed else None
    names = ", ".join(r.member for r in done) or "no member"
    return total, f"defragmented {names}" + (
        f": {total} bytes reclaimed" if total is not None else ""
    )


def next_status(
    request: EtcdDefrag,
    voters: list[str] | None,
    records: list[MemberDefrag],
    decided: Decided,
    now: datetime,
) -> EtcdDefragStatus:
    """The request's status after this pass; ``voters`` is ``None`` while etcd does not answer."""
    status = request.status or EtcdDefragStatus()
    phase = OperationPhase(status.phase)
    cluster = request.spec.clusterName
    if phase == OperationPhase.PENDING:
        if decided.hibernating:
            return ended(
                status,
                OperationPhase.REJECTED,
                now,
                reason="Hibernated",
                message=f"cluster {cluster} is hibernated (replicas 0): no member runs",
            )
        if voters is None or not decided.has_formed:
            if _past_deadline(request, now):
                return ended(
                    status,
                    OperationPhase.FAILED,
                    now,
                    reason=DEADLINE_EXCEEDED,
                    message=f"no member of cluster {cluster} answered before the deadline "
                    f"({request.spec.activeDeadlineSeconds} s)",
                )
            return advance(
                status,
                OperationPhase.PENDING,
                now,
                reason="Waiting",
                message=f"waiting for the members of cluster {cluster} to answer",
            )
        wanted = sorted(request.spec.members or voters)
        unknown = [n for n in wanted if n not in voters]
        if unknown:
            return ended(
                status,
                OperationPhase.REJECTED,
                now,
                reason="UnknownMember",
                message=f"not members of cluster {cluster}: {', '.join(unknown)} "
                f"(its members: {', '.join(sorted(voters))})",
            )
        started = advance(
            status,
            OperationPhase.RUNNING,
            now,
            reason="Started",
            message=f"defragmenting {len(wanted)} member(s) one at a time, the leader last",
        )
        return started.model_copy(update={"pending": wanted})
    # Running.
    asked = sorted({*status.pending, *(m.member for m in status.members)})
    done = _done_since(records, asked, parse_rfc3339(status.startedAt))
    done_names = {r.member for r in done}
    pending = [n for n in status.pending if n not in done_names and (voters is None or n in voters)]
    total, summary = _summary(done)
    progress = status.model_copy(
        update={
            "pending": pending,
            "members": sorted(done, key=lambda r: r.member),
            "reclaimedBytes": total,
        }
    )
    if not pending:
        return ended(
            progress, OperationPhase.SUCCEEDED, now, reason="Defragmented", message=summary
        )
    if _past_deadline(request, now):
        return ended(
            progress,
            OperationPhase.FAILED,
            now,
            reason=DEADLINE_EXCEEDED,
            message=f"{summary}; {', '.join(pending)} not within "
            f"{request.spec.activeDeadlineSeconds} s: {WAITING}",
        )
    return advance(
        progress,
        OperationPhase.RUNNING,
        now,
        message=f"{len(done)} of {len(done) + len(pending)} member(s) defragmented; "
        f"next: {', '.join(pending)}",
    )


def _event(request: EtcdDefrag, status: EtcdDefragStatus) -> Event:
    phase = OperationPhase(status.phase)
    reason = {
        OperationPhase.SUCCEEDED: "DefragSucceeded",
        OperationPhase.REJECTED: "DefragRejected",
    }.get(phase, "DefragFailed")
    text = f"EtcdDefrag {request.name}: {status.message}"
    if phase == OperationPhase.SUCCEEDED:
        return Event("Normal", reason, text)
    return Event("Warning", reason, text)


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    now = observed.now
    if now is None or not observed.defrag_requests:
        return StepResult(decided=decided)
    etcd = observed.etcd
    voters = sorted(member_name(m) for m in etcd.voters) if etcd is not None else None
    previous = desired.status.defrag if desired.status is not None else None
    records = previous.members if previous is not None else []
    actions: list[Action] = []
    requested: set[str] = set()
    for request in sorted(observed.defrag_requests, key=lambda r: (_created(r) or now, r.name)):
        status = request.status or EtcdDefragStatus()
        if OperationPhase(status.phase).terminal:
            continue
        after = next_status(request, voters, records, decided, now)
        if after != status:
            patch = after.model_dump(mode="json", exclude_none=True)
            actions.append(PatchOperationStatus(KIND, request.name, desired.namespace, patch))
            if OperationPhase(after.phase).terminal:
                actions.append(_event(request, after))
        if OperationPhase(after.phase) == OperationPhase.RUNNING:
            requested.update(after.pending)
    notes = (*decided.notes, (REQUESTED, frozenset(requested)))
    return StepResult(actions=tuple(actions), decided=dataclasses.replace(decided, notes=notes))
