"""The children step: apply every child that differs from what we want, every pass. Pure.

A child is applied when it does not exist, when its fingerprint annotation differs from the
manifest's (we changed what we apply, including fields we stopped setting), or when it drifted:
someone changed a field we set (``kubectl scale statefulset``, ``kubectl edit``; see ``drift``).
So every pass converges the children to the desired state, whatever happened behind the
operator's back, and a pass on a converged cluster applies nothing. A child the spec asks for
only sometimes (the NetworkPolicy) is deleted when the spec no longer wants it, if this cluster
owns it.

Changes to the StatefulSet's pod template restart members. They start only when the
operator-wide rollout limit gives this cluster a slot (``Observed.rollout_slot``), so an operator
upgrade or a change of the operator's member settings, which re-render every cluster's template,
rolls a bounded number of clusters at a time. While a cluster waits for its slot, its StatefulSet
keeps the live template and still follows membership changes (replicas). The same hold applies
while members still run a minor version older than the one before ``spec.version`` (two minor
upgrades asked for in a row): Progressing False, ``VersionSkew``, until the first one finished.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, RestoredFrom
from etcd_operator.api.versions import skew
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.children import children, optional
from etcd_operator.reconcile.actions import (
    Action,
    Apply,
    DeleteChild,
    Event,
    Manifest,
    SetBootstrapState,
    key_of,
)
from etcd_operator.reconcile.drift import drifted, holds
from etcd_operator.reconcile.observed import FINGERPRINT_ANNOTATION, ChildKey, Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress
from etcd_operator.reconcile.restore import RESTORE

# The StatefulSet's annotation with the fingerprint of the pod template we applied: tells a
# change that restarts members from one that does not (replicas).
TEMPLATE_FINGERPRINT_ANNOTATION = "etcd.pyetcd.io/template-fingerprint"
ROLLOUT_QUEUED = "RolloutQueued"
VERSION_SKEW = "VersionSkew"


def fingerprint(manifest: Manifest) -> str:
    """A stable hash of a manifest without its own fingerprint annotation."""
    body = copy.deepcopy(manifest)
    annotations = body.get("metadata", {}).get("annotations") or {}
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    if not annotations:
        body.get("metadata", {}).pop("annotations", None)
    return _digest(body)


def _digest(body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def with_fingerprint(manifest: Manifest) -> Manifest:
    out = copy.deepcopy(manifest)
    annotations = out["metadata"].setdefault("annotations", {})
    if out["kind"] == "StatefulSet":
        annotations[TEMPLATE_FINGERPRINT_ANNOTATION] = _digest(out["spec"]["template"])
    annotations[FINGERPRINT_ANNOTATION] = fingerprint(out)
    return out


def desired_children(
    desired: EtcdCluster,
    settings: OperatorSettings,
    state: BootstrapState,
    *,
    replicas: int | None = None,
    restore: RestoredFrom | None = None,
    force_new_cluster: str | None = None,
    restore_for_recovery: str | None = None,
    hibernate: bool = False,
) -> list[Manifest]:
    """The manifests to apply, in apply order, each annotated with its fingerprint;
    ``replicas`` overrides ``spec.replicas`` (the members etcd lists, while scaling);
    ``restore`` the backup a cluster created from one starts from; ``force_new_cluster`` the
    survivor of a quorum-loss recovery, ``restore_for_recovery`` a rebuild from a backup."""
    rendered = children(
        desired,
        settings,
        state,
        replicas=replicas,
        restore=restore,
        force_new_cluster=force_new_cluster,
        restore_for_recovery=restore_for_recovery,
        hibernate=hibernate,
    )
    return [with_fingerprint(m) for m in rendered]


def _annotation(obj: Mapping[str, Any], key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def template_changes(manifest: Manifest, live: Mapping[str, Any]) -> bool:
    """Applying ``manifest`` changes the live StatefulSet's pod template (members restart)."""
    live_template = (live.get("spec") or {}).get("template")
    if not holds(live_template, manifest["spec"]["template"]):
        return True
    applied = _annotation(live, TEMPLATE_FINGERPRINT_ANNOTATION)
    # Unannotated (applied by an older operator): the fields alone tell.
    return applied is not None and applied != _annotation(manifest, TEMPLATE_FINGERPRINT_ANNOTATION)


def keep_live_template(manifest: Manifest, live: Mapping[str, Any]) -> Manifest:
    """``manifest`` with the live pod template (and its fingerprint): the StatefulSet follows
    everything else (replicas) while its rollout waits for a slot."""
    held = copy.deepcopy(manifest)
    held["spec"]["template"] = copy.deepcopy(live["spec"]["template"])
    annotations = held["metadata"]["annotations"]
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    live_fingerprint = _annotation(live, TEMPLATE_FINGERPRINT_ANNOTATION)
    if live_fingerprint is not None:
        annotations[TEMPLATE_FINGERPRINT_ANNOTATION] = live_fingerprint
    else:
        annotations.pop(TEMPLATE_FINGERPRINT_ANNOTATION, None)
    return with_fingerprint_only(held)


def with_fingerprint_only(manifest: Manifest) -> Manifest:
    out = copy.deepcopy(manifest)
    out["metadata"].setdefault("annotations", {})[FINGERPRINT_ANNOTATION] = fingerprint(out)
    return out


def _version_skew(desired: EtcdCluster, observed: Observed) -> str | None:
    """Why the members may not get ``spec.version`` yet (two minor upgrades in a row), from the
    versions etcd reports; ``None`` when they may, or when no member answers to tell."""
    if observed.etcd is None:
        return None
    running = [m.version for m in observed.etcd.members if m.version]
    return skew(desired.spec.version, running)


def owned_by(obj: Mapping[str, Any], cluster: EtcdCluster) -> bool:
    """``obj`` has ``cluster`` as its controller (an object of the same name that someone else
    made is not the operator's to delete)."""
    uid = cluster.metadata.get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def unwanted(desired: EtcdCluster, observed: Observed, wanted: set[ChildKey]) -> list[Action]:
    """Deletions of the optional children that exist, are ours, and are no longer wanted, each
    with a Normal event (the user turned something off; the event says it took effect)."""
    out: list[Action] = []
    for api_version, kind, name in optional(desired):
        live = observed.children.get(ChildKey(kind, name))
        if ChildKey(kind, name) not in wanted and live is not None and owned_by(live, desired):
            out.append(DeleteChild(api_version, kind, name, desired.namespace))
            out.append(Event("Normal", f"{kind}Deleted", f"{kind} {name} is no longer wanted"))
    return out


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    actions: list[Action] = []
    updated: list[ChildKey] = []
    drift: list[tuple[ChildKey, tuple[str, ...]]] = []
    rollout = False
    queued = False
    held = _version_skew(desired, observed)
    skewed = False
    restore = decided.last_note(RESTORE)
    rendered_children = desired_children(
        desired,
        settings,
        decided.bootstrap,
        replicas=decided.replicas,
        restore=restore if isinstance(restore, RestoredFrom) else None,
        force_new_cluster=decided.force_new_cluster,
        restore_for_recovery=decided.restore_for_recovery,
        hibernate=decided.hibernating,
    )
    for rendered in rendered_children:
        manifest, key = rendered, key_of(rendered)
        live = observed.children.get(key)
        if live is None:
            actions.append(Apply(manifest))
            continue
        if key.kind == "ConfigMap" and decided.flipped:
            actions.append(SetBootstrapState(decided.bootstrap, manifest))
            continue
        if key.kind == "StatefulSet" and template_changes(manifest, live):
            if held is not None:
                skewed = True
                manifest = keep_live_template(manifest, live)
            elif not observed.rollout_slot:
                queued = True
                manifest = keep_live_template(manifest, live)
            else:
                rollout = True
        wanted = manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
        if observed.fingerprint(key) != wanted:
            actions.append(Apply(manifest))
            updated.append(key)
        elif paths := drifted(manifest, live):
            actions.append(Apply(manifest))
            drift.append((key, tuple(paths)))
    actions.extend(unwanted(desired, observed, {key_of(m) for m in rendered_children}))
    decided = dataclasses.replace(
        decided, updated=tuple(updated), drifted=tuple(drift), rollout=rollout
    )
    if skewed and held is not None:
        decided = with_progress(decided, Progress(VERSION_SKEW, held, active=False))
    if queued:
        decided = with_progress(
            decided,
            Progress(
                ROLLOUT_QUEUED,
                "the members' new pod template waits for other clusters to finish rolling "
                f"(at most {settings.max_concurrent_rollouts} at once)",
            ),
        )
    return StepResult(actions=tuple(actions), decided=decided)
