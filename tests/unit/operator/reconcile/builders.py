"""Test-object builders for the reconcile tables: clusters, etcd views, and a world that applies
the planned actions the way the executor would (without any server): Kubernetes writes, etcd
membership changes, and (``settle``) what the StatefulSet controller, the kubelet and etcd do
next."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from etcd_operator.api.etcddefrag import EtcdDefragStatus
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.bootstrap import (
    KEY_FORCE_NEW_CLUSTER,
    KEY_INITIAL_CLUSTER,
    KEY_INITIAL_CLUSTER_STATE,
    KEY_RESTORE_FOR_RECOVERY,
)
from etcd_operator.reconcile.actions import (
    AddRootRole,
    AddRootUser,
    AuthAction,
    ChangeRootPassword,
    CreateRootSecret,
    DeleteChild,
    DeletePod,
    EnableAuth,
    GrantRootRole,
    PatchOperationStatus,
)
from etcd_operator.reconcile.observed import (
    AuthView,
    ChildKey,
    EtcdMember,
    EtcdView,
    Observed,
    PodState,
    RootSecretFacts,
    StatefulSetState,
)
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
    SetBootstrapState,
    key_of,
    plan,
)

SETTINGS = OperatorSettings()
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CLUSTER_ID = 0xCAFE
NAME = "demo"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def cluster(
    *, replicas: int = 3, version: str = "3.5.17", generation: int = 1, **spec: Any
) -> EtcdCluster:
    return EtcdCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "uid-1", "generation": generation},
            "spec": {"replicas": replicas, "version": version, **spec},
        }
    )


def member(
    ordinal: int, *, healthy: bool = True, leader: bool = False, version: str = "3.5.17"
) -> EtcdMember:
    name = f"{NAME}-{ordinal}"
    host = f"{name}.{NAME}-peer.ns.svc.cluster.local"
    return EtcdMember(
        id=0x100 + ordinal,
        name=name,
        peer_urls=(f"http://{host}:2380",),
        client_urls=(f"http://{host}:2379",),
        healthy=healthy,
        leader=leader,
        version=version,
        db_size=20480,
        revision=7,
        error=None if healthy else "context deadline exceeded",
    )


def view(*members: EtcdMember, alarms: tuple[str, ...] = ()) -> EtcdView:
    return EtcdView(cluster_id=CLUSTER_ID, members=members, alarms=alarms)


def healthy_view(replicas: int = 3, leader: int = 0) -> EtcdView:
    return view(*(member(i, leader=i == leader) for i in range(replicas)))


def pods(replicas: int = 3, ready: bool = True) -> tuple[PodState, ...]:
    return tuple(
        PodState(f"{NAME}-{i}", ready=ready, phase="Running", node=f"node-{i}")
        for i in range(replicas)
    )


def rolled_out(replicas: int = 3) -> StatefulSetState:
    return StatefulSetState(
        generation=1,
        observed_generation=1,
        replicas=replicas,
        ready_replicas=replicas,
        updated_replicas=replicas,
        current_revision="r1",
        update_revision="r1",
    )


def applies(actions: list[Action]) -> list[Apply]:
    return [a for a in actions if isinstance(a, Apply)]


def applied_keys(actions: list[Action]) -> list[ChildKey]:
    return [a.key for a in applies(actions)]


def events(actions: list[Action]) -> list[Event]:
    return [a for a in actions if isinstance(a, Event)]


def reasons(actions: list[Action]) -> list[str]:
    return [e.reason for e in events(actions)]


def flips(actions: list[Action]) -> list[SetBootstrapState]:
    return [a for a in actions if isinstance(a, SetBootstrapState)]


def status_of(actions: list[Action]) -> dict[str, Any]:
    last = actions[-1]
    assert isinstance(last, PatchStatus), f"the last action is {last!r}, not PatchStatus"
    return last.status


def condition(actions: list[Action], type_: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in status_of(actions)["conditions"] if c["type"] == type_
    ]
    assert len(found) == 1, found
    return found[0]


def _ordinal(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _membership(etcd: EtcdView, action: Action, *, in_sync: bool) -> EtcdView:
    """etcd's answer to one membership action (idempotent, as ``members.membership`` is)."""
    members = list(etcd.members)
    if isinstance(action, AddMember):
        if not any(action.peer_url in m.peer_urls for m in members):
            unstarted = EtcdMember(
                id=0x100 + _ordinal(action.name),
                name="",
                peer_urls=(action.peer_url,),
                learner=True,
                error="member has not started (no client URL)",
            )
            members.append(unstarted)
    elif isinstance(action, PromoteMember):
        if in_sync:
            members = [
                dataclasses.replace(m, learner=False) if m.id == action.member_id else m
                for m in members
            ]
    elif isinstance(action, MoveLeader):
        if any(m.id == action.from_id and m.leader for m in members):
            members = [dataclasses.replace(m, leader=m.id == action.to_id) for m in members]
    elif isinstance(action, RemoveMember):
        members = [m for m in members if m.id != action.member_id]
    return dataclasses.replace(etcd, members=tuple(members))


# The password the executor would have made for the generated root Secret.
GENERATED_PASSWORD = "generated-password"


def auth_after(view: AuthView, actions: list[Action]) -> AuthView:
    """etcd's auth after ``actions``, as etcd applies them (``auth enable`` only once user root
    has role root)."""
    for action in actions:
        roles = view.root_user_roles
        match action:
            case AddRootUser():
                view = dataclasses.replace(view, root_user_roles=roles or ())
            case ChangeRootPassword():
                assert roles is not None, "etcd: user name not found"
            case AddRootRole():
                view = dataclasses.replace(view, root_role=True)
            case GrantRootRole():
                assert view.root_role and roles is not None, "etcd: role or user not found"
                view = dataclasses.replace(view, root_user_roles=(*roles, "root"))
            case EnableAuth():
                assert roles is not None and "root" in roles, "etcd refuses auth enable"
                view = dataclasses.replace(view, enabled=True, credentials_work=True)
    return view


def execute(
    desired: EtcdCluster, observed: Observed, actions: list[Action], *, in_sync: bool = True
) -> tuple[EtcdCluster, Observed]:
    """The world after the executor ran ``actions``: children carry the applied fingerprints,
    the ConfigMap the applied state, the StatefulSet the applied replicas, etcd the membership
    changes, the cluster the patched status. ``in_sync=False``: etcd refuses to promote."""
    children = dict(observed.children)
    bootstrap = observed.bootstrap_state
    rendered = observed.rendered_members
    forced = observed.force_new_cluster
    restoring = observed.restore_for_recovery
    status = desired.status
    etcd = observed.etcd
    sts = observed.statefulset
    pvcs = list(observed.pvcs)
    pod_list = list(observed.pods)
    requests = list(observed.defrag_requests)
    root_secret, root_credentials = observed.root_secret, observed.root_credentials
    auth_view = observed.auth
    if auth_view is not None:
        auth_view = auth_after(
            auth_view,
            [a for a in actions if isinstance(a, AuthAction)],
        )
    for action in actions:
        if isinstance(action, CreateRootSecret):
            root_secret = RootSecretFacts(action.manifest["metadata"]["name"], exists=True)
            root_credentials = RootCredentials("root", GENERATED_PASSWORD)
        elif isinstance(action, Apply | SetBootstrapState):
            manifest = action.manifest
            # The live object is what was applied (the API server adds fields of its own).
            children[key_of(manifest)] = manifest
            if manifest["kind"] == "ConfigMap":
                bootstrap = manifest["data"][KEY_INITIAL_CLUSTER_STATE]
                rendered = len(manifest["data"][KEY_INITIAL_CLUSTER].split(","))
                forced = manifest["data"].get(KEY_FORCE_NEW_CLUSTER)
                restoring = manifest["data"].get(KEY_RESTORE_FOR_RECOVERY)
            if manifest["kind"] == "StatefulSet" and sts is not None:
                sts = dataclasses.replace(sts, replicas=manifest["spec"]["replicas"])
        elif isinstance(action, AddMember | PromoteMember | MoveLeader | RemoveMember):
            assert etcd is not None, f"{action} planned without an etcd view"
            etcd = _membership(etcd, action, in_sync=in_sync)
        elif isinstance(action, DeletePVC):
            pvcs = [p for p in pvcs if p != action.name]
        elif isinstance(action, DeletePod):
            pod_list = [p for p in pod_list if p.name != action.name]
        elif isinstance(action, DeleteChild):
            children.pop(ChildKey(action.kind, action.name), None)
        elif isinstance(action, PatchStatus):
            status = EtcdClusterStatus.model_validate(action.status)
        elif isinstance(action, PatchOperationStatus) and action.kind == "EtcdDefrag":
            requests = [
                r.model_copy(update={"status": EtcdDefragStatus.model_validate(action.status)})
                if r.name == action.name
                else r
                for r in requests
            ]
    return (
        desired.model_copy(update={"status": status}),
        dataclasses.replace(
            observed,
            children=children,
            bootstrap_state=bootstrap,
            rendered_members=rendered,
            force_new_cluster=forced,
            restore_for_recovery=restoring,
            etcd=etcd,
            statefulset=sts,
            pvcs=tuple(pvcs),
            pods=tuple(pod_list),
            defrag_requests=tuple(requests),
            root_secret=root_secret,
            root_credentials=root_credentials,
            auth=auth_view,
        ),
    )


def settle(observed: Observed, *, start_learners: bool = True) -> Observed:
    """What happens between two passes: the StatefulSet controller makes the pods match its
    replicas (creating claims, never deleting them: whenScaled Retain), a removed member's
    pod goes away, and a learner whose pod runs starts and catches up."""
    sts = observed.statefulset
    if sts is None:
        return observed
    replicas = sts.replicas
    pod_list = pods(replicas)
    pvcs = sorted(set(observed.pvcs) | {f"data-{NAME}-{i}" for i in range(replicas)})
    etcd = observed.etcd
    if etcd is not None and start_learners:
        started = []
        for m in etcd.members:
            index = _ordinal(m.peer_urls[0].split("//", 1)[1].split(".", 1)[0])
            unstarted = m.learner and not m.name and index < replicas
            started.append(dataclasses.replace(member(index), learner=True) if unstarted else m)
        etcd = dataclasses.replace(etcd, members=tuple(started))
    return dataclasses.replace(
        observed,
        pods=pod_list,
        pvcs=tuple(pvcs),
        statefulset=rolled_out(replicas),
        etcd=etcd,
    )


def converge(
    desired: EtcdCluster, observed: Observed, *, start: int = 0, passes: int = 30
) -> tuple[EtcdCluster, Observed, list[list[Action]]]:
    """Plan, execute and settle until a pass changes nothing in etcd or Kubernetes."""
    history: list[list[Action]] = []
    for step in range(passes):
        actions = plan(desired, observed, SETTINGS, at(start + step))
        history.append(actions)
        desired, observed = execute(desired, observed, actions)
        observed = settle(observed)
        if all(isinstance(a, Event | PatchStatus) for a in actions):
            return desired, observed, history
    raise AssertionError(f"no convergence in {passes} passes; last: {history[-1]}")


def formed(replicas: int = 3, leader: int = 0, **spec: Any) -> tuple[EtcdCluster, Observed]:
    """A running cluster of ``replicas`` members whose last pass wrote status and children."""
    desired = cluster(replicas=replicas, **spec)
    observed = Observed(
        pods=pods(replicas),
        statefulset=rolled_out(replicas),
        etcd=healthy_view(replicas, leader=leader),
        pvcs=tuple(f"data-{NAME}-{i}" for i in range(replicas)),
    )
    desired, observed, _ = converge(desired, observed)
    return desired, observed
