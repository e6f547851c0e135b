"""Observing a cluster when the member that answers first lags behind the leader."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from etcd_operator.members import observe
from pyetcd.client import (
    AlarmMember,
    EndpointHealth,
    EndpointStatus,
    EtcdClientError,
    Member,
    MemberList,
)

CLUSTER = 0xC1
LEADER = 1


def member(i: int, *, learner: bool = False) -> Member:
    return Member(i, f"demo-{i}", (f"http://p{i}:2380",), (f"http://c{i}:2379",), learner)


class FakeEtcd:
    """Endpoints ``http://c<i>:2379``; each member answers its own (possibly stale) list."""

    def __init__(self, views: dict[int, tuple[Member, ...]], answers_first: int) -> None:
        self.views = views
        self.answers_first = answers_first
        self.list_calls: list[str] = []

    @property
    def endpoints(self) -> Sequence[str]:
        return [f"http://c{i}:2379" for i in sorted(self.views)]

    @staticmethod
    def _id(endpoint: str) -> int:
        return int(endpoint.removeprefix("http://c").removesuffix(":2379"))

    async def member_list(self, endpoint: str | None = None) -> MemberList:
        assert endpoint is not None
        self.list_calls.append(endpoint)
        i = self._id(endpoint)
        if i not in self.views:
            raise EtcdClientError("connection refused", grpc.StatusCode.UNAVAILABLE)
        if i != self.answers_first and len(self.list_calls) <= len(self.views):
            # The first round: only the lagging member answers; observe takes the first
            # answer and cancels the calls still waiting.
            await asyncio.Event().wait()
        return MemberList(CLUSTER, i, self.views[i])

    async def status(self, endpoint: str) -> EndpointStatus:
        i = self._id(endpoint)
        if i not in self.views:
            raise EtcdClientError("connection refused", grpc.StatusCode.UNAVAILABLE)
        return EndpointStatus(endpoint, i, CLUSTER, LEADER, 2, 10, 10, 1, 1, "3.4.23", 5, False, ())

    async def health(self, endpoint: str) -> EndpointHealth:
        return EndpointHealth(endpoint, self._id(endpoint) in self.views, 0.001)

    async def alarm_list(self) -> list[AlarmMember]:
        return []

    async def cluster_version(self, endpoint: str) -> str:
        return "3.5.0"


def test_a_lagging_member_list_is_replaced_by_the_leaders() -> None:
    fresh = (member(1), member(2), member(3))  # demo-3 was added and promoted
    stale = (member(1), member(2))  # member 2 has not applied the add yet
    etcd = FakeEtcd({1: fresh, 2: stale, 3: fresh}, answers_first=2)
    view = asyncio.run(observe(etcd, deadline_seconds=1.0))
    assert view is not None
    assert [m.name for m in view.members] == ["demo-1", "demo-2", "demo-3"]
    assert not any(m.learner for m in view.members)
    assert view.leader is not None and view.leader.id == LEADER
    assert etcd.list_calls[-1] == "http://c1:2379"  # asked the leader last
    assert view.cluster_version == "3.5.0"


def test_the_leaders_own_list_is_not_asked_twice() -> None:
    fresh = (member(1), member(2, learner=True))
    etcd = FakeEtcd({1: fresh, 2: fresh}, answers_first=1)
    view = asyncio.run(observe(etcd, deadline_seconds=1.0))
    assert view is not None
    assert [(m.name, m.learner) for m in view.members] == [("demo-1", False), ("demo-2", True)]
    assert etcd.list_calls.count("http://c1:2379") == 1
