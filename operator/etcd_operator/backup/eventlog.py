"""The event log: what a continuous backup records after a full backup, in the format that
``pyetcdutl snapshot restore --replay`` writes into a restored db.

A log is a sequence of records ``kind (1 byte) | length (4 bytes, big-endian) | payload``
(``pyetcd.mvcc.replay`` reads it; a test holds the two sides to each other):

- ``E``: an ``mvccpb.Event`` as the watch sent it;
- ``L``: a ``leasepb.Lease{ID, TTL}``, before the first event that attaches a key to it (lease
  grants are no watch events, so the recorder asks the lease's TTL when it first sees the lease);
- ``T``: 8 bytes, big-endian unix milliseconds: when the recorder received the events after it.

Revisions in a log follow one another: a watch of the whole key space sees every revision,
each whole and in order. Pure code: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2

from etcd_operator.backup.errors import CorruptObjectError

EVENT = b"E"
LEASE = b"L"
TIME = b"T"
_HEAD = struct.Struct(">cI")
_TIME = struct.Struct(">Q")


class EventLog:
    """A log being written: events (whole revisions, in order), leases and time marks."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0
        self.events = 0
        self.first_revision = 0  # 0 while no event
        self.last_revision = 0

    def _record(self, kind: bytes, payload: bytes) -> None:
        self._parts.append(_HEAD.pack(kind, len(payload)))
        self._parts.append(payload)
        self.size += _HEAD.size + len(payload)

    def mark_time(self, unix_ms: int) -> None:
        """The events after this were received at ``unix_ms``."""
        self._record(TIME, _TIME.pack(unix_ms))

    def add_lease(self, lease_id: int, ttl: int) -> None:
        self._record(LEASE, lease_pb2.Lease(ID=lease_id, TTL=ttl).SerializeToString())

    def add_event(self, event: kv_pb2.Event) -> None:
        revision = event.kv.mod_revision
        if revision < self.last_revision:
            raise ValueError(f"revision {revision} after {self.last_revision}")
        self._record(EVENT, event.SerializeToString())
        self.events += 1
        self.first_revision = self.first_revision or revision
        self.last_revision = revision

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)


@dataclass(frozen=True)
class Record:
    """One record read back: an event, a lease or a time mark (exactly one is set)."""

    event: kv_pb2.Event | None = None
    lease: lease_pb2.Lease | None = None
    unix_ms: int | None = None


def read_log(data: bytes, name: str = "the event log") -> Iterator[Record]:
    """The records of a whole log; :class:`CorruptObjectError` if it is damaged."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if len(view) - offset < _HEAD.size:
            raise CorruptObjectError(f"{name} is truncated: a record header is cut")
        kind, length = _HEAD.unpack_from(view, offset)
        start = offset + _HEAD.size
        payload = bytes(view[start : start + length])
        if len(payload) < length:
            raise CorruptObjectError(f"{name} is truncated: a record is cut")
        offset = start + length
        try:
            if kind == EVENT:
                yield Record(event=kv_pb2.Event.FromString(payload))
            elif kind == LEASE:
                yield Record(lease=lease_pb2.Lease.FromString(payload))
            elif kind == TIME and length == _TIME.size:
                yield Record(unix_ms=_TIME.unpack(payload)[0])
            else:
                raise CorruptObjectError(f"{name} is corrupt: unknown record {kind!r}")
        except CorruptObjectError:
            raise
        except Exception as err:  # protobuf's DecodeError
            raise CorruptObjectError(f"{name} is corrupt: {err}") from None


def write_records(records: Iterable[Record]) -> bytes:
    """A log of ``records`` (to cut a log at a revision, or join logs, after ``read_log``)."""
    log = EventLog()
    for record in records:
        if record.event is not None:
            log.add_event(record.event)
        elif record.lease is not None:
            log.add_lease(record.lease.ID, record.lease.TTL)
        elif record.unix_ms is not None:
            log.mark_time(record.unix_ms)
    return log.to_bytes()
