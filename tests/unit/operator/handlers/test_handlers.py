"""The handler layer: parsing kopf bodies, translating API objects into observed state, the
executor, and whole passes of the reconciler against an in-memory Kubernetes API."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest
from etcd_operator import metrics
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.handlers import register
from etcd_operator.handlers.cluster import Reconciler, parse_cluster
from etcd_operator.handlers.execute import execute
from etcd_operator.handlers.kube import resource_path
from etcd_operator.handlers.observe import (
    assemble,
    etcd_view,
    member_endpoints,
    pod_state,
    statefulset_state,
)
from etcd_operator.main import parse_args
from etcd_operator.members import ClusterObservation, MemberObservation
from etcd_operator.reconcile.observed import FINGERPRINT_ANNOTATION, ChildKey, PodState
from etcd_operator.reconcile.plan import Action, Apply, Event, PatchStatus

from tests.unit.operator.handlers.fake_kube import FakeKube

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5)


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
    bad["spec"]["replicas"] = 0
    with pytest.raises(kopf.PermanentError, match="invalid spec"):
        parse_cluster(bad)


# -- translation of API objects -------------------------------------------------------------


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


def test_assemble_reads_fingerprints_bootstrap_state_and_etcd() -> None:
    cm_key = ChildKey("ConfigMap", "demo-bootstrap")
    configmap = {
        "metadata": {"name": "demo-bootstrap", "annotations": {FINGERPRINT_ANNOTATION: "f1"}},
        "data": {"initial-cluster-state": "existing"},
    }
    unannotated = {"metadata": {"name": "demo-peer"}}
    observation = ClusterObservation(
        cluster_id=0xAB,
        members=(
            MemberObservation(
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
        leader_id=1,
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
    assert observed.children == {cm_key: "f1", ChildKey("Service", "demo-peer"): None}
    assert observed.bootstrap_state == "existing"
    assert observed.statefulset is None
    assert observed.etcd == etcd_view(observation)
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


def run_pass(reconciler: Reconciler, obj: dict[str, Any]) -> kopf.Patch:
    patch = kopf.Patch()
    asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, obj)), patch))
    return patch


def test_create_then_resume_applies_once() -> None:
    kube, events = FakeKube(), Events()
    reconciler = Reconciler(SETTINGS, kube, events)
    before = sample("etcd_operator_reconciles_total", result="success")

    patch = run_pass(reconciler, body())

    kinds = [m["kind"] for m in kube.applied]
    assert kinds == ["ConfigMap", "Service", "Service", "PodDisruptionBudget", "StatefulSet"]
    for manifest in kube.applied:
        assert manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
    assert events.posted == [("Normal", "Creating", "creating 3 members running 3.5.17")]
    status = dict(patch["status"])
    assert status["phase"] == "Creating"
    assert list(status)[-1] == "observedGeneration"
    assert sample("etcd_operator_reconciles_total", result="success") == before + 1

    # The operator restarts: the children exist as applied. The StatefulSet exists now, so the
    # pass asks etcd, whose members' DNS names do not resolve here: etcd is unreachable, which
    # is an observation, not a failure.
    kube.applied.clear()
    events.posted.clear()
    second = run_pass(reconciler, body(**status))
    assert kube.applied == []
    assert events.posted == []
    assert second["status"]["phase"] == "Creating"
    assert sample("etcd_operator_cluster_available", namespace="ns", cluster="demo") == 0


def test_a_failed_pass_is_a_temporary_error_and_counted() -> None:
    kube = FakeKube()
    kube.fail_apply_of = "StatefulSet"
    reconciler = Reconciler(SETTINGS, kube, Events())
    before = sample("etcd_operator_reconcile_errors_total", reason="unexpected")

    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as err:
        asyncio.run(reconciler.reconcile(kopf.Body(cast(kopf.RawBody, body())), patch))

    assert err.value.delay == 10.0
    assert "injected failure" in str(err.value)
    assert "status" not in patch
    assert sample("etcd_operator_reconcile_errors_total", reason="unexpected") == before + 1


def test_register_puts_every_entry_point_on_the_registry() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS)
    changing = sorted(h.id for h in registry._changing.get_all_handlers())
    assert changing == ["create", "resume", "update"]
    assert [h.id for h in registry._spawning.get_all_handlers()] == ["status"]
    assert [h.id for h in registry._watching.get_all_handlers()] == ["forget-deleted"]


def test_command_line_and_environment() -> None:
    args = parse_args([], {"ETCD_OPERATOR_NAMESPACES": "a,b", "ETCD_OPERATOR_METRICS_PORT": "9"})
    assert (args.namespace, args.metrics_port, args.standalone) == (["a", "b"], 9, True)
    args = parse_args(
        ["-n", "c", "--no-standalone", "--liveness", ""], {"ETCD_OPERATOR_NAMESPACES": "a"}
    )
    assert (args.namespace, args.standalone, args.liveness) == (["c"], False, "")
