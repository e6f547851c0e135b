"""ReadIndex bookkeeping on the leader (etcd-io/raft read_only.go), for linearizable reads.

With ``ReadOnlyOption.SAFE`` (etcd's setting) a read request records the leader's commit index
and is answered only after a quorum of voters acknowledged a heartbeat carrying the request's
context: that proves no newer leader existed when the index was recorded. Heartbeat responses are
cumulative, so acknowledging one request also confirms every request queued before it.

``LEASE_BASED`` answers immediately, relying on the leader lease (check-quorum); it depends on
bounded clock drift and is not used by etcd by default.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2


class ReadOnlyOption(enum.Enum):
    SAFE = "ReadOnlySafe"
    LEASE_BASED = "ReadOnlyLeaseBased"


@dataclass(frozen=True)
class ReadState:
    """A read may be served once the applied index reaches ``index``."""

    index: int
    request_ctx: bytes


@dataclass
class ReadIndexStatus:
    req: raft_pb2.Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    """Pending read requests, in arrival order, keyed by their request context."""

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending_read_index: dict[bytes, ReadIndexStatus] = {}
        self.read_index_queue: list[bytes] = []

    def add_request(self, index: int, m: raft_pb2.Message) -> None:
        ctx = m.entries[0].Data
        if ctx in self.pending_read_index:
            return
        self.pending_read_index[ctx] = ReadIndexStatus(req=m, index=index)
        self.read_index_queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        """Record that ``node_id`` acknowledged the heartbeat for ``ctx``; the acks so far."""
        rs = self.pending_read_index.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Dequeue every request up to and including ``ctx`` (now confirmed by a quorum)."""
        if ctx not in self.pending_read_index:
            return []
        i = self.read_index_queue.index(ctx) + 1
        done = self.read_index_queue[:i]
        del self.read_index_queue[:i]
        return [self.pending_read_index.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        """The context every heartbeat carries, so any response can confirm pending reads."""
        return self.read_index_queue[-1] if self.read_index_queue else b""
