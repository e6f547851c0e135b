"""The observed state of one EtcdCluster: what the handlers saw in Kubernetes and in etcd.

Plain immutable data with no behaviour beyond lookups, built by the handlers from API responses
and from ``etcd_operator.members.observe``, and read by ``plan`` and ``status``. Keeping these
types free of client objects is what lets the decisions be tested as tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The annotation each applied child carries: the fingerprint of the manifest we applied. Comparing
# it with the fingerprint of the manifest we would apply now tells whether to apply, without
# diffing against fields that the API server and other controllers add.
FINGERPRINT_ANNOTATION = "etcd.pyetcd.io/applied-fingerprint"


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
    """

    name: str
    ready: bool
    phase: str = "Pending"
    node: str | None = None
    unschedulable: str | None = None


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
        """True while the controller has not yet brought every pod to the latest template."""
        return (
            self.observed_generation < self.generation
            or self.updated_replicas < self.replicas
            or (self.update_revision is not None and self.current_revision != self.update_revision)
        )


@dataclass(frozen=True)
class EtcdMember:
    """One member as etcd reports it (member list + status + health)."""

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
    error: str | None = None

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
    """The etcd side of a cluster, as far as any member answered."""

    cluster_id: int
    members: tuple[EtcdMember, ...]
    alarms: tuple[str, ...] = ()

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
class Observed:
    """Everything one reconcile pass knows about the world besides the desired spec.

    ``children`` maps each existing child to the fingerprint annotation it carries (``None``
    when the object exists without one, e.g. created by hand). ``bootstrap_state`` is the
    ``initial-cluster-state`` of the live bootstrap ConfigMap (``None`` when absent). ``etcd`` is
    ``None`` when no member answered. ``pvcs`` are the names of the cluster's existing
    PersistentVolumeClaims (the StatefulSet keeps them when it scales down).
    ``membership_unsupported`` is set when, in this pass, etcd answered a membership change with
    "not capable" (an engine that cannot change its membership yet): the pass is then planned
    again without membership changes.
    """

    children: Mapping[ChildKey, str | None] = field(default_factory=dict)
    pods: tuple[PodState, ...] = ()
    bootstrap_state: str | None = None
    statefulset: StatefulSetState | None = None
    etcd: EtcdView | None = None
    pvcs: tuple[str, ...] = ()
    membership_unsupported: str | None = None

    def pod(self, name: str) -> PodState | None:
        for pod in self.pods:
            if pod.name == name:
                return pod
        return None
