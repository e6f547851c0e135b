"""Membership changes, idempotent where etcd allows it, so a pass can be retried after a crash.

The operator may crash between an etcd call and the Kubernetes write that follows it, and then
repeats the call on the next pass. So each operation first looks at the member list and treats
"already done" as success: adding a peer URL that is already a member returns that member,
removing an absent member succeeds, promoting a voter succeeds, moving leadership away from a
member that no longer leads does nothing.

Two answers of etcd are not failures of the operator: a learner that has not caught up yet
(``promote_if_ready`` returns ``NOT_IN_SYNC``: try again on a later pass) and an engine that
cannot change membership at all (``not_capable``: the caller reports it instead of retrying).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import grpc
from pyetcd.client import EndpointStatus, EtcdClientError, Member, MemberList

# etcd's answer when a peer URL is already taken (rpctypes.ErrGRPCPeerURLExist).
PEER_URL_EXISTS = "etcdserver: Peer URLs already exists"
# etcd's answer to promoting a learner that lags the leader (rpctypes.ErrGRPCLearnerNotReady).
LEARNER_NOT_READY = "etcdserver: can only promote a learner member which is in sync with leader"
# etcd's answer (ErrNotCapable) from an engine that cannot change membership (pyetcd, for now).
NOT_CAPABLE = "etcdserver: not capable"


class ClusterClient(Protocol):
    """The calls of ``pyetcd.client.EtcdClient`` that membership changes use."""

    async def member_list(self, endpoint: str | None = None) -> MemberList: ...

    async def member_add(self, peer_urls: Sequence[str], learner: bool = False) -> Member: ...

    async def member_remove(self, member_id: int) -> None: ...

    async def member_promote(self, member_id: int) -> None: ...

    async def move_leader(self, target_id: int) -> None: ...

    async def status(self, endpoint: str) -> EndpointStatus: ...


class Promotion(StrEnum):
    """The outcome of ``promote_if_ready``."""

    PROMOTED = "promoted"
    ALREADY_VOTER = "already-voter"
    NOT_IN_SYNC = "not-in-sync"


def not_capable(err: BaseException) -> bool:
    """etcd (pyetcd) answered that it cannot change membership."""
    return isinstance(err, EtcdClientError) and err.message == NOT_CAPABLE


def describe_etcd_error(err: BaseException) -> str | None:
    """etcd's own message of a failed call, with the endpoint; ``None`` for anything else."""
    if not isinstance(err, EtcdClientError):
        return None
    where = f" ({err.endpoint})" if err.endpoint else ""
    return f"etcd answered {err.code.name}{where}: {err.message}"


def _by_peer_url(members: tuple[Member, ...], peer_url: str) -> Member | None:
    for member in members:
        if peer_url in member.peer_urls:
            return member
    return None


async def add_member(client: ClusterClient, peer_url: str, *, learner: bool = True) -> Member:
    """Add the member with ``peer_url`` (as a learner by default) unless it is one already."""
    existing = _by_peer_url((await client.member_list()).members, peer_url)
    if existing is not None:
        return existing
    try:
        return await client.member_add([peer_url], learner=learner)
    except EtcdClientError as err:
        # A concurrent or timed-out earlier attempt may have added it after our look.
        if err.message != PEER_URL_EXISTS:
            raise
    existing = _by_peer_url((await client.member_list()).members, peer_url)
    if existing is None:
        raise EtcdClientError(
            f"etcd says {peer_url} exists but does not list it", grpc.StatusCode.INTERNAL
        )
    return existing


async def remove_member(client: ClusterClient, member_id: int) -> bool:
    """Remove a member; ``False`` when it was not a member (already removed), ``True`` otherwise."""
    if member_id not in {m.id for m in (await client.member_list()).members}:
        return False
    try:
        await client.member_remove(member_id)
    except EtcdClientError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


async def promote_member(client: ClusterClient, member_id: int) -> bool:
    """Promote a learner; ``False`` when it already was a voter.

    A learner that has not caught up with the leader is refused by etcd
    (``FAILED_PRECONDITION``); that error propagates so the caller retries later.
    """
    listed = {m.id: m for m in (await client.member_list()).members}
    member = listed.get(member_id)
    if member is None:
        raise EtcdClientError("etcdserver: member not found", grpc.StatusCode.NOT_FOUND)
    if not member.is_learner:
        return False
    await client.member_promote(member_id)
    return True


async def promote_if_ready(client: ClusterClient, member_id: int) -> Promotion:
    """Promote a learner if etcd finds it in sync with the leader; "not yet" is an answer."""
    try:
        promoted = await promote_member(client, member_id)
    except EtcdClientError as err:
        if err.message == LEARNER_NOT_READY:
            return Promotion.NOT_IN_SYNC
        raise
    return Promotion.PROMOTED if promoted else Promotion.ALREADY_VOTER


async def current_leader(client: ClusterClient) -> int | None:
    """The leader's ID as the first started member that answers its status reports it."""
    for member in (await client.member_list()).members:
        if not member.client_urls:
            continue
        try:
            status = await client.status(member.client_urls[0])
        except EtcdClientError as err:
            if err.unreachable:
                continue
            raise
        if status.leader:
            return status.leader
    return None


async def move_leader(client: ClusterClient, from_id: int, to_id: int) -> bool:
    """Hand leadership from ``from_id`` to ``to_id``; ``False`` when ``from_id`` does not lead
    (already moved, e.g. by a pass that crashed after the move, or by an election)."""
    if await current_leader(client) != from_id:
        return False
    await client.move_leader(to_id)
    return True
