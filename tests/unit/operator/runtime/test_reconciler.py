"""The runtime: parsing bodies, translating API objects into observed state, the executor, and
whole passes of the reconciler against an in-memory Kubernetes API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import pytest
from etcd_operator import metrics
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.reconcile.observed import (
    FINGERPRINT_ANNOTATION,
    ChildKey,
    EtcdMember,
    EtcdView,
    PodState,
)
from etcd_operator.reconcile.plan import Action, Apply, Event, PatchStatus
from etcd_operator.runtime.execute import execute
from etcd_operator.runtime.kube import UnknownKindError, resource_path
from etcd_operator.runtime.observe import (
    assemble,
    member_endpoints,
    pod_state,
    statefulset_state,
)
from etcd_operator.runtime.reconciler import (
    InvalidSpecError,
    PassFailedError,
    Reconciler,
    parse_cluster,
)
from etcd_operator.runtime.refresh import ClusterRef

from tests.unit.operator.runtime.fake_kube import FakeKube

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5, status_interval_seconds=5)
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def body(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"version": "3.5.17", "replicas": 3},
        "status": status,
    }


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def __call__(self, objs: kopf.Body, /, *, type: str, reason: str, message: str) -> None:
        self.posted.append((type, reason, message))


# -- parsing ---------------------------------------------------------------------------------


def test_parse_cluster_drops_kopf_bookkeeping_from_status() -> None:
    cluster = parse_cluster(body(kopf={"progress": {}}, phase="Running", leader="demo-0"))
    assert cluster.name == "demo"
    assert cluster.metadata["uid"] == "uid-1"
    assert cluster.status is not None
    assert (cluster.status.phase, cluster.status.leader) == ("Running", "demo-0")


def test_parse_cluster_ignores_an_unreadable_status_and_refuses_an_invalid_spec() -> None:
    assert parse_cluster(body(members="garbage")).status is None
    bad = body()
    bad["spec"]["replicas"] = -1
    with pytest.raises(InvalidSpecError, match="invalid spec"):
        parse_cluster(bad)


# -- translation of API objects -------------------------------------------------------------


SCHEDULER_SAYS = (
    "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
    "3 node(s) didn't match pod anti-affinity rules."
)


def pending_pod(**condition: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-3"},
        "spec": {},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", **condition}]},
    }


def test_a_pod_the_scheduler_cannot_place_is_unschedulable_with_its_message() -> None:
    unplaced = pending_pod(status="False", reason="Unschedulable", message=SCHEDULER_SAYS)
    assert pod_state(unplaced) == PodState("demo-3", ready=False, unschedulable=SCHEDULER_SAYS)
    assert pod_state(pending_pod(status="False", reason="Unschedulable")).unschedulable
    # Waiting for other reasons, or scheduled, or going away: not unschedulable.
    assert pod_state(pending_pod(status="False", reason="SchedulingGated")).unschedulable is None
    assert pod_state(pending_pod(status="True")).unschedulable is None
    deleting = pending_pod(status="False", reason="Unschedulable")
    deleting["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:05Z"
    assert pod_state(deleting).unschedulable is None


def test_pod_and_statefulset_states() -> None:
    pod = {
        "metadata": {"name": "demo-1"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert pod_state(pod) == PodState("demo-1", ready=True, phase="Running", node="n1")
    assert pod_state({"metadata": {"name": "demo-2"}}) == PodState("demo-2", ready=False)
    sts = statefulset_state(
        {
            "metadata": {"generation": 3},
            "spec": {"replicas": 3},
            "status": {
                "observedGeneration": 3,
                "updatedReplicas": 1,
                "readyReplicas": 3,
                "currentRevision": "a",
                "updateRevision": "b",
            },
        }
    )
    assert sts.rolling
    assert (sts.replicas, sts.ready_replicas, sts.updated_replicas) == (3, 3, 1)


def test_assemble_keeps_live_children_and_reads_bootstrap_state_and_etcd() -> None:
    cm_key = ChildKey("ConfigMap", "demo-bootstrap")
    configmap = {
        "metadata": {"name": "demo-bootstrap", "annotations": {FINGERPRINT_ANNOTATION: "f1"}},
        "data": {"initial-cluster-state": "existing"},
    }
    unannotated = {"metadata": {"name": "demo-peer"}}
    observation = EtcdView(
        cluster_id=0xAB,
        members=(
            EtcdMember(
                id=1,
                name="demo-0",
                peer_urls=("http://p",),
                client_urls=("http://c",),
                learner=False,
                healthy=True,
                leader=True,
                version="3.5.17",
            ),
        ),
        alarms=("NOSPACE:1",),
    )
    observed = assemble(
        {
            cm_key: configmap,
            ChildKey("Service", "demo-peer"): unannotated,
            ChildKey("PodDisruptionBudget", "demo"): None,
        },
        [],
        observation,
        cm_key,
    )
    assert observed.children == {cm_key: configmap, ChildKey("Service", "demo-peer"): unannotated}
    assert observed.fingerprint(cm_key) == "f1"
    assert observed.fingerprint(ChildKey("Service", "demo-peer")) is None
    assert observed.bootstrap_state == "existing"
    assert observed.statefulset is None
    assert observed.etcd == observation
    assert observed.etcd is not None
    assert observed.etcd.leader is not None and observed.etcd.leader.name == "demo-0"
    assert observed.etcd.alarms == ("NOSPACE:1",)


def test_member_endpoints_and_resource_paths() -> None:
    cluster = parse_cluster(body())
    assert member_endpoints(cluster, SETTINGS) == [
        "http://demo-0.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-1.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-2.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-client.ns.svc.cluster.local:2379",
    ]
    assert resource_path("v1", "ConfigMap", "ns", "x") == "/api/v1/namespaces/ns/configmaps/x"
    assert (
        resource_path("apps/v1", "StatefulSet", "ns") == "/apis/apps/v1/namespaces/ns/statefulsets"
    )
    assert (
        resource_path("policy/v1", "PodDisruptionBudget", "ns", "d")
        == "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/d"
    )
    assert (
        resource_path("v1", "PersistentVolumeClaim", "ns")
        == "/api/v1/namespaces/ns/persistentvolumeclaims"
    )
    assert (
        resource_path("networking.k8s.io/v1", "NetworkPolicy", "ns", "d")
        == "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/d"
    )
    # Never a guessed plural: a kind the operator does not manage is an error.
    with pytest.raises(UnknownKindError, match="Ingress"):
        resource_path("networking.k8s.io/v1", "Ingress", "ns")


# -- the executor ----------------------------------------------------------------------------


def test_execute_runs_actions_in_order_and_stops_at_the_first_failure() -> None:
    kube = FakeKube()
    kube.fail_apply_of = "Service"
    posted: list[tuple[str, str, str]] = []
    written: list[dict[str, Any]] = []
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    actions: list[Action] = [
        Apply(manifest),
        Event("Normal", "R", "m"),
        PatchStatus({"phase": "Running"}),
    ]

    with pytest.raises(RuntimeError, match="injected"):
        asyncio.run(execute(actions, kube, lambda *e: posted.append(e), written.append))
    assert (posted, written) == ([], [])  # status is never written for an incomplete pass

    kube.fail_apply_of = None
    asyncio.run(execute(actions, kube, lambda *e: posted.append(e), written.append))
    assert kube.applied == [manifest]
    assert posted == [("Normal", "R", "m")]
    assert written == [{"phase": "Running"}]


# -- whole passes ----------------------------------------------------------------------------


def test_network_policy_follows_the_operator_default_and_the_spec() -> None:
    """On by the operator's default: applied before the StatefulSet; turned off in the spec:
    the live policy is found by name (it is no longer rendered) and deleted."""
    kube, events = FakeKube(), Events()
    settings = SETTINGS.model_copy(update={"network_policy_default": True})
    reconciler = Reconciler(settings, kube, events)
    status = run_pass(reconciler, kube, body())
    kinds = [m["kind"] for m in kube.applied]
    assert kinds.index("NetworkPolicy") < kinds.index("StatefulSet")
    assert status["networkPolicy"] == "demo"
    assert ("NetworkPolicy", "ns", "demo") in kube.objects

    off = body()
    off["spec"]["networkPolicy"] = {"enabled": False}
    status = run_pass(reconciler, kube, off)
    assert ("NetworkPolicy", "ns", "demo") in kube.deleted
    assert ("NetworkPolicy", "ns", "demo") not in kube.objects
    assert status["networkPolicy"] is None


def run_pass(reconciler: Reconciler, kube: FakeKube, obj: dict[str, Any]) -> dict[str, Any]:
    """A kopf-handler pass on ``obj`` (stored as the live cluster); the status it wrote."""
    kube.put(obj)
    written = len(kube.status_patches)
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, obj))))
    assert len(kube.status_patches) == written + 1, "one status patch per pass"
    return kube.last_status


def test_create_then_resume_applies_once() -> None:
    kube, events = FakeKube(), Events()
    reconciler = Reconciler(SETTINGS, kube, events)
    before = sample("etcd_operator_reconciles_total", result="success")

    status = run_pass(reconciler, kube, body())

    kinds = [m["kind"] for m in kube.applied]
    assert kinds == ["ConfigMap", "Service", "Service", "PodDisruptionBudget", "StatefulSet"]
    for manifest in kube.applied:
        assert manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
    assert events.posted == [("Normal", "Creating", "creating 3 members running 3.5.17")]
    assert kube.status_patches[0][:2] == ("ns", "demo")  # the status subresource, written
    assert status["phase"] == "Creating"
    assert list(status)[-1] == "observedGeneration"
    assert sample("etcd_operator_reconciles_total", result="success") == before + 1

    # The operator restarts: the children exist as applied. The StatefulSet exists now, so the
    # pass asks etcd, whose members' DNS names do not resolve here: etcd is unreachable, which
    # is an observation, not a failure.
    kube.applied.clear()
    events.posted.clear()
    second = run_pass(reconciler, kube, body(**status))
    assert kube.applied == []
    assert events.posted == []
    assert second["phase"] == "Creating"
    assert sample("etcd_operator_cluster_available", namespace="ns", cluster="demo") == 0


def test_a_pass_that_cannot_look_again_after_acting_still_reports_what_it_did() -> None:
    """The creation pass applies the children; the API server then stops answering its second
    look. The actions stay recorded: the status is written from the look before them, and the
    pass does not fail (a replacement's count would otherwise be lost, since the next pass
    finds nothing left to do)."""
    kube, events = FakeKube(), Events()
    kube.fail_lists_after_apply = True
    reconciler = Reconciler(SETTINGS, kube, events)
    status = run_pass(reconciler, kube, body())
    assert [m["kind"] for m in kube.applied][-1] == "StatefulSet"
    assert status["phase"] == "Creating"
    assert events.posted == [("Normal", "Creating", "creating 3 members running 3.5.17")]


def test_a_failed_pass_is_retried_with_backoff_counted_and_reported() -> None:
    kube, events = FakeKube(), Events()
    kube.fail_apply_of = "StatefulSet"
    reconciler = Reconciler(SETTINGS, kube, events, clock=lambda: T0)
    before = sample("etcd_operator_reconcile_errors_total", reason="unexpected")

    delays = []
    for _ in range(3):
        with pytest.raises(PassFailedError) as err:
            asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, kube.live(body())))))
        delays.append(err.value.delay)
        assert "injected failure" in str(err.value)

    # SETTINGS' status interval (below the 10 s cap) first, then doubling.
    assert delays == [5.0, 10.0, 20.0]
    assert sample("etcd_operator_reconcile_errors_total", reason="unexpected") == before + 3
    # The failure is on the status (Degraded, ReconcileFailed), never as a completed pass: no
    # observedGeneration, no members.
    status = kube.last_status
    assert set(status) == {"phase", "conditions"}
    (degraded,) = [c for c in status["conditions"] if c["type"] == "Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileFailed")
    assert "injected failure" in degraded["message"]
    # One Warning per distinct error, not one per retry.
    assert [(t, r) for t, r, _ in events.posted if t == "Warning"] == [
        ("Warning", "ReconcileFailed")
    ]

    kube.fail_apply_of = None
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, kube.live(body())))))
    (degraded,) = [c for c in kube.last_status["conditions"] if c["type"] == "Degraded"]
    assert degraded["reason"] != "ReconcileFailed"
    assert ("Normal", "Recovered") in [(t, r) for t, r, _ in events.posted]
    assert reconciler.retry_delay(1) == 5.0  # the streak ended


def conditions_gauge(namespace: str, cluster: str) -> set[tuple[str, str, str]]:
    """The (condition, status, reason) series of ``etcd_operator_cluster_condition`` a cluster
    has, each checked to be 1."""
    found = set()
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            labels = s.labels
            if s.name != "etcd_operator_cluster_condition":
                continue
            if (labels["namespace"], labels["cluster"]) != (namespace, cluster):
                continue
            assert s.value == 1
            found.add((labels["condition"], labels["status"], labels["reason"]))
    return found


def status_conditions(status: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["type"], c["status"], c["reason"]) for c in status["conditions"]}


def test_failed_passes_in_a_row_and_the_conditions_are_gauges_until_the_cluster_goes() -> None:
    """The alerts' inputs: failures in a row (an invalid spec too) until a pass completes, and
    each condition's current status and reason, following the status through a failure and
    back, with no series left of a reason the status no longer has."""
    metrics.forget_cluster("ns", "demo")  # the registry is the process's: start from nothing
    kube, events = FakeKube(), Events()
    kube.fail_apply_of = "StatefulSet"
    reconciler = Reconciler(SETTINGS, kube, events, clock=lambda: T0)
    failures = "etcd_operator_cluster_reconcile_failures"
    for _ in range(2):
        with pytest.raises(PassFailedError):
            asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, kube.live(body())))))
    assert sample(failures, namespace="ns", cluster="demo") == 2
    assert conditions_gauge("ns", "demo") == {("Degraded", "True", "ReconcileFailed")}

    bad = kube.live(body())
    bad["spec"]["replicas"] = -1
    kube.put(bad)
    with pytest.raises(InvalidSpecError):
        asyncio.run(reconciler.refresh(REF))
    assert sample(failures, namespace="ns", cluster="demo") == 3

    kube.fail_apply_of = None
    fixed = kube.live(body())
    fixed["spec"]["replicas"] = 3
    status = run_pass(reconciler, kube, fixed)
    assert sample(failures, namespace="ns", cluster="demo") == 0
    now = conditions_gauge("ns", "demo")
    assert now == status_conditions(status)
    assert ("Progressing", "True", "Creating") in now
    assert not any(reason == "ReconcileFailed" for _, _, reason in now)

    # Another cluster's series are its own; a deleted cluster's go.
    other = body()
    other["metadata"] = {**other["metadata"], "name": "other", "uid": "uid-2"}
    run_pass(reconciler, kube, other)
    metrics.forget_cluster("ns", "demo")
    assert conditions_gauge("ns", "demo") == set()
    assert (
        metrics.REGISTRY.get_sample_value(failures, {"namespace": "ns", "cluster": "demo"}) is None
    )
    assert conditions_gauge("ns", "other")
    metrics.forget_cluster("ns", "other")


# -- the periodic refresh's pass -------------------------------------------------------------

REF = ClusterRef("ns", "demo", "uid-1")


def test_refresh_reads_the_cluster_and_posts_events_through_the_api() -> None:
    kube, kopf_events = FakeKube(), Events()
    kube.put(body())
    reconciler = Reconciler(SETTINGS, kube, kopf_events, clock=lambda: T0)

    asyncio.run(reconciler.refresh(REF))

    assert [m["kind"] for m in kube.applied][-1] == "StatefulSet"
    assert kube.last_status["phase"] == "Creating"
    assert kopf_events.posted == []  # kopf.event works only inside kopf's handler tasks
    (event,) = kube.created
    assert kube.events() == [("Normal", "Creating", "creating 3 members running 3.5.17")]
    assert event["metadata"] == {"generateName": "demo.", "namespace": "ns"}
    assert event["involvedObject"] == {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "name": "demo",
        "namespace": "ns",
        "uid": "uid-1",
    }
    assert (event["firstTimestamp"], event["count"]) == ("2025-01-02T03:04:05Z", 1)
    assert event["source"] == {"component": "etcd-operator"}


def test_refresh_plans_from_the_status_the_previous_pass_wrote() -> None:
    # A kopf pass writes the status before it releases the cluster's lock; the refresh reads
    # the cluster afresh under that lock, so it does not report the same transitions again.
    kube, kopf_events = FakeKube(), Events()
    reconciler = Reconciler(SETTINGS, kube, kopf_events, clock=lambda: T0)
    run_pass(reconciler, kube, body())
    assert [reason for _, reason, _ in kopf_events.posted] == ["Creating"]

    asyncio.run(reconciler.refresh(REF))

    assert kube.created == []
    assert len(kube.status_patches) == 2


@pytest.mark.parametrize(
    "live",
    [
        pytest.param(None, id="deleted"),
        pytest.param(
            body() | {"metadata": {**body()["metadata"], "uid": "uid-2"}}, id="re-created"
        ),
        pytest.param(
            body()
            | {"metadata": {**body()["metadata"], "deletionTimestamp": "2025-01-02T03:04:05Z"}},
            id="being-deleted",
        ),
    ],
)
def test_refresh_leaves_alone_a_cluster_that_is_gone(live: dict[str, Any] | None) -> None:
    kube = FakeKube()
    if live is not None:
        kube.put(live)
    reconciler = Reconciler(SETTINGS, kube, Events())

    asyncio.run(reconciler.refresh(REF))

    assert (kube.applied, kube.status_patches, kube.created) == ([], [], [])


def test_refresh_of_an_invalid_spec_raises_for_the_loop_to_log() -> None:
    kube = FakeKube()
    bad = body()
    bad["spec"]["replicas"] = -1
    kube.put(bad)
    with pytest.raises(InvalidSpecError):
        asyncio.run(Reconciler(SETTINGS, kube, Events()).refresh(REF))


def test_a_stale_kopf_body_never_rewinds_what_the_status_accumulates() -> None:
    """kopf may deliver a body older than the status another pass wrote meanwhile: the pass
    reads the cluster again, so the replacement count, the last recovery and the spent consent
    token stay as written."""
    kube, events = FakeKube(), Events()
    reconciler = Reconciler(SETTINGS, kube, events, clock=lambda: T0)
    stale = body()
    kube.put(stale)
    run_pass(reconciler, kube, stale)
    written = {
        "membersReplaced": 2,
        "recoverQuorumToken": "t1",
        "lastReplacement": {"member": "demo-1", "reason": "lost", "time": "2025-01-02T03:04:05Z"},
    }
    asyncio.run(kube.patch_status("etcd.pyetcd.io/v1alpha1", "EtcdCluster", "ns", "demo", written))
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, stale))))
    status = kube.live(stale)["status"]
    assert (status["membersReplaced"], status["recoverQuorumToken"]) == (2, "t1")
    assert status["lastReplacement"]["member"] == "demo-1"
    # A pass that does not know them never writes null over them.
    fresh = body()
    kube.put(fresh)
    run_pass(reconciler, kube, fresh)
    assert not {"membersReplaced", "recoverQuorumToken", "lastReplacement"} & set(kube.last_status)


def test_a_cluster_gone_or_replaced_by_another_of_its_name_is_skipped() -> None:
    kube, events = FakeKube(), Events()
    reconciler = Reconciler(SETTINGS, kube, events, clock=lambda: T0)
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, body()))))  # never stored
    other = body()
    other["metadata"]["uid"] = "another"
    kube.put(other)
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, body()))))
    assert kube.status_patches == [] and kube.applied == []
