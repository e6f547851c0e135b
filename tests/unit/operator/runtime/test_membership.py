"""Executing membership steps: idempotent etcd calls against an in-memory etcd, claim deletion,
"not yet" promotions, and an engine that answers "not capable"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import kopf
import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.members import MembershipNotSupportedError
from etcd_operator.members.membership import NOT_CAPABLE
from etcd_operator.reconcile.observed import ChildKey, Json, Observed
from etcd_operator.reconcile.plan import (
    Action,
    AddMember,
    Apply,
    DeletePVC,
    Event,
    MoveLeader,
    PatchStatus,
    PromoteMember,
    RemoveMember,
    desired_children,
    key_of,
)
from etcd_operator.runtime import reconciler as reconciler_module
from etcd_operator.runtime.execute import execute
from etcd_operator.runtime.observe import assemble, membership_endpoints
from etcd_operator.runtime.reconciler import Reconciler

from tests.unit.operator.reconcile.builders import cluster, healthy_view, pods, rolled_out
from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_reconciler import Events, body

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5)
PEER = "http://demo-3.demo-peer.ns.svc.cluster.local:2380"


def run(actions: list[Action], etcd: FakeEtcd, kube: FakeKube | None = None) -> list[Any]:
    posted: list[Any] = []
    asyncio.run(
        execute(actions, kube or FakeKube(), lambda *e: posted.append(e), posted.append, etcd)
    )
    return posted


def test_every_membership_step_is_harmless_when_repeated() -> None:
    etcd = FakeEtcd()
    steps: list[Action] = [
        AddMember("demo-3", PEER),
        PromoteMember(0x103, "demo-3"),
        MoveLeader(0x100, 0x101, "demo-1"),
        RemoveMember(0x100, "demo-0"),
    ]
    run(steps, etcd)
    calls = list(etcd.calls)
    assert calls == ["add", "promote", "move", "remove"]
    run(steps, etcd)  # the pass again, as after a crash: etcd already shows each outcome
    assert etcd.calls == calls
    assert sorted(etcd.members) == [0x101, 0x102, 0x103]
    assert not etcd.members[0x103].is_learner
    assert etcd.leader == 0x101


def test_a_learner_not_in_sync_is_not_a_failure() -> None:
    etcd = FakeEtcd()
    run([AddMember("demo-3", PEER)], etcd)
    etcd.in_sync = False

    posted = run(
        [PromoteMember(0x103, "demo-3"), Event("Normal", "R", "m"), PatchStatus({"phase": "x"})],
        etcd,
    )

    assert etcd.members[0x103].is_learner
    assert posted == [("Normal", "R", "m"), {"phase": "x"}]  # the pass went on


def test_not_capable_stops_the_pass_with_a_clear_error() -> None:
    etcd = FakeEtcd(1)
    etcd.capable = False
    kube = FakeKube()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    posted: list[Any] = []

    with pytest.raises(MembershipNotSupportedError) as err:
        asyncio.run(
            execute(
                [AddMember("demo-1", PEER), Event("Normal", "MemberAdded", "m"), Apply(service)],
                kube,
                lambda *e: posted.append(e),
                posted.append,
                etcd,
            )
        )
    assert err.value.message == NOT_CAPABLE
    assert (kube.applied, posted) == ([], [])  # nothing after the refused change ran


def test_delete_pvc_is_harmless_when_repeated() -> None:
    kube = FakeKube()
    kube.pvcs = [{"metadata": {"name": "data-demo-3", "namespace": "ns"}}]
    run([DeletePVC("data-demo-3", "ns")], FakeEtcd(), kube)
    run([DeletePVC("data-demo-3", "ns")], FakeEtcd(), kube)
    assert kube.pvcs == []
    assert kube.deleted == [("PersistentVolumeClaim", "ns", "data-demo-3")] * 2


def test_membership_endpoints_prefer_the_members_etcd_lists() -> None:
    observed = Observed(etcd=healthy_view(2))
    endpoints = membership_endpoints(cluster(replicas=3), SETTINGS, observed)
    assert endpoints == [
        "http://demo-0.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-1.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-2.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-client.ns.svc.cluster.local:2379",
    ]


def test_assemble_lists_volume_claims() -> None:
    cm = ChildKey("ConfigMap", "demo-bootstrap")
    claims = [{"metadata": {"name": n}} for n in ("data-demo-1", "data-demo-0")]
    observed = assemble({}, [], None, cm, claims)
    assert observed.pvcs == ("data-demo-0", "data-demo-1")


# -- whole passes ----------------------------------------------------------------------------


def formed_one_member_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """observe() sees a formed one-member cluster whose children are as the operator applied."""
    desired = cluster(replicas=1)
    children: dict[ChildKey, Json] = {
        key_of(m): m for m in desired_children(desired, SETTINGS, BootstrapState.EXISTING)
    }
    observed = Observed(
        children=children,
        pods=pods(1),
        bootstrap_state="existing",
        statefulset=rolled_out(1),
        etcd=healthy_view(1),
        pvcs=("data-demo-0",),
    )

    async def fake_observe(*_: object, **__: object) -> Observed:
        return observed

    monkeypatch.setattr(reconciler_module, "observe", fake_observe)


def test_a_not_capable_engine_is_reported_degraded_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube, events = FakeKube(), Events()
    formed_one_member_world(monkeypatch)
    connected: list[FakeEtcd] = []

    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        etcd = FakeEtcd(1)
        etcd.capable = False
        connected.append(etcd)
        return etcd

    reconciler = Reconciler(SETTINGS, kube, events, connect)
    obj = body()  # spec.replicas = 3
    kube.put(obj)

    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, obj))))  # no raise

    assert [e.calls for e in connected] == [["add"]] and connected[0].closed
    assert kube.applied == []  # the StatefulSet stays at the one member etcd lists
    (status,) = [s for _, _, s in kube.status_patches]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "MembershipNotSupported")
    assert "cannot change etcd membership yet" in degraded["message"]
    assert status["phase"] == "Degraded"
    assert ("Warning", "Degraded", f"MembershipNotSupported: {degraded['message']}") in (
        events.posted
    )

    # The refresh's next pass of the same generation does not ask etcd again.
    obj["status"] = status
    kube.put(obj)
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, obj))))
    assert len(connected) == 1
    assert kube.last_status["phase"] == "Degraded"
