"""The membership steps ``plan`` emits, run in order against real upstream etcd members.

Three members ``demo-0..2`` run on loopback. A small driver plays the Kubernetes side: each pass
observes etcd for real (``members.observe``), plans, and executes the actions in order. Membership
changes go through ``members.membership``, each one run twice (as after a crash) to show that a
repeat is harmless; a StatefulSet apply starts or stops member processes (a new member starts
with ``--initial-cluster-state=existing`` and the peer list of the applied ConfigMap); a claim
deletion wipes the removed member's data dir. Kubernetes DNS names in the plan are mapped to the
loopback ports the processes listen on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER
from etcd_operator.members import (
    Promotion,
    add_member,
    move_leader,
    observe,
    promote_if_ready,
    remove_member,
)
from etcd_operator.reconcile.observed import (
    ChildKey,
    EtcdView,
    Json,
    Observed,
    PodState,
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
from pyetcd.client import EtcdClient, EtcdClientError

from tests.integration.cluster import FAST, Member
from tests.unit.operator.reconcile.builders import SETTINGS, cluster, rolled_out
from tools.ports import free_port

MAX_MEMBERS = 5
DEADLINE_SECONDS = 90.0


class JoiningMember(Member):
    """A member that joins a running cluster: ``--initial-cluster-state=existing``."""

    def command(self) -> list[str]:
        return [
            "--initial-cluster-state=existing" if arg == "--initial-cluster-state=new" else arg
            for arg in super().command()
        ]


def dns_peer(index: int) -> str:
    return f"http://demo-{index}.demo-peer.ns.svc.cluster.local:2380"


class World:
    """Member processes standing in for the StatefulSet's pods, and the operator's children."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.peer_ports = [free_port() for _ in range(MAX_MEMBERS)]
        self.client_ports = [free_port() for _ in range(MAX_MEMBERS)]
        self.members: dict[int, Member] = {}
        self.replicas = 0
        self.initial_cluster = ""
        self.children: dict[ChildKey, Json] = {}
        self.status: EtcdClusterStatus | None = None
        self.done: list[Action] = []
        self.refusals: list[str] = []

    def loopback_peer(self, index: int) -> str:
        return f"http://127.0.0.1:{self.peer_ports[index]}"

    def member(self, index: int, initial_cluster: str, *, joining: bool) -> Member:
        kind = JoiningMember if joining else Member
        return kind(
            "etcd",
            self.base / f"demo-{index}",
            name=f"demo-{index}",
            timing=FAST,
            client_port=self.client_ports[index],
            peer_port=self.peer_ports[index],
            initial_cluster=initial_cluster,
            cluster_token="ns-demo",
        )

    def bootstrap(self, size: int) -> None:
        initial = ",".join(f"demo-{i}={self.loopback_peer(i)}" for i in range(size))
        for i in range(size):
            self.members[i] = self.member(i, initial, joining=False)
            self.members[i].start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        for i in range(size):
            self.members[i].wait_ready(deadline)
        self.replicas = size

    def stop_all(self) -> None:
        for member in self.members.values():
            member.stop()

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members.values() if m.running]

    def to_loopback(self, initial_cluster: str) -> str:
        """The ConfigMap's DNS peer list, pointed at the loopback ports."""
        pairs = [pair.split("=", 1) for pair in initial_cluster.split(",")]
        return ",".join(
            f"{name}={self.loopback_peer(int(name.rsplit('-', 1)[1]))}" for name, _ in pairs
        )

    def to_dns(self, view: EtcdView) -> EtcdView:
        """etcd's view with loopback peer URLs shown as the pods' DNS peer URLs."""
        by_port = {self.loopback_peer(i): dns_peer(i) for i in range(MAX_MEMBERS)}
        members = tuple(
            dataclasses.replace(m, peer_urls=tuple(by_port.get(u, u) for u in m.peer_urls))
            for m in view.members
        )
        return dataclasses.replace(view, members=members)

    def statefulset_controller(self) -> None:
        """Pods follow the replicas: start the missing ordinals, stop those beyond."""
        for i in range(self.replicas):
            if i not in self.members or not self.members[i].running:
                joining = self.members.get(i) or self.member(
                    i, self.to_loopback(self.initial_cluster), joining=True
                )
                self.members[i] = joining
                joining.start()
        for i in sorted(self.members):
            if i >= self.replicas and self.members[i].running:
                self.members[i].stop()

    async def observe(self) -> Observed:
        async with EtcdClient(self.endpoints, timeout=2.0) as client:
            seen = await observe(client, 2.0)
        return Observed(
            children=dict(self.children),
            pods=tuple(
                PodState(f"demo-{i}", ready=True, phase="Running")
                for i, m in sorted(self.members.items())
                if m.running
            ),
            bootstrap_state="existing",
            statefulset=rolled_out(self.replicas),
            etcd=self.to_dns(seen) if seen is not None else None,
            pvcs=tuple(
                f"data-demo-{i}" for i, m in sorted(self.members.items()) if m.data_dir.exists()
            ),
        )

    async def change(self, client: EtcdClient, action: Action) -> None:
        """One membership change through ``members.membership``."""
        if isinstance(action, AddMember):
            index = int(action.name.rsplit("-", 1)[1])
            assert action.peer_url == dns_peer(index)
            added = await add_member(client, self.loopback_peer(index), learner=True)
            assert added.is_learner, f"{action}: {added} (members: {await client.member_list()})"
        elif isinstance(action, PromoteMember):
            outcome = await promote_if_ready(client, action.member_id)
            assert outcome in (Promotion.PROMOTED, Promotion.NOT_IN_SYNC, Promotion.ALREADY_VOTER)
        elif isinstance(action, MoveLeader):
            await move_leader(client, action.from_id, action.to_id)
        elif isinstance(action, RemoveMember):
            await remove_member(client, action.member_id)

    async def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, AddMember | PromoteMember | MoveLeader | RemoveMember):
                async with EtcdClient(self.endpoints, timeout=5.0) as client:
                    await self.change(client, action)
                    after = (await client.member_list()).members
                    await self.change(client, action)  # a repeat, as after a crash
                    assert (await client.member_list()).members == after
                self.done.append(action)
            elif isinstance(action, Apply | SetBootstrapState):
                manifest = action.manifest
                self.children[key_of(manifest)] = manifest
                if manifest["kind"] == "ConfigMap":
                    self.initial_cluster = manifest["data"][KEY_INITIAL_CLUSTER]
                if manifest["kind"] == "StatefulSet":
                    self.replicas = manifest["spec"]["replicas"]
                    self.statefulset_controller()
            elif isinstance(action, DeletePVC):
                index = int(action.name.rsplit("-", 1)[1])
                member = self.members[index]
                assert not member.running, f"{action.name} deleted under a running member"
                member.wipe()
                member.wipe()  # a repeat is harmless
                self.done.append(action)
            elif isinstance(action, PatchStatus):
                self.status = EtcdClusterStatus.model_validate(action.status)

    async def drive(self, replicas: int) -> EtcdCluster:
        """Pass after pass until a pass plans nothing but its status and etcd matches."""
        desired = cluster(replicas=replicas)
        deadline = time.monotonic() + DEADLINE_SECONDS
        delay = 0.05
        while True:
            desired = desired.model_copy(update={"status": self.status})
            observed = await self.observe()
            actions = plan(desired, observed, SETTINGS, datetime.now(UTC))
            try:
                await self.run(actions)
            except EtcdClientError as err:
                # A pass that fails is retried by the operator (kopf's TemporaryError); etcd
                # refuses a change right after start-up ("unhealthy cluster": its peers must
                # have been connected for 5 s) and while a leader changes.
                if err.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                self.refusals.append(err.message)
                actions = []
            for index in range(self.replicas):
                # A pod's member process must not have died (e.g. a join refused): show why.
                member = self.members[index]
                assert member.running or member.proc is None, member.log_tail()
            settled = (
                observed.etcd is not None
                and len(observed.etcd.members) == replicas
                and not observed.etcd.learners
                and all(m.healthy for m in observed.etcd.members)
                and bool(actions)
                and all(isinstance(a, PatchStatus | Event) for a in actions)
            )
            if settled:
                return desired
            if time.monotonic() > deadline:
                raise AssertionError(f"not converged to {replicas}; last actions: {actions}")
            # Poll interval between passes (the operator's timer), bounded by the deadline.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        w.bootstrap(3)
        yield w
    finally:
        w.stop_all()


def test_scale_out_then_in_through_the_planned_steps(world: World) -> None:
    async def scenario() -> None:
        await world.drive(3)
        assert world.done == []  # formed and matching: nothing to change

        # Scale out: the learner is added first, its process started with "existing", then
        # promoted once etcd finds it in sync.
        await world.drive(4)
        kinds = [type(a).__name__ for a in world.done]
        assert kinds[0] == "AddMember" and kinds[1:] and set(kinds[1:]) == {"PromoteMember"}
        assert world.done[0] == AddMember("demo-3", dns_peer(3))
        assert world.members[3].running
        assert "--initial-cluster-state=existing" in world.members[3].command()
        async with EtcdClient(world.endpoints, timeout=5.0) as client:
            listed = (await client.member_list()).members
            assert sorted(m.name for m in listed) == [f"demo-{i}" for i in range(4)]
            assert not any(m.is_learner for m in listed)
            # Hand leadership to the member that scale-in removes first.
            demo3 = next(m for m in listed if m.name == "demo-3")
            leader = await _leader(client)
            if leader != demo3.id:
                await client.move_leader(demo3.id)
            assert await _leader(client) == demo3.id
        assert world.status is not None and world.status.phase == "Running"

        # Scale in: leadership moves off demo-3 first, then demo-3 is removed, its process
        # stopped, and its data dir (claim) deleted.
        world.done.clear()
        await world.drive(3)
        assert [type(a).__name__ for a in world.done] == ["MoveLeader", "RemoveMember", "DeletePVC"]
        move, remove, delete = world.done
        assert isinstance(move, MoveLeader) and move.from_id == demo3.id
        assert remove == RemoveMember(demo3.id, "demo-3")
        assert delete == DeletePVC("data-demo-3", "ns")
        assert not world.members[3].running
        assert not world.members[3].data_dir.exists()
        async with EtcdClient(world.endpoints, timeout=5.0) as client:
            listed = (await client.member_list()).members
            assert sorted(m.name for m in listed) == ["demo-0", "demo-1", "demo-2"]
            assert await _leader(client) in {m.id for m in listed}
        assert world.status is not None and world.status.phase == "Running"

    asyncio.run(scenario())


async def _leader(client: EtcdClient) -> int:
    for endpoint in client.endpoints:
        status = await client.status(endpoint)
        if status.leader:
            return status.leader
    raise AssertionError("no member reports a leader")
