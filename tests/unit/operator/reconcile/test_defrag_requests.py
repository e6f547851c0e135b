"""On-demand defragmentation (EtcdDefrag) as a converging world: a request starts, its members
are defragmented one per pass in the usual order, and it ends Succeeded with their sizes; or it
is Rejected (hibernated cluster, unknown member) or Failed (past its deadline while the cluster
could not be defragmented)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from etcd_operator.api.etcddefrag import EtcdDefrag, EtcdDefragSpec
from etcd_operator.api.times import rfc3339
from etcd_operator.reconcile.actions import Defragment, MoveLeader, PatchOperationStatus
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.plan import plan
from pydantic import ValidationError

from tests.unit.operator.reconcile.builders import NAME, SETTINGS, at, events, formed
from tests.unit.operator.reconcile.test_defrag import MiB, defrags, run, sized


def request(name: str = "now", created: int = 90, **spec: Any) -> EtcdDefrag:
    return EtcdDefrag.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "creationTimestamp": rfc3339(at(created)),
            },
            "spec": {"clusterName": NAME, **spec},
        }
    )


def with_requests(observed: Observed, *requests: EtcdDefrag) -> Observed:
    return dataclasses.replace(observed, defrag_requests=requests)


def phase(observed: Observed, name: str = "now") -> Any:
    [found] = [r for r in observed.defrag_requests if r.name == name]
    assert found.status is not None
    return found.status


def test_a_request_defragments_every_member_leader_last_without_defrag_settings() -> None:
    desired, observed = formed()
    assert desired.spec.maintenance.defrag is None
    observed = with_requests(sized(observed, 900 * MiB, 100 * MiB), request())
    desired, observed, history = run(desired, observed, 100)
    order = [d.name for actions in history for d in defrags(actions)]
    assert order == [f"{NAME}-2", f"{NAME}-1", f"{NAME}-0"]
    leader_pass = next(a for a in history if defrags(a) and defrags(a)[0].name == f"{NAME}-0")
    assert any(isinstance(a, MoveLeader) for a in leader_pass)
    # Started in the first pass (before its first defragmentation), patched as it went.
    first = [a for a in history[0] if isinstance(a, PatchOperationStatus)]
    assert first[0].status["phase"] == "Running" and history[0].index(first[0]) < history[0].index(
        defrags(history[0])[0]
    )
    status = phase(observed)
    assert status.phase == "Succeeded" and status.reason == "Defragmented"
    assert [m.member for m in status.members] == [f"{NAME}-{i}" for i in range(3)]
    assert all(m.reclaimed == 800 * MiB and m.trigger == "Request" for m in status.members)
    assert status.reclaimedBytes == 3 * 800 * MiB and status.pending == []
    assert [c.type for c in status.conditions] == ["Complete"]
    posted = [e for a in history for e in events(a) if e.reason == "DefragSucceeded"]
    assert len(posted) == 1 and str(3 * 800 * MiB) in posted[0].message
    # Ended: later passes leave it alone.
    _, _, later = run(desired, observed, 200, passes=2)
    assert not [a for p in later for a in p if isinstance(a, PatchOperationStatus | Defragment)]


def test_a_request_for_some_members_takes_only_those() -> None:
    desired, observed = formed()
    observed = with_requests(sized(observed, 900 * MiB, 100 * MiB), request(members=[f"{NAME}-1"]))
    desired, observed, history = run(desired, observed, 100, passes=3)
    assert [d.name for a in history for d in defrags(a)] == [f"{NAME}-1"]
    assert phase(observed).phase == "Succeeded"
    assert [m.member for m in phase(observed).members] == [f"{NAME}-1"]


def test_two_requests_share_the_defragmentations() -> None:
    desired, observed = formed()
    both = (request("a", created=90), request("b", created=91, members=[f"{NAME}-0"]))
    observed = with_requests(sized(observed, 900 * MiB, 100 * MiB), *both)
    desired, observed, history = run(desired, observed, 100)
    assert sorted(d.name for a in history for d in defrags(a)) == [f"{NAME}-{i}" for i in range(3)]
    assert phase(observed, "a").phase == phase(observed, "b").phase == "Succeeded"


def test_an_unknown_member_is_rejected_and_nothing_is_defragmented() -> None:
    desired, observed = formed()
    observed = with_requests(observed, request(members=[f"{NAME}-7"]))
    desired, observed, history = run(desired, observed, 100, passes=2)
    assert not [d for a in history for d in defrags(a)]
    status = phase(observed)
    assert (status.phase, status.reason) == ("Rejected", "UnknownMember")
    assert f"{NAME}-7" in str(status.message) and [c.type for c in status.conditions] == ["Failed"]
    assert [e.type for a in history for e in events(a) if e.reason == "DefragRejected"] == [
        "Warning"
    ]


def test_a_hibernated_cluster_rejects_a_request() -> None:
    desired, observed = formed()
    asleep = desired.model_copy(update={"spec": desired.spec.model_copy(update={"replicas": 0})})
    observed = with_requests(observed, request())
    actions = plan(asleep, dataclasses.replace(observed, now=at(100)), SETTINGS, at(100))
    [patch] = [a for a in actions if isinstance(a, PatchOperationStatus)]
    assert (patch.status["phase"], patch.status["reason"]) == ("Rejected", "Hibernated")


def test_a_request_the_cluster_cannot_take_fails_at_its_deadline() -> None:
    desired, observed = formed()
    observed = sized(observed, 900 * MiB, 100 * MiB)
    assert observed.etcd is not None
    # No leader: nothing may be taken out (etcd elects one, or the user has to look).
    leaderless = dataclasses.replace(
        observed.etcd,
        members=tuple(dataclasses.replace(m, leader=False) for m in observed.etcd.members),
    )
    observed = with_requests(dataclasses.replace(observed, etcd=leaderless), request(created=90))
    desired, observed, history = run(desired, observed, 100, passes=3, step=1000)
    assert not [d for a in history for d in defrags(a)]
    assert phase(observed).phase == "Running"  # 2,100 s old: within the hour
    desired, observed, history = run(desired, observed, 3700, passes=1)
    status = phase(observed)
    assert (status.phase, status.reason) == ("Failed", "DeadlineExceeded")
    assert "not healthy enough" in str(status.message) and f"{NAME}-0" in str(status.message)


def test_a_request_waits_while_no_member_answers() -> None:
    desired, observed = formed()
    observed = with_requests(dataclasses.replace(observed, etcd=None), request())
    desired, observed, _ = run(desired, observed, 100, passes=1)
    status = phase(observed)
    assert (status.phase, status.reason) == ("Pending", "Waiting")


@pytest.mark.parametrize(
    "spec",
    [
        {"clusterName": NAME, "members": []},
        {"clusterName": NAME, "activeDeadlineSeconds": 5},
        {"clusterName": "Not_A_Name"},
        {"clusterName": NAME, "unknown": 1},
    ],
)
def test_invalid_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EtcdDefragSpec.model_validate(spec)
