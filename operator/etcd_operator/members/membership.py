"""Membership changes, idempotent where etcd allows it, so a pass can be retried after a crash.

The operator may crash between an etcd call and the Kubernetes write that follows it, and then
repeats the call on the next pass. So each operation first looks at the member list and treats
"already done" as success: adding a peer URL that is already a member returns that member,
removing an absent member succeeds, promoting a voter succeeds.
"""

from __future__ import annotations

import grpc
from pyetcd.client import EtcdClient, EtcdClientError, Member

# etcd's answer when a peer URL is already taken (rpctypes.ErrGRPCPeerURLExist).
PEER_URL_EXISTS = "etcdserver: Peer URLs already exists"


def _by_peer_url(members: tuple[Member, ...], peer_url: str) -> Member | None:
    for member in members:
        if peer_url in member.peer_urls:
            return member
    return None


async def add_member(client: EtcdClient, peer_url: str, *, learner: bool = True) -> Member:
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


async def remove_member(client: EtcdClient, member_id: int) -> bool:
    """Remove a member; ``False`` when it was not a member (already removed), ``True`` otherwise."""
    try:
        await client.member_remove(member_id)
    except EtcdClientError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


async def promote_member(client: EtcdClient, member_id: int) -> bool:
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
