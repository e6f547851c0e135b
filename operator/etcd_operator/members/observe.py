"""Observe an etcd cluster: the member list, then status and health of every member at once.

A member that does not answer in time is reported unhealthy with the reason, never raised: the
operator decides on what it sees, and a dead member is exactly what it must see. A learner is
healthy when its status answers without errors and names a leader: etcd serves learners no
linearizable read, so the voters' health check would always fail on them. Only when no
endpoint answers the member list is the whole cluster unobservable (``None``).

The cluster version (what etcd runs the cluster at, from a member's ``/version``) is asked of the
leader, else a healthy member, last, as detail for the status. The result is
``reconcile.observed.EtcdView`` of ``EtcdMember``s, the one type of a member as observed that
the reconcile steps and the status read: no copy field by field in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from pyetcd.client import (
    AlarmMember,
    EndpointHealth,
    EndpointStatus,
    EtcdClientError,
    Member,
    MemberList,
)

from etcd_operator.reconcile.observed import EtcdMember, EtcdView


class ObservingClient(Protocol):
    """The calls of ``pyetcd.client.EtcdClient`` that observing a cluster uses."""

    @property
    def endpoints(self) -> Sequence[str]: ...

    async def member_list(self, endpoint: str | None = None) -> MemberList: ...

    async def status(self, endpoint: str) -> EndpointStatus: ...

    async def health(self, endpoint: str) -> EndpointHealth: ...

    async def alarm_list(self) -> list[AlarmMember]: ...

    async def cluster_version(self, endpoint: str) -> str: ...


async def _status(client: ObservingClient, endpoint: str, seconds: float) -> EndpointStatus | str:
    try:
        return await asyncio.wait_for(client.status(endpoint), seconds)
    except EtcdClientError as err:
        return err.message or err.code.name
    except TimeoutError:
        return f"no status within {seconds:g}s"


async def _health(client: ObservingClient, endpoint: str, seconds: float) -> EndpointHealth:
    try:
        return await asyncio.wait_for(client.health(endpoint), seconds)
    except TimeoutError:
        return EndpointHealth(endpoint, False, seconds, f"no answer within {seconds:g}s")


async def _observe_member(
    client: ObservingClient, member: Member, seconds: float
) -> tuple[Member, EndpointStatus | str, EndpointHealth | None]:
    if not member.client_urls:
        # Added to the membership but never started: nothing to ask.
        return member, "member has not started (no client URL)", None
    endpoint = member.client_urls[0]
    if member.is_learner:
        # A learner serves no linearizable read ("rpc not supported for learner"): its health
        # is its status (it answers and knows a leader), see _member_observation.
        return member, await _status(client, endpoint, seconds), None
    status, health = await asyncio.gather(
        _status(client, endpoint, seconds), _health(client, endpoint, seconds)
    )
    return member, status, health


async def _first_member_list(client: ObservingClient, seconds: float) -> MemberList | None:
    """Ask every endpoint at once and take the first answer: a member that hangs (a blackholed
    node) must not cost the others their deadline, as asking in turn would."""

    async def one(endpoint: str) -> MemberList:
        return await asyncio.wait_for(client.member_list(endpoint), seconds)

    tasks = [asyncio.ensure_future(one(e)) for e in client.endpoints]
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except (EtcdClientError, TimeoutError):
                continue
        return None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def observe(client: ObservingClient, deadline_seconds: float) -> EtcdView | None:
    """The cluster as etcd sees it, or ``None`` when no endpoint answers the member list.

    Each member's status and health are asked concurrently, each call within
    ``deadline_seconds``, so one slow member never delays the view of the others.
    """
    listed = await _first_member_list(client, deadline_seconds)
    if listed is None:
        return None
    results = await asyncio.gather(
        *(_observe_member(client, m, deadline_seconds) for m in listed.members)
    )
    leader_id = _leader(s for _, s, _ in results)
    fresher = await _leaders_member_list(client, listed, results, leader_id, deadline_seconds)
    if fresher is not None:
        listed = fresher
        results = await asyncio.gather(
            *(_observe_member(client, m, deadline_seconds) for m in listed.members)
        )
        leader_id = _leader(s for _, s, _ in results)
    alarms: tuple[str, ...] = ()
    try:
        found = await asyncio.wait_for(client.alarm_list(), deadline_seconds)
        alarms = tuple(f"{a.alarm}:{a.member_id:x}" for a in found)
    except (EtcdClientError, TimeoutError):
        pass  # the health of each member already reports alarms; this is only detail
    members = tuple(_member_observation(m, s, h, leader_id) for m, s, h in results)
    version = await _cluster_version(client, members, deadline_seconds)
    return EtcdView(
        cluster_id=listed.cluster_id, members=members, alarms=alarms, cluster_version=version
    )


async def _cluster_version(
    client: ObservingClient, members: Iterable[EtcdMember], seconds: float
) -> str | None:
    """The cluster version as the leader (else any healthy member) reports it; ``None`` when
    none answers: it is detail for the status, never a reason to fail the look."""
    serving = sorted(
        (m for m in members if m.healthy and m.client_urls), key=lambda m: not m.leader
    )
    for member in serving[:2]:
        try:
            return await asyncio.wait_for(client.cluster_version(member.client_urls[0]), seconds)
        except (EtcdClientError, TimeoutError):
            continue
    return None


async def _leaders_member_list(
    client: ObservingClient,
    listed: MemberList,
    results: Sequence[tuple[Member, EndpointStatus | str, EndpointHealth | None]],
    leader_id: int | None,
    seconds: float,
) -> MemberList | None:
    """The leader's member list when it differs from ``listed``, else None.

    etcd serves MemberList from the answering member's own view: a member that lags (a learner
    catching up, a follower just restarted) can list a membership several changes old, and
    planning on it would repeat a step that already happened. The leader's view is the newest.
    """
    if leader_id is None or listed.member_id == leader_id:
        return None
    endpoint = next(
        (m.client_urls[0] for m, _, _ in results if m.id == leader_id and m.client_urls), None
    )
    if endpoint is None:
        return None
    try:
        fresher = await asyncio.wait_for(client.member_list(endpoint), seconds)
    except (EtcdClientError, TimeoutError):
        return None
    if fresher.cluster_id != listed.cluster_id or set(fresher.members) == set(listed.members):
        return None
    return fresher


def _leader(statuses: Iterable[EndpointStatus | str]) -> int | None:
    """The leader as the member with the highest Raft term reports it (older terms are stale)."""
    best: EndpointStatus | None = None
    for s in statuses:
        if (
            isinstance(s, EndpointStatus)
            and s.leader
            and (best is None or s.raft_term > best.raft_term)
        ):
            best = s
    return best.leader if best is not None else None


def _member_observation(
    member: Member,
    status: EndpointStatus | str,
    health: EndpointHealth | None,
    leader_id: int | None,
) -> EtcdMember:
    healthy = health is not None and health.healthy
    error = health.error if health is not None else None
    if member.is_learner and isinstance(status, EndpointStatus):
        healthy = status.leader != 0
        error = None if healthy else "learner knows no leader"
    if isinstance(status, EndpointStatus):
        if status.errors:
            error = error or "; ".join(status.errors)
        return EtcdMember(
            id=member.id,
            name=member.name,
            peer_urls=member.peer_urls,
            client_urls=member.client_urls,
            learner=member.is_learner,
            healthy=healthy and not status.errors,
            leader=leader_id is not None and member.id == leader_id,
            version=status.version or None,
            db_size=status.db_size,
            revision=status.revision,
            raft_term=status.raft_term,
            raft_index=status.raft_index,
            raft_applied_index=status.raft_applied_index,
            db_size_in_use=status.db_size_in_use,
            error=error,
        )
    return EtcdMember(
        id=member.id,
        name=member.name,
        peer_urls=member.peer_urls,
        client_urls=member.client_urls,
        learner=member.is_learner,
        healthy=False,
        leader=leader_id is not None and member.id == leader_id,
        error=error or status,
    )
