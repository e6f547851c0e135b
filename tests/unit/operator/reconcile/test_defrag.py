"""Defragmentation as a converging world: what triggers it (thresholds, the NOSPACE alarm, a
schedule slot), the order (followers first, the leader last after a leadership transfer), one
member per pass, the gates, the cooldown, the NOSPACE disarm, and what the status and events
record."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from etcd_operator.api.maintenance import DefragSpec
from etcd_operator.reconcile.actions import Defragment, DisarmAlarm, MoveLeader
from etcd_operator.reconcile.observed import EtcdMember, Observed
from etcd_operator.reconcile.plan import Action, plan, plan_steps, report
from pydantic import ValidationError

from tests.unit.operator.reconcile.builders import (
    NAME,
    SETTINGS,
    at,
    condition,
    events,
    execute,
    formed,
    status_of,
    view,
)

MiB = 1024**2
QUOTA = 1024 * MiB


def cluster_with(defrag: dict[str, Any], **spec: Any) -> tuple[Any, Observed]:
    desired, observed = formed(
        maintenance={"defrag": defrag}, etcd={"quotaBackendBytes": QUOTA}, **spec
    )
    return desired, observed


def sized(observed: Observed, size: int, in_use: int, alarms: tuple[str, ...] = ()) -> Observed:
    assert observed.etcd is not None
    members = tuple(
        dataclasses.replace(
            m, db_size=size, db_size_in_use=in_use, raft_index=100, raft_applied_index=100
        )
        for m in observed.etcd.members
    )
    return dataclasses.replace(observed, etcd=view(*members, alarms=alarms))


def defrags(actions: list[Action]) -> list[Defragment]:
    return [a for a in actions if isinstance(a, Defragment)]


def apply_defrag(observed: Observed, actions: list[Action], after: int) -> Observed:
    """What etcd does: the defragmented member's file shrinks to ``after`` (its data), the
    disarmed alarm goes."""
    assert observed.etcd is not None
    done = {a.member_id for a in defrags(actions)}
    disarmed = {a.member_id for a in actions if isinstance(a, DisarmAlarm)}
    members = tuple(
        dataclasses.replace(m, db_size=after, db_size_in_use=after) if m.id in done else m
        for m in observed.etcd.members
    )
    alarms = tuple(a for a in observed.etcd.alarms if int(a.split(":")[1], 16) not in disarmed)
    return dataclasses.replace(observed, etcd=view(*members, alarms=alarms))


def run(
    desired: Any,
    observed: Observed,
    start: int,
    *,
    passes: int = 8,
    after: int = 100 * MiB,
    step: int = 1,
) -> tuple[Any, Observed, list[list[Action]]]:
    """Passes as the runtime runs them, ``step`` seconds apart: the steps, then the report on
    a look taken after they ran (so the status records each member's size after its
    defragmentation)."""
    history = []
    for i in range(passes):
        now = at(start + i * step)
        looked = dataclasses.replace(observed, now=now)
        steps = plan_steps(desired, looked, SETTINGS)
        assert steps is not None
        actions = list(steps.actions)
        assert len(defrags(actions)) <= 1, actions
        desired, observed = execute(desired, observed, actions)
        if observed.etcd is not None:
            observed = apply_defrag(observed, actions, after)
        reported = report(desired, dataclasses.replace(observed, now=now), SETTINGS, now, steps)
        desired, observed = execute(desired, observed, reported)
        history.append(actions + reported)
    return desired, observed, history


def order(history: list[list[Action]]) -> list[str]:
    return [d.name for actions in history for d in defrags(actions)]


def test_quota_usage_defragments_every_member_followers_first_leader_last() -> None:
    desired, observed = cluster_with({"quotaUsageAbovePercent": 80})
    observed = sized(observed, 900 * MiB, 100 * MiB)
    desired, observed, history = run(desired, observed, 100)
    assert order(history) == [f"{NAME}-2", f"{NAME}-1", f"{NAME}-0"]
    [last] = [a for a in history if defrags(a) and defrags(a)[0].name == f"{NAME}-0"]
    moves = [a for a in last if isinstance(a, MoveLeader)]
    assert len(moves) == 1 and last.index(moves[0]) < last.index(defrags(last)[0])
    assert desired.status.defrag.pending == []
    records = {m.member: m for m in desired.status.defrag.members}
    assert records[f"{NAME}-1"].reclaimed == 800 * MiB
    assert records[f"{NAME}-1"].trigger == "QuotaUsage"
    posted = [e.message for a in history for e in events(a) if e.reason == "Defragmented"]
    assert len(posted) == 3 and str(800 * MiB) in posted[0]


def test_free_space_counts_free_pages_not_size() -> None:
    spec = DefragSpec(freeSpaceAbovePercent=50)
    desired, observed = cluster_with({"freeSpaceAbovePercent": 50})
    mostly_free = sized(observed, 1000 * MiB, 400 * MiB)
    actions = plan(desired, dataclasses.replace(mostly_free, now=at(100)), SETTINGS, at(100))
    assert [d.name for d in defrags(actions)] == [f"{NAME}-2"]
    full = sized(observed, 1000 * MiB, 900 * MiB)
    actions = plan(desired, dataclasses.replace(full, now=at(100)), SETTINGS, at(100))
    assert defrags(actions) == []
    # A small file, however free: nothing worth a rewrite.
    small = sized(observed, 8 * MiB, 1 * MiB)
    actions = plan(desired, dataclasses.replace(small, now=at(100)), SETTINGS, at(100))
    assert defrags(actions) == []
    assert spec.quotaUsageAbovePercent is None


def test_nospace_defragments_while_members_fail_health_then_disarms() -> None:
    desired, observed = cluster_with({"quotaUsageAbovePercent": 95})
    alarmed = sized(observed, 1030 * MiB, 200 * MiB, alarms=(f"NOSPACE:{0x101:x}",))
    assert alarmed.etcd is not None
    # /health fails on every member while an alarm is active.
    sick = tuple(
        dataclasses.replace(m, healthy=False, error="Active Alarm(s): NOSPACE")
        for m in alarmed.etcd.members
    )
    alarmed = dataclasses.replace(alarmed, etcd=view(*sick, alarms=alarmed.etcd.alarms))
    # Available names the alarm, not a lost quorum: there is a leader, reads work.
    first = plan(desired, dataclasses.replace(alarmed, now=at(99)), SETTINGS, at(99))
    available = condition(first, "Available")
    assert (available["status"], available["reason"]) == ("False", "NoSpace"), available
    assert f"NOSPACE ({NAME}-1)" in available["message"]
    desired, observed, history = run(desired, alarmed, 100, passes=5, after=200 * MiB)
    assert sorted(order(history)) == sorted(f"{NAME}-{i}" for i in range(3))
    records = {m.member: m for m in desired.status.defrag.members}
    assert records[f"{NAME}-1"].trigger == "NoSpace"
    disarms = [a for actions in history for a in actions if isinstance(a, DisarmAlarm)]
    assert [(d.member_id, d.alarm) for d in disarms] == [(0x101, "NOSPACE")]
    assert observed.etcd is not None and observed.etcd.alarms == ()
    assert any(e.reason == "AlarmDisarmed" for a in history for e in events(a))


def test_a_member_still_over_the_threshold_waits_out_the_cooldown() -> None:
    desired, observed = cluster_with({"quotaUsageAbovePercent": 80})
    observed = sized(observed, 900 * MiB, 850 * MiB)
    # Nothing to give back: the file stays as large.
    desired, observed, history = run(desired, observed, 100, passes=6, after=900 * MiB)
    assert len(order(history)) == 3
    again = plan(desired, dataclasses.replace(observed, now=at(200)), SETTINGS, at(200))
    assert defrags(again) == []
    later = plan(desired, dataclasses.replace(observed, now=at(3700)), SETTINGS, at(3700))
    assert [d.name for d in defrags(later)] == [f"{NAME}-2"]


def test_a_schedule_slot_defragments_every_member_once() -> None:
    desired, observed = cluster_with({"schedule": "0 3 * * *"})
    desired = desired.model_copy(
        update={"metadata": {**desired.metadata, "creationTimestamp": "2025-01-01T00:00:00Z"}}
    )
    observed = sized(observed, 100 * MiB, 90 * MiB)
    # at(0) is 2025-01-02T03:04:05Z: the 03:00 slot of that day is due.
    desired, observed, history = run(desired, observed, 0, passes=6)
    assert order(history) == [f"{NAME}-2", f"{NAME}-1", f"{NAME}-0"]
    assert desired.status.defrag.lastScheduledTime == "2025-01-02T03:00:00Z"
    assert {m.trigger for m in desired.status.defrag.members} == {"Schedule"}


def member_without_status(m: EtcdMember) -> EtcdMember:
    return dataclasses.replace(m, raft_applied_index=None, healthy=False, error="timeout")


def test_nothing_while_a_member_does_not_answer_or_the_cluster_is_busy() -> None:
    desired, observed = cluster_with({"quotaUsageAbovePercent": 80})
    observed = sized(observed, 900 * MiB, 100 * MiB)
    assert observed.etcd is not None
    silent = tuple(
        member_without_status(m) if m.name == f"{NAME}-1" else m for m in observed.etcd.members
    )
    quiet = dataclasses.replace(observed, etcd=view(*silent), now=at(100))
    actions = plan(desired, quiet, SETTINGS, at(100))
    assert defrags(actions) == []
    assert sorted(status_of(actions)["defrag"]["pending"]) == [f"{NAME}-{i}" for i in range(3)]
    # Hibernating: nothing at all.
    asleep = desired.model_copy(update={"spec": desired.spec.model_copy(update={"replicas": 0})})
    actions = plan(asleep, dataclasses.replace(observed, now=at(100)), SETTINGS, at(100))
    assert defrags(actions) == []


def test_defrag_needs_something_to_go_by() -> None:
    with pytest.raises(ValidationError, match="defrag needs a schedule"):
        DefragSpec()
    with pytest.raises(ValidationError):
        DefragSpec(schedule="not a schedule")


def test_a_member_defragmented_as_it_filled_is_taken_again_once_compaction_freed_pages() -> None:
    # The quota threshold fires while the keyspace fills: nothing to give back yet. Then the
    # NOSPACE alarm, a delete and a compaction: the pages are free and must go back now, not
    # after the cooldown (e2e test_upgrades saw one member keep its full file).
    desired, observed = cluster_with({"quotaUsageAbovePercent": 80})
    observed = sized(observed, 900 * MiB, 880 * MiB)
    desired, observed, history = run(desired, observed, 100, passes=6, after=880 * MiB)
    assert len(order(history)) == 3
    compacted = sized(observed, 1000 * MiB, 10 * MiB, alarms=("NOSPACE:101",))
    desired, observed, history = run(desired, compacted, 200, passes=6, after=10 * MiB)
    assert sorted(order(history)) == sorted(f"{NAME}-{i}" for i in range(3))
    records = {m.member: m for m in desired.status.defrag.members}
    assert all(r.reclaimed is not None and r.reclaimed > 900 * MiB for r in records.values())


def test_a_small_file_under_nospace_is_not_taken_again_and_the_alarm_is_disarmed() -> None:
    # A defragmented file of a few pages always has some free: taken again each pass, the
    # member stayed pending and its alarm was never disarmed (e2e).
    desired, observed = cluster_with({"quotaUsageAbovePercent": 80})
    compacted = sized(observed, 1000 * MiB, 10 * MiB, alarms=("NOSPACE:101",))
    desired, observed, history = run(desired, compacted, 100, passes=6, after=72 * 1024)
    # Still alarmed (etcd keeps the alarm until it is disarmed), the file small and 1/6 free.
    small = sized(observed, 72 * 1024, 60 * 1024, alarms=("NOSPACE:101",))
    desired, observed, history = run(desired, small, 200, passes=4, after=72 * 1024)
    assert order(history) == []
    disarms = [a for actions in history for a in actions if isinstance(a, DisarmAlarm)]
    assert [(d.member_id, d.alarm) for d in disarms] == [(0x101, "NOSPACE")]
