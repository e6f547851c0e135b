"""The actions a reconcile pass decides on: small immutable values, executed in order by
``etcd_operator.handlers.execute``.

Kubernetes writes (``Apply``, ``SetBootstrapState``, ``DeleteChild``, ``DeletePVC``,
``IssueCertificate``, ``CreateRootSecret``), turning etcd's auth on (``AuthAction``), etcd
membership changes
(``AddMember``, ``PromoteMember``, ``MoveLeader``, ``RemoveMember``), etcd maintenance
(``Defragment``, ``DisarmAlarm``), ``Event`` and
``PatchStatus`` (always last). Every membership action is idempotent on the etcd side (see
``etcd_operator.members.membership``), so a pass that crashed half-way can simply be planned and
run again from what is observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.pki import CertificateRequest
from etcd_operator.reconcile.observed import ChildKey

Manifest = dict[str, Any]


def key_of(manifest: Manifest) -> ChildKey:
    return ChildKey(str(manifest["kind"]), str(manifest["metadata"]["name"]))


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


@dataclass(frozen=True)
class AddMember:
    """Add the member ``name`` with ``peer_url`` to etcd as a learner (no-op if it is listed)."""

    name: str
    peer_url: str


@dataclass(frozen=True)
class PromoteMember:
    """Promote the learner ``member_id`` to a voter. etcd refuses while the learner lags behind
    the leader; the executor treats that refusal as "not yet", not as a failure."""

    member_id: int
    name: str


@dataclass(frozen=True)
class MoveLeader:
    """Hand leadership from ``from_id`` to ``to_id`` (no-op if ``from_id`` no longer leads)."""

    from_id: int
    to_id: int
    to_name: str


@dataclass(frozen=True)
class RemoveMember:
    """Remove ``member_id`` from etcd (no-op if it is no longer listed)."""

    member_id: int
    name: str


@dataclass(frozen=True)
class DeletePVC:
    """Delete a removed member's PersistentVolumeClaim (no-op if it is already gone)."""

    name: str
    namespace: str


@dataclass(frozen=True)
class DeleteChild:
    """Delete a child the spec no longer wants (the NetworkPolicy of a cluster whose
    ``spec.networkPolicy`` was turned off); no-op if it is already gone."""

    api_version: str
    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class DeletePod:
    """Delete a member pod (no-op if it is already gone); the StatefulSet makes it anew.
    ``force``: with grace period 0, for a pod on a node that is gone (no kubelet will ever
    confirm its end, and the StatefulSet waits for it)."""

    name: str
    namespace: str
    force: bool = False


@dataclass(frozen=True)
class CreateBackup:
    """Create an EtcdBackup (``manifest``); one that exists already counts as created (the
    names are deterministic: that is what makes the triggers exactly-once)."""

    manifest: Manifest


@dataclass(frozen=True)
class DeleteOperation:
    """Delete an operation object of ``kind`` (an EtcdBackup: its deletionPolicy says what
    happens to the stored copy; an EtcdDefrag past its time to live)."""

    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class AnalyzeKeyspace:
    """Have the runtime analyse the cluster's newest successful backup, outside the pass (it
    downloads a database). The runtime decides again on a fresh read under the cluster's lock,
    and leaves the request alone while it runs one for the cluster already; a run the status
    shows as Running that the runtime does not run was cut short by a restart, and it ends it."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class SampleWrites:
    """Have the runtime watch the cluster's key space for a window and record the writes by
    prefix (``status.keyspace.writes``), outside the pass; it leaves the request alone while
    it samples the cluster already."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class RecordContinuously:
    """Have the runtime keep the cluster's continuous-backup recorder running (it leaves one
    that runs alone); the recorder writes ``status.backup.continuous`` itself."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PatchOperationStatus:
    """Merge ``status`` into the status of the operation object ``kind``/``name``."""

    kind: str
    name: str
    namespace: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Defragment:
    """Defragment member ``name`` (``member_id``) online through its own ``endpoint``."""

    member_id: int
    name: str
    endpoint: str


@dataclass(frozen=True)
class DisarmAlarm:
    """Disarm ``alarm`` (e.g. NOSPACE) of ``member_id`` (no-op if it is not active)."""

    member_id: int
    name: str
    alarm: str


@dataclass(frozen=True)
class IssueCertificate:
    """Issue a new key and certificate (``request``, valid from ``now``) into the generated
    TLS Secret ``manifest`` (all but its data) and apply it: a self-signed CA when
    ``ca_secret`` is ``None``, else signed by the CA in the Secret ``ca_secret``. The key is
    made by the executor, never in a decision (it is random, and a secret)."""

    manifest: Manifest
    request: CertificateRequest
    ca_secret: str | None
    now: datetime
    reason: str

    @property
    def key(self) -> ChildKey:
        return key_of(self.manifest)


@dataclass(frozen=True)
class CreateRootSecret:
    """Create the root Secret ``manifest`` (all but the password, which the executor makes:
    it is random, and a secret) unless it exists: created once, never rotated."""

    manifest: Manifest


@dataclass(frozen=True)
class AddRootUser:
    """``etcdctl user add root`` with the password of the root Secret."""

    credentials: RootCredentials = field(repr=False)


@dataclass(frozen=True)
class ChangeRootPassword:
    """``etcdctl user passwd root`` to the password of the root Secret the operator made."""

    credentials: RootCredentials = field(repr=False)


@dataclass(frozen=True)
class AddRootRole:
    """``etcdctl role add root``."""


@dataclass(frozen=True)
class GrantRootRole:
    """``etcdctl user grant-role root root``."""


@dataclass(frozen=True)
class EnableAuth:
    """``etcdctl auth enable``."""


AuthAction = AddRootUser | ChangeRootPassword | AddRootRole | GrantRootRole | EnableAuth
MembershipAction = AddMember | PromoteMember | MoveLeader | RemoveMember
MaintenanceAction = Defragment | DisarmAlarm
Action = (
    Apply
    | SetBootstrapState
    | Event
    | PatchStatus
    | MembershipAction
    | MaintenanceAction
    | DeleteChild
    | DeletePVC
    | DeletePod
    | CreateBackup
    | DeleteOperation
    | AnalyzeKeyspace
    | SampleWrites
    | RecordContinuously
    | PatchOperationStatus
    | IssueCertificate
    | CreateRootSecret
    | AuthAction
)
