"""The status a pass writes shows the pass's own steps: a pass that changed etcd or Kubernetes
looks at the world again before it reports, an idle pass looks once. Whole passes of the
reconciler through its periodic refresh, on the in-memory Kubernetes API and etcd, with the
real observation code."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import naming
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.plan import desired_children
from etcd_operator.runtime import reconciler as reconciler_module
from etcd_operator.runtime.observe import observe
from etcd_operator.runtime.reconciler import Reconciler, parse_cluster
from etcd_operator.runtime.refresh import ClusterRef

from tests.unit.operator.runtime.fake_etcd import FakeEtcd, started
from tests.unit.operator.runtime.fake_kube import FakeKube, Json
from tests.unit.operator.runtime.test_reconciler import Events, body

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5, status_interval_seconds=5)
REF = ClusterRef("ns", "demo", "uid-1")
CLUSTER = ("EtcdCluster", "ns", "demo")


def formed_world(kube: FakeKube, obj: Json, members: int) -> None:
    """Kubernetes as earlier passes left a formed cluster of ``members`` members: the cluster,
    its children rendered for them (the StatefulSet rolled out), Ready pods, their claims."""
    kube.put(obj)
    desired = parse_cluster(obj)
    for manifest in desired_children(desired, SETTINGS, BootstrapState.EXISTING, replicas=members):
        if manifest["kind"] == "StatefulSet":
            manifest["metadata"]["generation"] = 1
            manifest["status"] = {
                "observedGeneration": 1,
                "replicas": members,
                "readyReplicas": members,
                "updatedReplicas": members,
                "currentRevision": "r1",
                "updateRevision": "r1",
            }
        kube.put(manifest)
    labels = naming.selector_labels("demo")
    kube.pods = [
        {
            "metadata": {"name": f"demo-{i}", "namespace": "ns", "labels": labels},
            "spec": {"nodeName": f"node-{i}"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
        for i in range(members)
    ]
    kube.pvcs = [
        {"metadata": {"name": f"data-demo-{i}", "namespace": "ns", "labels": labels}}
        for i in range(members)
    ]


class Looks:
    """The reconciler's looks at the world: the real ``observe``, counted; each entry says
    whether that look asked etcd."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked_etcd: list[bool] = []

        async def counted(*args: Any, **kwargs: Any) -> Observed:
            self.asked_etcd.append(bool(kwargs.get("ask_etcd", True)))
            return await observe(*args, **kwargs)

        monkeypatch.setattr(reconciler_module, "observe", counted)


class Pass:
    """Periodic-refresh passes of one reconciler; ``run`` returns the status the pass wrote and
    the events it posted."""

    def __init__(self, kube: FakeKube, etcd: FakeEtcd) -> None:
        self.kube = kube
        self.connected: list[Sequence[str]] = []

        def connect(
            endpoints: Sequence[str],
            timeout: float,
            tls: ClientCredentials | None = None,
            auth: RootCredentials | None = None,
            /,
        ) -> FakeEtcd:
            self.connected.append(endpoints)
            return etcd

        self.reconciler = Reconciler(SETTINGS, kube, Events(), connect)

    def run(self) -> tuple[Json, list[tuple[str, str, str]]]:
        patches, posted = len(self.kube.status_patches), len(self.kube.events())
        asyncio.run(self.reconciler.refresh(REF))
        assert len(self.kube.status_patches) == patches + 1, "one status patch per pass"
        return self.kube.last_status, self.kube.events()[posted:]


def condition(status: Json, type_: str) -> tuple[str, str, str]:
    (found,) = [c for c in status["conditions"] if c["type"] == type_]
    return found["status"], found["reason"], found["message"]


def members(status: Json) -> list[tuple[str, bool]]:
    """(name, learner) of each member the status lists."""
    return [(m["name"], m["learner"]) for m in status["members"]]


def test_the_pass_that_promotes_the_last_learner_reports_it_promoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    formed_world(kube, body(), 3)  # spec.replicas = 3; the StatefulSet runs 3 pods
    etcd = FakeEtcd(2)
    etcd.members[0x102] = started(2, learner=True)  # demo-2 runs and has caught up
    etcd.in_sync = False
    looks = Looks(monkeypatch)
    passes = Pass(kube, etcd)

    # etcd refuses the promotion (the learner lags): the learner is still reported as one.
    status, _ = passes.run()
    assert etcd.calls == ["promote"]
    assert members(status) == [("demo-0", False), ("demo-1", False), ("demo-2", True)]
    assert condition(status, "Progressing")[:2] == ("True", "ScalingOut")

    etcd.in_sync = True
    looks.asked_etcd.clear()
    status, events = passes.run()

    assert etcd.calls == ["promote", "promote"]
    # The same pass's status: the promoted learner is a voter, and the scaling is done.
    assert members(status) == [("demo-0", False), ("demo-1", False), ("demo-2", False)]
    assert condition(status, "Available") == (
        "True",
        "QuorumHealthy",
        "3 of 3 voting members healthy, leader demo-0",
    )
    assert condition(status, "Progressing") == ("False", "Reconciled", "the members match the spec")
    assert condition(status, "Degraded") == ("False", "AllMembersHealthy", "3 members healthy")
    assert (status["phase"], status["replicas"], status["readyReplicas"]) == ("Running", 3, 3)
    assert list(status)[-1] == "observedGeneration"
    assert status["observedGeneration"] == 1
    assert events == [
        ("Normal", "MemberPromoted", "learner demo-2 was promoted to a voting member")
    ]
    assert looks.asked_etcd == [True, True]  # once to plan, once after the promotion

    # The next pass has nothing to do: one look, the same status, no event reported again.
    looks.asked_etcd.clear()
    again, events = passes.run()
    assert looks.asked_etcd == [True]
    assert events == []
    assert again == status
    assert etcd.calls == ["promote", "promote"]


def test_the_pass_that_removes_a_member_no_longer_lists_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    formed_world(kube, body(), 3)
    etcd = FakeEtcd(3, leader=0x102)  # demo-2, the member to go first, leads
    looks = Looks(monkeypatch)
    passes = Pass(kube, etcd)
    before, _ = passes.run()  # idle: three members, as the spec asks
    assert [name for name, _ in members(before)] == ["demo-0", "demo-1", "demo-2"]
    assert before["leader"] == "demo-2"
    assert looks.asked_etcd == [True]

    live = kube.objects[CLUSTER]
    live["spec"]["replicas"] = 2
    live["metadata"]["generation"] = 2
    looks.asked_etcd.clear()
    status, events = passes.run()

    assert etcd.calls == ["move", "remove"]
    assert sorted(etcd.members) == [0x100, 0x101]
    assert members(status) == [("demo-0", False), ("demo-1", False)]
    assert (status["leader"], status["replicas"]) == ("demo-0", 2)
    assert condition(status, "Available") == (
        "True",
        "QuorumHealthy",
        "2 of 2 voting members healthy, leader demo-0",
    )
    # What comes next: the removed member's pod is still there until the StatefulSet stops it.
    assert condition(status, "Progressing") == (
        "True",
        "ScalingIn",
        "stopping removed member demo-2",
    )
    assert status["phase"] == "Scaling"
    assert (list(status)[-1], status["observedGeneration"]) == ("observedGeneration", 2)
    assert looks.asked_etcd == [True, True]
    # The leader change is reported by the pass that made it, once.
    leader_events = [e for e in events if e[1] == "LeaderChanged"]
    assert leader_events == [("Normal", "LeaderChanged", "leader is demo-0 (was demo-2)")]
    assert [reason for _, reason, _ in events][:2] == ["LeaderMoved", "MemberRemoved"]

    _, events = passes.run()  # the pod still runs: nothing to do, and nothing to repeat
    assert looks.asked_etcd == [True, True, True]
    assert events == []


def test_a_creating_pass_looks_again_without_waiting_for_etcd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    kube.put(body())
    looks = Looks(monkeypatch)
    passes = Pass(kube, FakeEtcd())

    status, events = passes.run()

    assert [m["kind"] for m in kube.applied][-1] == "StatefulSet"
    # No StatefulSet before the pass: etcd was not asked, and the second look does not ask
    # it either (no member has started yet; asking would only wait for the deadline).
    assert looks.asked_etcd == [True, False]
    assert passes.connected == []
    assert status["phase"] == "Creating"
    assert events == [("Normal", "Creating", "creating 3 members running 3.5.17")]
