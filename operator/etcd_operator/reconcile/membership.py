"""The desired members against etcd's member list: names, ordinals, formation. Pure helpers
shared by the steps and the condition checkers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from etcd_operator.api.v1alpha1 import ConditionType, EtcdCluster
from etcd_operator.components import naming
from etcd_operator.reconcile.observed import EtcdMember, EtcdView


def desired_member_names(desired: EtcdCluster) -> list[str]:
    return [naming.member_name(desired.name, i) for i in range(desired.spec.replicas)]


def member_name(member: EtcdMember) -> str:
    """The member's name; for one added but never started (no name yet), the pod name taken
    from its peer URL (``http(s)://<pod>.<peer service>...``), else its ID."""
    if member.name:
        return member.name
    for url in member.peer_urls:
        host = urlsplit(url).hostname
        if host:
            return host.split(".", 1)[0]
    return member.id_hex


def formed(desired: EtcdCluster, etcd: EtcdView | None) -> bool:
    """Every desired member is listed in etcd and healthy: the cluster has formed (never for
    ``replicas: 0``, which asks for no member)."""
    if etcd is None or desired.spec.replicas == 0:
        return False
    by_name = {member_name(m): m for m in etcd.members}
    return all(
        (m := by_name.get(name)) is not None and m.healthy for name in desired_member_names(desired)
    )


def ordinal(cluster: str, name: str) -> int | None:
    """The ordinal of ``<cluster>-<n>``, else ``None``."""
    match = re.fullmatch(re.escape(cluster) + r"-(0|[1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def pvc_name(cluster: str, index: int) -> str:
    """The StatefulSet's claim of ordinal ``index``: ``<template>-<pod>``."""
    return f"{naming.VOLUME_NAME}-{naming.member_name(cluster, index)}"


def pvc_ordinal(cluster: str, name: str) -> int | None:
    prefix = f"{naming.VOLUME_NAME}-"
    return ordinal(cluster, name[len(prefix) :]) if name.startswith(prefix) else None


# The Degraded (and Progressing) reason of a cluster whose engine cannot change its membership.
MEMBERSHIP_NOT_SUPPORTED = "MembershipNotSupported"


def membership_latched(desired: EtcdCluster) -> bool:
    """The last pass of this generation found that the engine cannot change membership.

    Not retried until the spec changes (a new generation, e.g. a new engine version): retrying
    every pass would only repeat the same refusal.
    """
    status = desired.status
    generation = desired.metadata.get("generation")
    if status is None or generation is None:
        return False
    # Progressing says it too (False), and keeps saying it when Degraded names another cause
    # (a member that cannot be scheduled).
    return any(
        c.type in (ConditionType.DEGRADED, ConditionType.PROGRESSING)
        and c.reason == MEMBERSHIP_NOT_SUPPORTED
        and c.observedGeneration == int(generation)
        for c in status.conditions
    )


def heir(etcd: EtcdView, leader: EtcdMember) -> EtcdMember | None:
    """The voter to hand leadership to before ``leader`` stops: the one with the highest
    applied index (the least to catch up as leader), lowest ID on a tie."""
    others = [m for m in etcd.voters if m.id != leader.id]
    return max(others, key=lambda m: (m.raft_applied_index or 0, -m.id), default=None)


def quorum_without(voters: Iterable[EtcdMember], leaving: int) -> tuple[int, int, int]:
    """The voters other than member ``leaving``: how many are healthy, how many there are, and
    how many make a quorum of them. Removing ``leaving`` keeps the cluster writable only if the
    first is at least the third."""
    remaining = [v for v in voters if v.id != leaving]
    return sum(1 for v in remaining if v.healthy), len(remaining), len(remaining) // 2 + 1


@dataclass(frozen=True)
class QuorumLoss:
    """A majority of the voters does not answer and there is no leader: ``alive`` are the voters
    that answer their own status, ``gone`` the others, ``quorum`` how many it takes."""

    alive: tuple[EtcdMember, ...]
    gone: tuple[EtcdMember, ...]
    quorum: int

    @property
    def message(self) -> str:
        gone = ", ".join(sorted(member_name(m) for m in self.gone))
        survive = ", ".join(f"{member_name(m)} (raft index {m.raft_index})" for m in self.alive)
        total = len(self.alive) + len(self.gone)
        return (
            f"{len(self.alive)} of {total} voting members answer, {self.quorum} needed: "
            f"gone {gone}; surviving {survive or 'none'}"
        )


def quorum_loss(etcd: EtcdView) -> QuorumLoss | None:
    """The lost quorum of ``etcd``, else ``None``. A member that answers its own status is
    alive, leader or not; a majority of voters that does not answer is a lost quorum, which no
    election can mend."""
    if etcd.leader is not None:
        return None
    voters = etcd.voters
    alive = tuple(m for m in voters if m.healthy or m.raft_index is not None)
    quorum = len(voters) // 2 + 1
    if len(alive) >= quorum:
        return None
    return QuorumLoss(alive, tuple(m for m in voters if m not in alive), quorum)
