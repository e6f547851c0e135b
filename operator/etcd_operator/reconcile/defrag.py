"""The defragmentation step: one member at a time, followers first, the leader last. Pure.

Triggers (``spec.maintenance.defrag``):

- a schedule slot (``backup_schedule.decide``, the backups' clock): a run over every member;
- a member whose db file is more than ``freeSpaceAbovePercent`` free pages (at least
  ``FREE_SPACE_FLOOR`` of them), or uses more than
  ``quotaUsageAbovePercent`` of the quota, or that raised the NOSPACE alarm: a run over the
  members concerned. A member defragmented by a threshold is not taken again by a threshold
  for ``THRESHOLD_COOLDOWN`` while its file has little to give back (compaction frees pages,
  not defragmentation); once a tenth of its file, and at least ``RECLAIM_FLOOR``, is free
  pages again, it is.

An EtcdDefrag request (``defrag_requests``, the step before) adds its members to the run
under way (trigger ``Request``); a cluster needs no ``spec.maintenance.defrag`` for that.

A run's members left to do are ``status.defrag.pending``. Each pass defragments at most one,
and only when no other operation owns the cluster (hibernation, recovery, replacement,
scaling, a rollout under way), there is no learner, etcd has a leader and every voter answers
its status and is caught up (``rollout.caught_up``). Health itself is not required: a member
under the NOSPACE alarm fails its health check, and that is when it needs this most. The
leader goes last, after ``MoveLeader`` to the follower with the highest applied index:
defragmentation holds the member's backend, and a leader that cannot apply stalls every write.

A member's NOSPACE alarm is disarmed (``DisarmAlarm``) once its db file is back under the
quota and it is not pending: etcd keeps refusing writes until someone does.

What a pass did goes into ``Decided.acted`` (the member and its size before); the report looks
at the world again after the defragmentation, so ``status.defrag.members`` records the size
after and the bytes reclaimed, and ``events`` posts them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from etcd_operator.api.maintenance import DEFAULT_QUOTA_BYTES, DefragSpec
from etcd_operator.api.schedule import ScheduleError, parse_schedule
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339, rfc3339
from etcd_operator.api.v1alpha1 import DefragStatus, EtcdCluster, MemberDefrag, RolloutStatus
from etcd_operator.reconcile import replacement, scaling
from etcd_operator.reconcile.actions import Action, Defragment, DisarmAlarm, Event, MoveLeader
from etcd_operator.reconcile.backup_schedule import decide as schedule_decide
from etcd_operator.reconcile.backups import created_at
from etcd_operator.reconcile.defrag_requests import REQUEST, REQUESTED
from etcd_operator.reconcile.membership import heir, member_name, ordinal
from etcd_operator.reconcile.observed import EtcdMember, EtcdView, Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult
from etcd_operator.reconcile.rollout import ROLLOUT, caught_up

# Decided.notes key: this pass's DefragStatus; Decided.acted key: the member defragmented.
DEFRAG = "defrag"
DEFRAG_DONE = "defrag-done"
NOSPACE = "NOSPACE"
THRESHOLD_COOLDOWN = timedelta(hours=1)
# Free pages worth a defragmentation: a small file is mostly free pages right after it is
# created, and rewriting it gives nothing back worth a leadership transfer.
FREE_SPACE_FLOOR = 16 * 1024**2
# Free pages that take a member again within the cooldown (see ``_reclaimable``).
RECLAIM_FLOOR = 1024**2
SCHEDULE, FREE_SPACE, QUOTA_USAGE, NO_SPACE = "Schedule", "FreeSpace", "QuotaUsage", "NoSpace"


@dataclass(frozen=True)
class Defragmented:
    """The member a pass defragmented: what the report completes with the size after."""

    member: str
    trigger: str
    before: int | None
    time: str


def quota_bytes(desired: EtcdCluster) -> int:
    return desired.spec.etcd.quotaBackendBytes or DEFAULT_QUOTA_BYTES


def no_space(etcd: EtcdView) -> set[int]:
    """The member IDs with an active NOSPACE alarm (``EtcdView.alarms``: ``NAME:idhex``)."""
    found = set()
    for alarm in etcd.alarms:
        name, _, member = alarm.partition(":")
        if name == NOSPACE and member:
            found.add(int(member, 16))
    return found


def threshold_trigger(
    spec: DefragSpec | None, member: EtcdMember, quota: int, alarmed: bool
) -> str | None:
    """Why ``member`` needs defragmenting now by its own numbers, else ``None`` (always
    ``None`` without ``spec.maintenance.defrag``: a request alone enables no threshold)."""
    if spec is None:
        return None
    if alarmed:
        return NO_SPACE
    size, in_use = member.db_size, member.db_size_in_use
    if size:
        if spec.quotaUsageAbovePercent is not None and size * 100 > (
            quota * spec.quotaUsageAbovePercent
        ):
            return QUOTA_USAGE
        if (
            spec.freeSpaceAbovePercent is not None
            and in_use is not None
            and size - in_use >= FREE_SPACE_FLOOR
            and (size - in_use) * 100 > size * spec.freeSpaceAbovePercent
        ):
            return FREE_SPACE
    return None


def _recent(previous: DefragStatus, name: str, now: datetime) -> bool:
    for done in previous.members:
        if done.member == name:
            when = parse_rfc3339(done.time)
            return when is not None and now - when < THRESHOLD_COOLDOWN
    return False


def _reclaimable(member: EtcdMember) -> bool:
    """The member's file holds free pages worth rewriting it for (a tenth of it): the cooldown
    then does not apply. A defragmentation as the keyspace fills up (a quota threshold, before
    anything is deleted) gives little back; the compaction after NOSPACE frees the pages that
    the next one must return at once, not an hour later."""
    size, in_use = member.db_size, member.db_size_in_use
    if size is None or in_use is None:
        return False
    free = size - in_use
    # The floor: a small file always has some free pages, and taking it again and again would
    # keep it pending, so that its NOSPACE alarm is never disarmed (e2e saw that loop).
    return free >= RECLAIM_FLOOR and free * 10 >= size


def _busy(desired: EtcdCluster, decided: Decided, etcd: EtcdView) -> bool:
    """Another operation owns the cluster in this pass."""
    if decided.hibernating or decided.recovering or replacement.pending(decided) is not None:
        return True
    if scaling.under_way(decided):
        return True
    rollout = decided.last_note(ROLLOUT)
    if isinstance(rollout, RolloutStatus) and rollout.completedAt is None:
        return True
    return bool(etcd.learners) or len(etcd.voters) != desired.spec.replicas


def _ready(etcd: EtcdView) -> EtcdMember | None:
    """The leader, when every voter answers its status and is caught up; else ``None``."""
    leader = etcd.leader
    if leader is None:
        return None
    for member in etcd.voters:
        if member.raft_applied_index is None or not caught_up(member, leader):
            return None
    return leader


def _order(cluster: str, names: list[str], leader: str) -> list[str]:
    """Followers first, highest ordinal first; the leader last."""
    return sorted(names, key=lambda n: (n == leader, -(ordinal(cluster, n) or 0)))


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    spec = desired.spec.maintenance.defrag
    etcd, now = observed.etcd, observed.now
    seen = decided.last_note(REQUESTED)
    requested = seen if isinstance(seen, frozenset) else frozenset()
    if spec is None and not requested:
        return StepResult(decided=decided)
    if etcd is None or now is None or not decided.has_formed:
        return StepResult(decided=decided)
    previous = (desired.status.defrag if desired.status is not None else None) or DefragStatus()
    current = previous.model_copy()
    trigger = previous.trigger
    names = {member_name(m) for m in etcd.voters}
    pending = [n for n in previous.pending if n in names]
    for name in sorted(requested & names):
        if name not in pending:
            pending.append(name)
            trigger = trigger or REQUEST
    if spec is not None and spec.schedule is not None:
        try:
            schedule = parse_schedule(spec.schedule, spec.timeZone)
        except ScheduleError:
            schedule = None  # the model refuses it; only an old object could hold one
        if schedule is not None:
            slot = schedule_decide(
                schedule,
                parse_rfc3339(previous.lastScheduledTime),
                now,
                since=created_at(desired),
            ).due
            if slot is not None:
                pending = sorted(names)
                trigger = SCHEDULE
                current = current.model_copy(update={"lastScheduledTime": rfc3339(slot)})
    alarmed = no_space(etcd)
    quota = quota_bytes(desired)
    reasons: dict[str, str] = {}
    for member in etcd.voters:
        name = member_name(member)
        why = threshold_trigger(spec, member, quota, member.id in alarmed)
        if why is None:
            continue
        reasons[name] = why
        if name not in pending and (not _recent(previous, name, now) or _reclaimable(member)):
            pending.append(name)
            trigger = trigger or why
    current = current.model_copy(
        update={"pending": sorted(pending), "trigger": trigger if pending else None}
    )
    actions: list[Action] = []
    leader = _ready(etcd)
    if pending and leader is not None and not _busy(desired, decided, etcd):
        name = _order(desired.name, pending, member_name(leader))[0]
        target = etcd.by_name(name)
        assert target is not None and target.client_urls  # a voter that answered its status
        successor = heir(etcd, leader) if target.id == leader.id else None
        if successor is not None:
            actions.append(MoveLeader(leader.id, successor.id, member_name(successor)))
        actions.append(Defragment(target.id, name, target.client_urls[0]))
        why = reasons.get(name) or (REQUEST if name in requested else trigger) or SCHEDULE
        done = Defragmented(name, why, target.db_size, rfc3339(now))
        left = [n for n in pending if n != name]
        current = current.model_copy(
            update={"pending": sorted(left), "trigger": trigger if left else None}
        )
        decided = dataclasses.replace(decided, acted=(*decided.acted, (DEFRAG_DONE, done)))
    for member in etcd.voters:
        if (
            member.id in alarmed
            and member_name(member) not in current.pending
            and not any(isinstance(a, Defragment) for a in actions)
            and member.db_size is not None
            and member.db_size < quota
        ):
            actions.append(DisarmAlarm(member.id, member_name(member), NOSPACE))
            actions.append(
                Event(
                    "Normal",
                    "AlarmDisarmed",
                    f"disarmed NOSPACE of member {member_name(member)}: its db file "
                    f"({member.db_size} bytes) is back under the quota ({quota} bytes)",
                )
            )
    decided = dataclasses.replace(decided, notes=(*decided.notes, (DEFRAG, current)))
    return StepResult(actions=tuple(actions), decided=decided)


def defrag_status(
    desired: EtcdCluster, observed: Observed, decided: Decided
) -> DefragStatus | None:
    """``status.defrag`` for this pass: the step's view, with the member a pass defragmented
    recorded with its size now (``None``: no defragmentation configured, keep the status)."""
    seen = decided.last_note(DEFRAG)
    status = seen if isinstance(seen, DefragStatus) else None
    done = decided.acted_on(DEFRAG_DONE)
    if not isinstance(done, Defragmented):
        return status
    base = status or (desired.status.defrag if desired.status else None) or DefragStatus()
    member = observed.etcd.by_name(done.member) if observed.etcd is not None else None
    after = member.db_size if member is not None else None
    record = MemberDefrag(
        member=done.member,
        time=done.time,
        trigger=done.trigger,
        dbSizeBefore=done.before,
        dbSizeAfter=after,
        reclaimed=done.before - after if done.before is not None and after is not None else None,
    )
    others = [m for m in base.members if m.member != done.member]
    return base.model_copy(
        update={
            "members": sorted([*others, record], key=lambda m: m.member),
            "pending": [n for n in base.pending if n != done.member],
        }
    )
