"""The etcdserverpb.Cluster service (membership)."""

from __future__ import annotations

from typing import Any

from pyetcd.api.rpc import Services
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.etcdserver import EtcdServer
from pyetcd.server.membership import Member

SERVICE = "etcdserverpb.Cluster"


def to_pb(m: Member) -> rpc_pb2.Member:
    return rpc_pb2.Member(
        ID=m.id,
        name=m.name,
        peerURLs=list(m.peer_urls),
        clientURLs=list(m.client_urls),
        isLearner=m.is_learner,
    )


def register(services: Services, server: EtcdServer) -> None:
    def members() -> list[rpc_pb2.Member]:
        return [to_pb(m) for m in server.member_list()]

    async def member_list(_req: rpc_pb2.MemberListRequest, _ctx: Any) -> rpc_pb2.MemberListResponse:
        # etcd's cluster service fills the header without a revision.
        header = server.header(0)
        return rpc_pb2.MemberListResponse(header=header, members=members())

    async def unsupported(_req: Any, _ctx: Any) -> Any:
        # Membership changes need the multi-member Raft; until then etcd's own answer for a
        # member that cannot take part in reconfiguration.
        raise errors.ErrNotCapable

    services.unary(SERVICE, "MemberList", rpc_pb2.MemberListRequest, member_list)
    services.unary(SERVICE, "MemberAdd", rpc_pb2.MemberAddRequest, unsupported)
    services.unary(SERVICE, "MemberRemove", rpc_pb2.MemberRemoveRequest, unsupported)
    services.unary(SERVICE, "MemberUpdate", rpc_pb2.MemberUpdateRequest, unsupported)
    services.unary(SERVICE, "MemberPromote", rpc_pb2.MemberPromoteRequest, unsupported)
