"""The one error type of the client: etcd's message, the gRPC status code and the endpoint."""

from __future__ import annotations

import grpc


class EtcdClientError(Exception):
    """An etcd call failed: ``message`` is etcd's own text (e.g. ``etcdserver: member not found``).

    ``code`` is the gRPC status code; callers decide on it (``UNAVAILABLE`` and
    ``DEADLINE_EXCEEDED`` mean "try another endpoint or later", ``NOT_FOUND`` and
    ``FAILED_PRECONDITION`` are answers).
    """

    def __init__(self, message: str, code: grpc.StatusCode, endpoint: str | None = None) -> None:
        where = f" ({endpoint})" if endpoint else ""
        super().__init__(f"{code.name}: {message}{where}")
        self.message = message
        self.code = code
        self.endpoint = endpoint

    @property
    def unreachable(self) -> bool:
        """True when the endpoint did not answer (down, partitioned, or too slow)."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    @classmethod
    def from_rpc(cls, err: grpc.aio.AioRpcError, endpoint: str | None) -> EtcdClientError:
        return cls(err.details() or "", err.code(), endpoint)


class WatchCompactedError(EtcdClientError):
    """A watch asked for history that compaction removed: it starts at ``compact_revision``
    at the earliest."""

    def __init__(self, compact_revision: int, endpoint: str | None = None) -> None:
        super().__init__(
            f"mvcc: required revision has been compacted (revisions before "
            f"{compact_revision} are gone)",
            grpc.StatusCode.OUT_OF_RANGE,
            endpoint,
        )
        self.compact_revision = compact_revision
