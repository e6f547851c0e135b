"""The observed state of one EtcdCluster: what the runtime saw in Kubernetes and in etcd.

Plain immutable data with no behaviour beyond lookups, built by ``etcd_operator.runtime.observe``
from API responses and by ``etcd_operator.members.observe`` from etcd's answers (``EtcdMember``
is the one type of a member as observed: etcd's member list, status and health together), and
read by the reconcile steps and the condition checkers. Keeping these types free of client
objects is what lets the decisions be tested as tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.etcddefrag import EtcdDefrag
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.pki import CertificateFacts
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.reconcile.backup_records import BackupRecord

# The annotation each applied child carries: the fingerprint of the manifest we applied. Comparing
# it with the fingerprint of the manifest we would apply now tells whether to apply, without
# diffing against fields that the API server and other controllers add.
FINGERPRINT_ANNOTATION = "etcd.pyetcd.io/applied-fingerprint"

Json = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class ChildKey:
    """A child object by kind and name (all children live in the cluster's namespace)."""

    kind: str
    name: str


@dataclass(frozen=True)
class PodState:
    """One member pod as the kubelet (and the scheduler) report it.

    ``unschedulable``: the scheduler's message while the pod is Pending because no node fits it
    (condition ``PodScheduled`` False with reason ``Unschedulable``), else ``None``.
    ``restore_failed``: the termination message of its ``restore`` init container when that
    last exited non-zero (a cluster created from a backup), else ``None``.
    ``exit_message``: the termination message (the end of its log, ``FallbackToLogsOnError``)
    of the member container's last run when that exited non-zero, else ``None``; the evidence
    of a member that stops because its data was lost. ``init_failed``: the same of its
    ``member-init`` container (the lost-data refusal; a recovery that could not be done).
    ``terminating``: the pod is being deleted. ``revision``: the StatefulSet revision it was
    made from (its ``controller-revision-hash`` label); ``ready_since``: when it last turned
    Ready (``None``: not Ready, or not known).
    ``node_lost_since``: since when the pod's node has not been Ready (``None``: Ready, or not
    looked at because the pod is Ready); ``volume_node``: the node its data volume is pinned to
    (a local volume), ``None`` for a network volume or when unknown.
    """

    name: str
    ready: bool
    phase: str = "Pending"
    node: str | None = None
    unschedulable: str | None = None
    restore_failed: str | None = None
    exit_message: str | None = None
    init_failed: str | None = None
    terminating: bool = False
    node_lost_since: datetime | None = None
    volume_node: str | None = None
    revision: str | None = None
    ready_since: datetime | None = None


@dataclass(frozen=True)
class StatefulSetState:
    """The rollout state of the members' StatefulSet (its status subresource)."""

    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    current_revision: str | None = None
    update_revision: str | None = None

    @property
    def rolling(self) -> bool:
        """True while some pod does not run the latest template yet. Counted from the pods
        (``updatedReplicas``): under the ``OnDelete`` strategy the controller never moves
        ``currentRevision`` to the update revision, so the two revisions stay apart."""
        return self.observed_generation < self.generation or self.updated_replicas < self.replicas


@dataclass(frozen=True)
class EtcdMember:
    """One member as etcd reports it (member list + status + health).

    ``raft_term``/``raft_index`` (its commit index)/``raft_applied_index`` come from the
    member's own status (``None`` when it did not answer); ``error`` says why a member is
    unhealthy.
    """

    id: int
    name: str
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    learner: bool = False
    healthy: bool = False
    leader: bool = False
    version: str | None = None
    db_size: int | None = None
    revision: int | None = None
    raft_term: int | None = None
    raft_index: int | None = None
    error: str | None = None
    raft_applied_index: int | None = None
    db_size_in_use: int | None = None

    @property
    def id_hex(self) -> str:
        return f"{self.id:x}"

    @property
    def started(self) -> bool:
        """The member's process has joined: etcd knows its name and client URL (a member that
        was added but never started has neither)."""
        return bool(self.name) and bool(self.client_urls)


@dataclass(frozen=True)
class EtcdView:
    """The etcd side of a cluster, as far as any member answered; ``cluster_version`` is the
    cluster version a member reports (``None``: none said)."""

    cluster_id: int
    members: tuple[EtcdMember, ...]
    alarms: tuple[str, ...] = ()
    cluster_version: str | None = None

    def by_name(self, name: str) -> EtcdMember | None:
        for member in self.members:
            if member.name == name:
                return member
        return None

    @property
    def leader(self) -> EtcdMember | None:
        for member in self.members:
            if member.leader:
                return member
        return None

    @property
    def voters(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if not m.learner)

    @property
    def learners(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if m.learner)


@dataclass(frozen=True)
class AuthView:
    """etcd's auth as the operator saw it. ``enabled``: auth is on. ``credentials_work``: root's
    password from its Secret authenticates (``None``: not known, as with auth off, where etcd
    checks no password, or without a Secret to try). ``root_user_roles``: user root's roles
    (``None``: no such user, or not looked at because the operator cannot get in);
    ``root_role``: role root exists."""

    enabled: bool
    credentials_work: bool | None = None
    root_user_roles: tuple[str, ...] | None = None
    root_role: bool = False


@dataclass(frozen=True)
class RootSecretFacts:
    """The root Secret of ``spec.auth`` as found: ``exists``, and ``problem`` (why it does not
    hold root's credentials; never containing the password)."""

    name: str
    exists: bool
    problem: str | None = None


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile pass knows about the world besides the desired spec.

    ``children`` maps each existing child to the live object, as the API server returned it
    (its fingerprint annotation says what we applied last; its fields show any drift).
    ``bootstrap_state`` is the
    ``initial-cluster-state`` of the live bootstrap ConfigMap (``None`` when absent), and
    ``rendered_members`` the number of members its ``initial-cluster`` lists: the member count the
    operator last rendered the children with, its memory of the membership when etcd cannot be
    asked (the StatefulSet's replicas may have been changed by hand). ``etcd`` is
    ``None`` when no member answered. ``pvcs`` are the names of the cluster's existing
    PersistentVolumeClaims (the StatefulSet keeps them when it scales down).
    ``force_new_cluster`` is the live bootstrap ConfigMap's survivor of a quorum-loss recovery
    (``<pod>:<token>``, ``None`` outside one), ``restore_for_recovery`` its token of a rebuild
    from a backup. ``latest_backup`` is the cluster's newest Succeeded EtcdBackup, looked up
    only while no member answers (what a rebuild from a backup would restore).
    ``membership_unsupported`` is set when, in this
    pass, etcd answered a membership change with
    "not capable" (an engine that cannot change its membership yet): the pass is then planned
    again without membership changes. ``rollout_slot`` is the operator's own state as seen by
    this pass: whether the operator-wide limit of clusters rolling their pods at once lets this
    cluster start (or continue) a rollout now. ``backups`` are the cluster's EtcdBackups (listed
    only when it has ``spec.backup``); ``now`` is when the look was taken, the clock of the
    decisions that depend on time (the backup schedule, retention by age). ``restore_backup`` is
    the EtcdBackup that ``spec.bootstrap.backup.name`` names, while the restore is not resolved.
    ``defrag_requests`` are the EtcdDefrags that name the cluster (not being deleted).
    ``certificates`` are the facts of the TLS Secrets ``spec.tls`` uses, by Secret name (a
    Secret that was not found is not there); ``credentials`` the client certificate the
    operator connected to etcd with (``None`` without client TLS, or when it has none yet).
    ``auth`` is etcd's auth (``None``: not asked, or no member answered); ``root_secret`` the
    root Secret of ``spec.auth`` as found, and ``root_credentials`` what it holds (the user
    and password the operator connects as).
    """

    children: Mapping[ChildKey, Json] = field(default_factory=dict)
    pods: tuple[PodState, ...] = ()
    bootstrap_state: str | None = None
    rendered_members: int | None = None
    statefulset: StatefulSetState | None = None
    etcd: EtcdView | None = None
    pvcs: tuple[str, ...] = ()
    force_new_cluster: str | None = None
    restore_for_recovery: str | None = None
    latest_backup: EtcdBackup | None = None
    membership_unsupported: str | None = None
    rollout_slot: bool = True
    backups: tuple[BackupRecord, ...] = ()
    now: datetime | None = None
    restore_backup: EtcdBackup | None = None
    defrag_requests: tuple[EtcdDefrag, ...] = ()
    certificates: Mapping[str, CertificateFacts] = field(default_factory=dict)
    credentials: ClientCredentials | None = field(default=None, repr=False)
    auth: AuthView | None = None
    root_secret: RootSecretFacts | None = None
    root_credentials: RootCredentials | None = field(default=None, repr=False)

    def fingerprint(self, key: ChildKey) -> str | None:
        """The fingerprint annotation of a live child (``None``: absent, or not annotated)."""
        live = self.children.get(key)
        if live is None:
            return None
        value = ((live.get("metadata") or {}).get("annotations") or {}).get(FINGERPRINT_ANNOTATION)
        return str(value) if value is not None else None

    def pod(self, name: str) -> PodState | None:
        for pod in self.pods:
            if pod.name == name:
                return pod
        return None
