"""spec.networkPolicy through whole passes: applied, kept, reported, and deleted when turned off."""

from __future__ import annotations

import copy
import dataclasses

from etcd_operator.api.network import NetworkPolicySpec
from etcd_operator.reconcile.actions import DeleteChild
from etcd_operator.reconcile.observed import ChildKey
from etcd_operator.reconcile.plan import Apply, plan

from tests.unit.operator.reconcile.builders import (
    SETTINGS,
    at,
    converge,
    events,
    execute,
    formed,
    status_of,
)

POLICY = ChildKey("NetworkPolicy", "demo")


def test_enabled_policy_is_applied_once_and_reported() -> None:
    desired, observed = formed(networkPolicy={"enabled": True})
    assert POLICY in observed.children
    assert desired.status is not None and desired.status.networkPolicy == "demo"
    # Converged: a further pass applies nothing.
    actions = plan(desired, observed, SETTINGS, at(100))
    assert not [a for a in actions if isinstance(a, Apply | DeleteChild)]


def test_a_policy_edited_by_hand_is_put_back() -> None:
    desired, observed = formed(networkPolicy={"enabled": True})
    live = copy.deepcopy(dict(observed.children[POLICY]))
    live["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]  # peers opened to the namespace
    edited = dataclasses.replace(observed, children={**observed.children, POLICY: live})
    actions = plan(desired, edited, SETTINGS, at(100))
    (apply,) = [a for a in actions if isinstance(a, Apply)]
    assert apply.manifest["kind"] == "NetworkPolicy"
    assert apply.manifest["spec"]["ingress"][0]["from"] != [{"podSelector": {}}]


def test_turned_off_the_policy_is_deleted_with_an_event() -> None:
    desired, observed = formed(networkPolicy={"enabled": True})
    off = desired.model_copy(
        update={
            "spec": desired.spec.model_copy(
                update={"networkPolicy": NetworkPolicySpec(enabled=False)}
            )
        }
    )
    actions = plan(off, observed, SETTINGS, at(100))
    assert [a for a in actions if isinstance(a, DeleteChild)] == [
        DeleteChild("networking.k8s.io/v1", "NetworkPolicy", "demo", "ns")
    ]
    assert "NetworkPolicyDeleted" in [e.reason for e in events(actions)]
    assert status_of(actions)["networkPolicy"] is None
    off, after = execute(off, observed, actions)
    assert POLICY not in after.children
    _, _, history = converge(off, after, start=200)
    assert not [a for h in history for a in h if isinstance(a, DeleteChild)]


def test_a_policy_someone_else_owns_is_left_alone() -> None:
    desired, observed = formed()  # the operator's default: off
    theirs = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"podSelector": {}},
    }
    with_theirs = dataclasses.replace(observed, children={**observed.children, POLICY: theirs})
    actions = plan(desired, with_theirs, SETTINGS, at(100))
    assert not [a for a in actions if isinstance(a, DeleteChild)]


def test_off_by_default_nothing_is_applied() -> None:
    desired, observed = formed()
    assert POLICY not in observed.children
    assert desired.status is not None and desired.status.networkPolicy is None
