"""The keyspace step in whole passes: a due analysis (or one the status shows running) is handed
to the runtime and changes nothing else; the status keeps ``status.keyspace`` as read, with the
next slot, and clears it when ``spec.analysis`` goes; nothing happens without spec.analysis."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from etcd_operator.api.analysis import ANALYZE_ANNOTATION
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.actions import AnalyzeKeyspace, SampleWrites
from etcd_operator.reconcile.plan import plan, plan_steps

from tests.unit.operator.reconcile.builders import SETTINGS, T0, at, formed, status_of

STORE = {"store": {"bucket": "backups"}}
SUCCEEDED_RUN = {
    "phase": "Succeeded",
    "trigger": "Schedule",
    "startedAt": rfc3339(T0),
    "completedAt": rfc3339(T0),
}
KEYSPACE = {
    "backup": "demo-20250102-0300",
    "revision": 9,
    "analyzedAt": rfc3339(T0),
    "liveKeys": 4,
    "report": "s3://backups/ns/demo/demo-20250102-0300.db.zst.keyspace.json",
    "lastRun": SUCCEEDED_RUN,
    "lastScheduledTime": rfc3339(T0.replace(minute=0, second=0)),
}


def with_(
    desired: EtcdCluster,
    *,
    analysis: dict[str, Any] | None,
    keyspace: dict[str, Any] | None = None,
    annotation: str | None = None,
) -> EtcdCluster:
    body = desired.model_dump(mode="json", exclude_none=True)
    body["metadata"]["creationTimestamp"] = rfc3339(T0 - timedelta(days=1))
    body["spec"]["backup"] = STORE
    if analysis is not None:
        body["spec"]["analysis"] = analysis
    if keyspace is not None:
        body["status"]["keyspace"] = keyspace
    if annotation is not None:
        body["metadata"]["annotations"] = {ANALYZE_ANNOTATION: annotation}
    return EtcdCluster.model_validate(body)


def analyses(actions: list[Any]) -> list[AnalyzeKeyspace]:
    return [a for a in actions if isinstance(a, AnalyzeKeyspace)]


def test_without_spec_analysis_nothing_is_asked_and_the_status_has_no_keyspace() -> None:
    desired, observed = formed()
    desired = with_(desired, analysis=None, keyspace=KEYSPACE, annotation="now")
    actions = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert analyses(actions) == []
    # A status that still has one (spec.analysis was removed) is cleared, and its metrics go.
    assert status_of(actions)["keyspace"] is None


def test_a_new_annotation_value_hands_one_analysis_to_the_runtime() -> None:
    desired, observed = formed()
    desired = with_(desired, analysis={}, keyspace=KEYSPACE, annotation="now")
    observed = dataclasses.replace(observed, now=at(60))
    actions = plan(desired, observed, SETTINGS, at(60))
    assert analyses(actions) == [AnalyzeKeyspace("ns", "demo", "uid-1")]
    # Handing it over changes nothing the pass must look at again.
    steps = plan_steps(desired, observed, SETTINGS)
    assert steps is not None and not steps.acted
    # The pass writes status.keyspace as read: the runtime records the run itself.
    assert status_of(actions)["keyspace"] == {
        **KEYSPACE,
        "lastRun": {**SUCCEEDED_RUN, "attempt": 1, "backup": None, "reason": None, "message": None},
        **{k: None for k in ("liveBytes", "dbSize", "dbSizeInUse", "prefixes")},
        **{k: None for k in ("leasesWithoutKeys", "biggestKey", "hottestKey")},
        "nextScheduledTime": None,
        "lastRequest": None,
        "writes": None,
    }


def test_an_annotation_acted_on_asks_nothing() -> None:
    desired, observed = formed()
    desired = with_(
        desired, analysis={}, keyspace={**KEYSPACE, "lastRequest": "now"}, annotation="now"
    )
    actions = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert analyses(actions) == []
    assert status_of(actions)["keyspace"]["lastRequest"] == "now"


def test_a_due_slot_is_asked_for_and_the_status_shows_the_next() -> None:
    desired, observed = formed()
    desired = with_(desired, analysis={"schedule": "0 * * * *"}, keyspace=KEYSPACE)
    # The last slot acted on is 03:00 (T0 is 03:04:05): nothing until 04:00, then one.
    quiet = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert analyses(quiet) == []
    assert status_of(quiet)["keyspace"]["nextScheduledTime"] == "2025-01-02T04:00:00Z"
    later = T0.replace(hour=4, minute=1)
    due = plan(desired, dataclasses.replace(observed, now=later), SETTINGS, later)
    assert analyses(due) == [AnalyzeKeyspace("ns", "demo", "uid-1")]
    assert status_of(due)["keyspace"]["nextScheduledTime"] == "2025-01-02T05:00:00Z"


def test_a_run_shown_running_is_handed_over_so_that_a_restart_ends_it() -> None:
    desired, observed = formed()
    going = {**SUCCEEDED_RUN, "phase": "Running", "completedAt": None}
    desired = with_(desired, analysis={}, keyspace={**KEYSPACE, "lastRun": going})
    actions = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert analyses(actions) == [AnalyzeKeyspace("ns", "demo", "uid-1")]


def test_nothing_known_yet_writes_no_keyspace() -> None:
    desired, observed = formed()
    desired = with_(desired, analysis={})
    actions = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert analyses(actions) == []
    assert status_of(actions)["keyspace"] is None


WRITES = {
    "sampledAt": rfc3339(T0),
    "windowSeconds": 30,
    "fromRevision": 10,
    "toRevision": 70,
    "writes": 60,
    "prefixes": [{"prefix": "/registry/leases/", "writes": 60}],
    "hottestKey": {"key": "/registry/leases/n1", "writes": 60},
}


def samples(actions: list[Any]) -> list[SampleWrites]:
    return [a for a in actions if isinstance(a, SampleWrites)]


def test_write_sampling_asks_for_a_window_first_and_then_every_interval() -> None:
    desired, observed = formed()
    sampled = {"writes": {"intervalSeconds": 600}}
    first = with_(desired, analysis=sampled)
    actions = plan(first, dataclasses.replace(observed, now=at(5)), SETTINGS, at(5))
    assert samples(actions) == [SampleWrites("ns", "demo", "uid-1")]
    assert analyses(actions) == []  # no schedule, no annotation: no offline analysis
    # A window taken at T0: nothing until 600 s later; the status keeps it as read.
    later = with_(desired, analysis=sampled, keyspace={"writes": WRITES})
    for now, asked in ((599, []), (600, [SampleWrites("ns", "demo", "uid-1")])):
        actions = plan(later, dataclasses.replace(observed, now=at(now)), SETTINGS, at(now))
        assert samples(actions) == asked, now
        assert status_of(actions)["keyspace"]["writes"] == WRITES


def test_sampling_turned_off_asks_nothing_and_its_last_window_goes() -> None:
    desired, observed = formed()
    desired = with_(desired, analysis={}, keyspace={**KEYSPACE, "writes": WRITES})
    actions = plan(desired, dataclasses.replace(observed, now=at(900)), SETTINGS, at(900))
    assert samples(actions) == []
    keyspace = status_of(actions)["keyspace"]
    # null in the status merge patch: the field is removed.
    assert keyspace["writes"] is None and keyspace["liveKeys"] == KEYSPACE["liveKeys"]
