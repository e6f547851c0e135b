"""One reconcile pass as a decision: (desired, observed, settings, now) -> actions. Pure.

The pass is a sequence of small steps in the style of etcd-druid: decide which children to apply,
decide the bootstrap state, compute the status, derive events from the transitions between the
previous status and the new one, and write the status last. The handlers execute the actions in
order; running ``plan`` again on the world those actions produce yields no ``Apply``: the pass
is idempotent, which is what lets it run on every event and on a timer.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    EtcdCluster,
    EtcdClusterStatus,
)
from etcd_operator.components import naming
from etcd_operator.components.bootstrap import BootstrapState, next_state
from etcd_operator.components.children import children
from etcd_operator.reconcile.observed import FINGERPRINT_ANNOTATION, ChildKey, Observed
from etcd_operator.reconcile.status import (
    FALSE,
    TRUE,
    UNKNOWN,
    compute_status,
    formed,
    status_patch,
)

Manifest = dict[str, Any]

EVEN_MEMBERS = "an even number of members tolerates no more failures than one fewer"


@dataclass(frozen=True)
class Apply:
    """Server-side apply of one child manifest (it carries its fingerprint annotation)."""

    manifest: Manifest

    @property
    def key(self) -> ChildKey:
        return key_of(self.manifest)


@dataclass(frozen=True)
class SetBootstrapState:
    """Switch the bootstrap ConfigMap to ``state``; ``manifest`` is the whole ConfigMap to apply."""

    state: BootstrapState
    manifest: Manifest


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the EtcdCluster."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class PatchStatus:
    """A merge patch of the status subresource; always the last action of a pass."""

    status: dict[str, Any]


Action = Apply | SetBootstrapState | Event | PatchStatus


def key_of(manifest: Manifest) -> ChildKey:
    return ChildKey(str(manifest["kind"]), str(manifest["metadata"]["name"]))


def fingerprint(manifest: Manifest) -> str:
    """A stable hash of a manifest without its own fingerprint annotation."""
    body = copy.deepcopy(manifest)
    annotations = body.get("metadata", {}).get("annotations") or {}
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    if not annotations:
        body.get("metadata", {}).pop("annotations", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def with_fingerprint(manifest: Manifest) -> Manifest:
    out = copy.deepcopy(manifest)
    out["metadata"].setdefault("annotations", {})[FINGERPRINT_ANNOTATION] = fingerprint(manifest)
    return out


def desired_children(
    desired: EtcdCluster, settings: OperatorSettings, state: BootstrapState
) -> list[Manifest]:
    """The manifests to apply, in apply order, each annotated with its fingerprint."""
    return [with_fingerprint(m) for m in children(desired, settings, state)]


def _conditions(status: EtcdClusterStatus | None) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions} if status is not None else {}


def _events(
    desired: EtcdCluster,
    observed: Observed,
    old: EtcdClusterStatus | None,
    new: EtcdClusterStatus,
    *,
    flipped: bool,
    updated: list[ChildKey],
) -> list[Event]:
    events: list[Event] = []
    spec = desired.spec
    if not observed.children:
        events.append(
            Event("Normal", "Creating", f"creating {spec.replicas} members running {spec.version}")
        )
    generation = desired.metadata.get("generation")
    if spec.replicas % 2 == 0 and (old is None or old.observedGeneration != generation):
        events.append(Event("Warning", "EvenMembers", f"{spec.replicas} members: {EVEN_MEMBERS}"))
    events.extend(
        Event("Normal", "Updated", f"applied the changed {key.kind} {key.name}") for key in updated
    )
    if flipped:
        events.append(
            Event(
                "Normal",
                "ClusterFormed",
                f"all {spec.replicas} members joined; new members now join the existing cluster",
            )
        )

    if observed.etcd is not None:
        # Member health transitions only from etcd's own view: pod readiness alone would flap
        # events whenever the operator loses its connection to etcd.
        before = {m.name: m for m in old.members} if old is not None else {}
        for member in new.members:
            prior = before.get(member.name)
            if member.healthy and (prior is None or not prior.healthy):
                events.append(Event("Normal", "MemberHealthy", f"member {member.name} is healthy"))
            elif not member.healthy and prior is not None and prior.healthy:
                events.append(
                    Event("Warning", "MemberUnhealthy", f"member {member.name} is unhealthy")
                )
        if new.leader is not None and new.leader != (old.leader if old else None):
            was = old.leader if old is not None and old.leader else "none"
            events.append(Event("Normal", "LeaderChanged", f"leader is {new.leader} (was {was})"))

    before_c, after_c = _conditions(old), _conditions(new)
    available, was_available = (
        after_c[ConditionType.AVAILABLE],
        before_c.get(ConditionType.AVAILABLE),
    )
    if available.status == TRUE and (was_available is None or was_available.status != TRUE):
        events.append(Event("Normal", "Available", available.message))
    elif available.status != TRUE and was_available is not None and was_available.status == TRUE:
        events.append(Event("Warning", "Unavailable", f"{available.reason}: {available.message}"))
    degraded, was_degraded = after_c[ConditionType.DEGRADED], before_c.get(ConditionType.DEGRADED)
    prior_status = was_degraded.status if was_degraded is not None else FALSE
    if degraded.status != prior_status:
        if degraded.status == TRUE:
            events.append(Event("Warning", "Degraded", f"{degraded.reason}: {degraded.message}"))
        elif degraded.status == UNKNOWN:
            events.append(Event("Warning", degraded.reason, degraded.message))
        elif was_degraded is not None:
            events.append(Event("Normal", "Recovered", degraded.message))
    return events


def plan(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, now: datetime
) -> list[Action]:
    """The actions of one reconcile pass, in execution order; ``PatchStatus`` comes last."""
    if desired.metadata.get("deletionTimestamp"):
        # Owner references let the garbage collector delete the children; nothing to do.
        return []

    # Step 1: formation and the bootstrap state (monotonic: never back to "new").
    formed_now = formed(desired, observed.etcd)
    state = next_state(observed.bootstrap_state, formed=formed_now)
    has_formed = state == BootstrapState.EXISTING
    bootstrap_key = ChildKey("ConfigMap", naming.bootstrap_configmap_name(desired.name))

    # Step 2: the children whose fingerprint differs from what we applied last.
    actions: list[Action] = []
    updated: list[ChildKey] = []
    flipped = False
    for manifest in desired_children(desired, settings, state):
        key = key_of(manifest)
        exists = key in observed.children
        wanted = manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
        if (
            key == bootstrap_key
            and exists
            and state == BootstrapState.EXISTING
            and observed.bootstrap_state != BootstrapState.EXISTING
        ):
            actions.append(SetBootstrapState(state, manifest))
            flipped = True
        elif not exists or observed.children[key] != wanted:
            actions.append(Apply(manifest))
            if exists:
                updated.append(key)

    # Step 3: status and the events of its transitions; the status goes last.
    applying_spec = any(k.kind == "StatefulSet" for k in updated)
    status = compute_status(
        desired,
        observed,
        now,
        has_formed=has_formed,
        applying_spec=applying_spec,
        timeout_seconds=settings.etcd_timeout_seconds,
    )
    actions.extend(
        _events(desired, observed, desired.status, status, flipped=flipped, updated=updated)
    )
    actions.append(PatchStatus(status_patch(status)))
    return actions
