"""pyetcd.client against real servers: every call on upstream etcd and on pyetcd.

Each test runs once per flavour through the ``member`` fixture (a fresh single member), with the
same assertions for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import pytest
from etcd_operator.members import add_member, observe, promote_member, remove_member
from pyetcd.client import EtcdClient, EtcdClientError, WatchCompactedError, normalize_endpoint
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from pyetcd.server.v3api import CLUSTER_VERSION

from tests.integration.cluster import Member
from tools.ports import free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")


def run(member: Member, scenario: Callable[[EtcdClient], Awaitable[T]], *extra: str) -> T:
    """Run one async scenario with a client on ``member`` (plus extra endpoints first)."""

    async def main() -> T:
        async with EtcdClient([*extra, member.client_url], timeout=5.0) as client:
            return await scenario(client)

    return asyncio.run(main())


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("http://10.0.0.1:2379") == "10.0.0.1:2379"
    assert normalize_endpoint("etcd-0.etcd-peer:2379") == "etcd-0.etcd-peer:2379"
    assert normalize_endpoint("http://[::1]:2379") == "[::1]:2379"
    with pytest.raises(ValueError, match="host and a port"):
        normalize_endpoint("http://nohost")
    with pytest.raises(ValueError, match="scheme"):
        normalize_endpoint("unix:///tmp/sock:1")
    assert normalize_endpoint("https://10.0.0.1:2379") == "10.0.0.1:2379"


def test_kv_round_trip(member: Member) -> None:
    async def scenario(client: EtcdClient) -> None:
        rev1 = await client.put("k", "v1")
        rev2 = await client.put(b"k", b"v2")
        assert rev2 == rev1 + 1
        assert await client.get("k") == b"v2"
        assert await client.get("absent") is None
        assert await client.delete("k") == 1
        assert await client.delete("k") == 0
        assert await client.get("k") is None

    run(member, scenario)
    # The write is visible to etcdctl too: same server, same data.
    assert member.etcdctl("get", "k").stdout == ""


def test_member_list_status_health_alarms(member: Member) -> None:
    async def scenario(client: EtcdClient) -> None:
        listed = await client.member_list()
        assert len(listed.members) == 1
        (m,) = listed.members
        assert m.name == member.name
        assert m.peer_urls == (member.peer_url,)
        assert m.client_urls == (member.client_url,)
        assert not m.is_learner
        assert listed.cluster_id != 0
        assert listed.member_id == m.id

        await client.put("k", "v")
        st = await client.status(member.client_url)
        assert st.member_id == m.id
        assert st.cluster_id == listed.cluster_id
        assert st.leader == m.id and st.is_leader
        assert st.raft_term >= 1
        assert st.raft_index >= 1
        assert st.db_size > 0
        assert st.version.count(".") == 2
        assert st.revision >= 2
        assert not st.is_learner
        assert st.errors == ()

        health = await client.health(member.host_port)
        assert health.healthy, health.error
        assert health.error is None
        assert health.endpoint == member.host_port
        assert await client.alarm_list() == []

        await client.defragment(member.client_url)
        # Leadership to itself is a no-op that succeeds; to an unknown ID it is refused.
        await client.move_leader(m.id)
        with pytest.raises(EtcdClientError) as bad:
            await client.move_leader(m.id + 1)
        assert bad.value.message == "etcdserver: bad leader transferee"
        assert bad.value.code == grpc.StatusCode.FAILED_PRECONDITION

    run(member, scenario)


def test_unreachable_endpoint(member: Member) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def scenario(client: EtcdClient) -> None:
        # Cluster-wide calls move past the dead endpoint to the live one.
        listed = await client.member_list()
        assert [m.name for m in listed.members] == [member.name]
        await client.put("k", "v")
        # Per-member calls report the dead one: status raises, health answers "unhealthy".
        with pytest.raises(EtcdClientError) as err:
            await client.status(dead)
        assert err.value.unreachable
        assert err.value.endpoint == dead
        health = await client.health(f"http://{dead}")
        assert not health.healthy
        assert health.error

    run(member, scenario, dead)


def test_membership_changes(member: Member) -> None:
    learner_peer = f"http://127.0.0.1:{free_port()}"

    async def scenario(client: EtcdClient) -> None:
        added = await client.member_add([learner_peer], learner=True)
        assert added.is_learner
        assert added.peer_urls == (learner_peer,)
        listed = {m.id: m for m in (await client.member_list()).members}
        assert listed[added.id].is_learner
        assert listed[added.id].name == ""  # never started
        # A learner that never caught up cannot be promoted.
        with pytest.raises(EtcdClientError) as early:
            await client.member_promote(added.id)
        assert early.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "learner" in early.value.message
        await client.member_remove(added.id)
        assert [m.name for m in (await client.member_list()).members] == [member.name]
        with pytest.raises(EtcdClientError) as gone:
            await client.member_remove(added.id)
        assert gone.value.message == "etcdserver: member not found"
        assert gone.value.code == grpc.StatusCode.NOT_FOUND

    run(member, scenario)


def test_a_change_right_after_another_is_not_refused_under_writes(member: Member) -> None:
    # The answer to a change can leave while the entries committed with it are still being
    # written; a change proposed in that window must not be taken as racing the first (Raft
    # takes one change at a time). A writer keeps the log busy so that the window is there.
    async def scenario(client: EtcdClient) -> None:
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                await client.put(f"busy/{n % 64}", "x" * 512)
                n += 1

        writers = [asyncio.create_task(writer()) for _ in range(8)]
        try:
            for _ in range(15):
                added = await client.member_add([f"http://127.0.0.1:{free_port()}"], learner=True)
                await client.member_remove(added.id)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        assert [m.name for m in (await client.member_list()).members] == [member.name]

    run(member, scenario)


def test_watch_writes_sees_every_put_and_delete_of_its_window_in_order(member: Member) -> None:
    async def scenario(client: EtcdClient) -> None:
        seen: list[bytes] = []
        window = asyncio.create_task(client.watch_writes(1.5, seen.append))
        written: list[tuple[int, bytes]] = []
        for i in range(40):
            key = f"/app/{i % 4}/k{i}"
            written.append((await client.put(key, "v"), key.encode()))
            if i % 10 == 9:
                assert await client.delete(key) == 1
                written.append((await _revision(client), key.encode()))
        result = await window
        # Writes made before the watch was created are not its own: it starts at from_revision.
        expected = [key for rev, key in written if rev > result.from_revision]
        assert expected, "the window began after every write"
        assert seen == expected
        assert result.events == len(expected)
        assert result.to_revision == written[-1][0]

    run(member, scenario)


def test_watch_history_replays_from_a_revision_and_says_when_it_is_compacted(
    member: Member,
) -> None:
    async def scenario(client: EtcdClient) -> None:
        start = await client.put("/hist/a", "1")
        await client.put("/hist/b", "2")
        await client.delete("/hist/a")
        last = await client.put("/hist/c", "3")
        got: list[tuple[int, int, bytes]] = []
        history = client.watch_history(start)
        async for batch in history:
            assert batch.revision >= last
            got.extend((e.kv.mod_revision, e.type, e.kv.key) for e in batch.events)
            if got and got[-1][0] >= last:
                break
        await history.aclose()
        assert got == [
            (start, 0, b"/hist/a"),
            (start + 1, 0, b"/hist/b"),
            (start + 2, 1, b"/hist/a"),
            (last, 0, b"/hist/c"),
        ]
        async with grpc.aio.insecure_channel(member.host_port) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            await kv.Compact(rpc_pb2.CompactionRequest(revision=last), timeout=10)
        with pytest.raises(WatchCompactedError) as compacted:
            async for _ in client.watch_history(start):
                pass
        assert compacted.value.compact_revision == last

    run(member, scenario)


def test_lease_granted_ttl_is_none_once_the_lease_is_gone(member: Member) -> None:
    async def scenario(client: EtcdClient) -> None:
        async with grpc.aio.insecure_channel(member.host_port) as channel:
            leases = rpc_pb2_grpc.LeaseStub(channel)
            lease = await leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=321), timeout=10)
            assert await client.lease_granted_ttl(lease.ID) == 321
            await leases.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease.ID), timeout=10)
        assert await client.lease_granted_ttl(lease.ID) is None

    run(member, scenario)


async def _revision(client: EtcdClient) -> int:
    return (await client.status(client.endpoints[0])).revision


# -- etcd_operator.members on top of the client ----------------------------------------------


def test_members_observe_reports_a_dead_member_unhealthy(member: Member) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def scenario(client: EtcdClient) -> None:
        view = await observe(client, deadline_seconds=2.0)
        assert view is not None
        (m,) = view.members
        assert (m.name, m.healthy, m.leader, m.learner) == (member.name, True, True, False)
        assert view.leader == m
        assert m.version and m.db_size and m.revision
        assert view.alarms == ()
        # Nobody answers: no view at all, and no exception.
        async with EtcdClient([dead], timeout=1.0) as nobody:
            assert await observe(nobody, deadline_seconds=1.0) is None

    run(member, scenario, dead)


def test_membership_calls_are_idempotent(upstream: Member) -> None:
    peer = f"http://127.0.0.1:{free_port()}"

    async def scenario(client: EtcdClient) -> None:
        added = await add_member(client, peer, learner=True)
        again = await add_member(client, peer, learner=True)  # e.g. retried after a crash
        assert again.id == added.id
        assert len((await client.member_list()).members) == 2
        voter = (await client.member_list()).member_id
        assert await promote_member(client, voter) is False  # already a voter
        assert await remove_member(client, added.id) is True
        assert await remove_member(client, added.id) is False  # already gone
        assert len((await client.member_list()).members) == 1

    run(upstream, scenario)


def test_cluster_version(member: Member) -> None:
    """The cluster version a member's /version reports: etcd 3.4 runs a new cluster at 3.4.0;
    pyetcd says what it implements. A member that does not answer raises."""
    dead = f"127.0.0.1:{free_port()}"

    async def scenario(client: EtcdClient) -> str:
        with pytest.raises(EtcdClientError) as err:
            await client.cluster_version(dead)
        assert err.value.unreachable
        return await client.cluster_version(member.client_url)

    version = run(member, scenario)
    assert version == ("3.4.0" if member.flavour == "etcd" else CLUSTER_VERSION)
