"""Drift: the children step applies again whatever was changed behind the operator's back, and
nothing when the live objects only carry what the API server adds."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from etcd_operator.reconcile.drift import drifted, holds, quantity
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.plan import Apply, plan

from tests.unit.operator.reconcile.builders import (
    SETTINGS,
    applied_keys,
    at,
    cluster,
    condition,
    converge,
    events,
    healthy_view,
    pods,
    rolled_out,
)

STS = ChildKey("StatefulSet", "demo")


def running() -> tuple[Any, Observed]:
    desired, observed, _ = converge(
        cluster(), Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view())
    )
    return desired, observed


def edit(observed: Observed, key: ChildKey, change: Any) -> Observed:
    children = dict(observed.children)
    live = copy.deepcopy(dict(children[key]))
    change(live)
    children[key] = live
    return dataclasses.replace(observed, children=children)


def test_kubectl_scale_statefulset_is_scaled_back() -> None:
    """`kubectl scale statefulset demo --replicas=1` behind the operator's back: the next pass
    applies the StatefulSet again (the fingerprint alone would say nothing changed)."""
    desired, observed = running()

    def scale_to_one(sts: dict[str, Any]) -> None:
        sts["spec"]["replicas"] = 1

    actions = plan(desired, edit(observed, STS, scale_to_one), SETTINGS, at(100))

    assert applied_keys(actions) == [STS]
    (apply,) = [a for a in actions if isinstance(a, Apply)]
    assert apply.manifest["spec"]["replicas"] == 3
    (warning,) = [e for e in events(actions) if e.reason == "DriftCorrected"]
    assert warning.type == "Warning"
    assert "spec.replicas" in warning.message


def test_a_statefulset_scaled_to_nothing_comes_back_while_etcd_cannot_answer() -> None:
    """With every member gone, etcd cannot say what its membership is; the operator keeps the
    member count it rendered last (the bootstrap ConfigMap), not the hand-made zero."""
    desired, observed = running()

    def scale_to_zero(sts: dict[str, Any]) -> None:
        sts["spec"]["replicas"] = 0

    gone = dataclasses.replace(edit(observed, STS, scale_to_zero), etcd=None, pods=())
    (apply,) = [a for a in plan(desired, gone, SETTINGS, at(100)) if isinstance(a, Apply)]
    assert (apply.manifest["kind"], apply.manifest["spec"]["replicas"]) == ("StatefulSet", 3)


def test_a_label_removed_by_hand_is_put_back() -> None:
    desired, observed = running()
    key = ChildKey("Service", "demo-client")

    def unlabel(svc: dict[str, Any]) -> None:
        del svc["metadata"]["labels"]["app.kubernetes.io/managed-by"]

    assert applied_keys(plan(desired, edit(observed, key, unlabel), SETTINGS, at(100))) == [key]


def test_what_the_api_server_adds_is_not_drift() -> None:
    """Defaulted fields, fields of other managers, canonical quantities and dropped empty maps
    leave the children as they are: a converged cluster applies nothing."""
    desired, observed = running()

    def as_stored(sts: dict[str, Any]) -> None:
        sts["metadata"]["uid"] = "u"
        sts["metadata"]["managedFields"] = [{"manager": "etcd-operator"}]
        sts["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
        sts["spec"]["revisionHistoryLimit"] = 10
        pod = sts["spec"]["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
        for volume in pod["volumes"]:
            if "emptyDir" in volume:
                volume["emptyDir"]["sizeLimit"] = "64Mi"
        sts["status"] = {"replicas": 3}

    def service_as_stored(svc: dict[str, Any]) -> None:
        assert svc["spec"]["publishNotReadyAddresses"] is False
        del svc["spec"]["publishNotReadyAddresses"]  # omitempty: false is not returned
        svc["spec"]["clusterIP"] = "10.0.0.7"
        svc["spec"]["ports"][0]["nodePort"] = 0

    stored = edit(observed, STS, as_stored)
    stored = edit(stored, ChildKey("Service", "demo-client"), service_as_stored)
    actions = plan(desired, stored, SETTINGS, at(100))
    assert applied_keys(actions) == []
    assert condition(actions, "Progressing")["reason"] == "Reconciled"


@pytest.mark.parametrize(
    ("want", "live"),
    [
        ("500m", "0.5"),
        ("1024Mi", "1Gi"),
        (1, "1"),
        ("1e3", "1k"),
        ({"a": {}}, {}),
        ({"publishNotReadyAddresses": False}, {}),
        ({"n": 0, "s": ""}, {}),
        ({"a": []}, {"b": 1}),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}),
        ([{"a": 1}], [{"a": 1, "b": 2}]),
    ],
)
def test_held(want: Any, live: Any) -> None:
    assert holds(live, want)


@pytest.mark.parametrize(
    ("want", "live"),
    [
        ("500m", "0.6"),
        (3, 1),
        ("a", "b"),
        (True, "true"),
        ({"a": 1}, {}),
        ({"a": True}, {}),
        ({"a": False}, {"a": True}),
        ([{"a": 1}], [{"a": 1}, {"a": 2}]),
        ([1, 2], [2, 1]),
    ],
)
def test_not_held(want: Any, live: Any) -> None:
    assert not holds(live, want)


def test_quantities_and_paths() -> None:
    assert quantity("1Ki") == 1024
    assert quantity("100m") == quantity("0.1")
    assert quantity("lots") is None
    assert quantity(True) is None
    manifest = {"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 3}}
    live = {"metadata": {"name": "x", "labels": {}}, "spec": {"replicas": 2}}
    assert drifted(manifest, live) == ["metadata.labels", "spec.replicas"]
