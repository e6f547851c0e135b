"""The operator-wide rollout limit as the children step sees it: a new pod template waits for a
slot, while the StatefulSet keeps following membership changes."""

from __future__ import annotations

import dataclasses

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.reconcile.children import TEMPLATE_FINGERPRINT_ANNOTATION
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.plan import Apply, plan, plan_steps

from tests.unit.operator.reconcile.builders import (
    SETTINGS,
    at,
    cluster,
    condition,
    converge,
    execute,
    healthy_view,
    pods,
    rolled_out,
)

STS = ChildKey("StatefulSet", "demo")
# An operator upgrade that changes the member image re-renders every cluster's template.
AFTER = OperatorSettings(pyetcd_image="registry.example/pyetcd-new", max_concurrent_rollouts=2)


def sts_applies(actions: list[object]) -> list[Apply]:
    return [a for a in actions if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"]


def test_a_new_template_with_a_slot_is_a_rollout() -> None:
    desired = cluster()
    _, observed, _ = converge(
        desired, Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view())
    )
    steps = plan_steps(desired, observed, AFTER)
    assert steps is not None and steps.decided.rollout
    (apply,) = sts_applies(list(steps.actions))
    container = apply.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.example/pyetcd-new:")


def test_without_a_slot_the_template_waits_and_says_so() -> None:
    desired = cluster()
    _, observed, _ = converge(
        desired, Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view())
    )
    queued = dataclasses.replace(observed, rollout_slot=False)
    steps = plan_steps(desired, queued, AFTER)
    assert steps is not None and not steps.decided.rollout
    assert sts_applies(list(steps.actions)) == []  # the live template is kept: nothing to apply
    actions = plan(desired, queued, AFTER, at(100))
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "RolloutQueued")
    assert "at most 2 at once" in progressing["message"]


def test_a_queued_cluster_still_follows_its_membership() -> None:
    """While its template waits, a replica change still reaches the StatefulSet, with the live
    template (and its fingerprint), so no member restarts."""
    desired = cluster(replicas=3)
    _, observed, _ = converge(
        desired, Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view())
    )
    live = observed.children[STS]
    shrunk = dataclasses.replace(
        observed, rollout_slot=False, etcd=healthy_view(3), statefulset=rolled_out(3)
    )
    children = dict(shrunk.children)
    drifted = dict(live)
    drifted["spec"] = {**live["spec"], "replicas": 2}  # someone scaled it by hand
    children[STS] = drifted
    shrunk = dataclasses.replace(shrunk, children=children)

    steps = plan_steps(desired, shrunk, AFTER)
    assert steps is not None
    (apply,) = sts_applies(list(steps.actions))
    assert apply.manifest["spec"]["replicas"] == 3
    assert apply.manifest["spec"]["template"] == live["spec"]["template"]
    assert (
        apply.manifest["metadata"]["annotations"][TEMPLATE_FINGERPRINT_ANNOTATION]
        == live["metadata"]["annotations"][TEMPLATE_FINGERPRINT_ANNOTATION]
    )
    # Once the slot comes, the new template is applied.
    desired2, after = execute(desired, shrunk, list(steps.actions))
    steps = plan_steps(desired2, dataclasses.replace(after, rollout_slot=True), AFTER)
    assert steps is not None and steps.decided.rollout
    (apply,) = sts_applies(list(steps.actions))
    assert apply.manifest["spec"]["template"] != live["spec"]["template"]


def test_replicas_alone_are_no_rollout() -> None:
    desired = cluster(replicas=3)
    _, observed, _ = converge(
        desired, Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view())
    )
    children = dict(observed.children)
    children[STS] = {**children[STS], "spec": {**children[STS]["spec"], "replicas": 1}}
    scaled = dataclasses.replace(observed, children=children, rollout_slot=False)
    steps = plan_steps(desired, scaled, SETTINGS)
    assert steps is not None and not steps.decided.rollout
    (apply,) = sts_applies(list(steps.actions))
    assert apply.manifest["spec"]["replicas"] == 3
