"""Replay a log of watch events into a stopped member's db: the step of a point-in-time restore.

A continuous backup (the operator's ``spec.backup.continuous``) records what a watch of the
whole key space saw after a full backup. Restoring to a revision between two full backups is the
older backup plus that log up to the revision. This module writes the log into the backup's db,
offline, before ``snapshot restore`` turns the db into a member (``pyetcdutl snapshot restore
--replay``).

The log is a sequence of records ``kind (1 byte) | length (4 bytes, big-endian) | payload``:

- ``E``: an ``mvccpb.Event`` as the watch sent it (its KeyValue has the create and mod
  revisions, the version and the lease the server gave it);
- ``L``: a ``leasepb.Lease{ID, TTL}``: a lease that later events attach keys to (lease grants
  are not watch events);
- ``T``: 8 bytes, big-endian unix milliseconds: when the events after it were seen (used by
  whoever picks the revision to restore to; nothing to replay).

Replaying writes what etcd's apply wrote for those revisions, so that etcd, and pyetcd, rebuild
the same key index from the result: a put as the event's KeyValue at ``{revision, sub}``, a
delete as the tombstone ``{revision, sub}t`` holding ``KeyValue{key}``, ``sub`` counting a
revision's events in order, and a lease the log names into the ``lease`` bucket unless the db
has it. A watch sends every change of a revision together and in order, so this is exact.

Events at or below the db's current revision are in it already (a full backup is taken at or
after the revision it records) and are skipped. After them revisions must follow one another
from the db's current revision + 1, without a hole: a gap would be a history that never was,
and is refused (:class:`ReplayError`), as are a truncated log and an event without a revision.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from pyetcd.backend.contract import KEY, LEASE, META, Backend
from pyetcd.mvcc.compaction import FINISHED_COMPACT_KEY, SCHEDULED_COMPACT_KEY
from pyetcd.mvcc.revision import bytes_to_rev, rev_to_bytes, tombstone_bytes
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2

__all__ = [
    "EVENT",
    "LEASE_RECORD",
    "TIME",
    "ReplayError",
    "ReplayResult",
    "current_revision",
    "read_records",
    "replay",
]

EVENT = b"E"
LEASE_RECORD = b"L"
TIME = b"T"
_KINDS = (EVENT, LEASE_RECORD, TIME)
_HEAD = struct.Struct(">cI")
# A record is one event (etcd caps a request at 1.5 MiB by default, a key and value together
# below that) or a small lease or time record: anything far larger is a damaged log.
MAX_RECORD = 64 << 20
# Writes held in memory before a commit: bounded memory, however long the log.
COMMIT_EVERY = 10_000


_M = TypeVar("_M", kv_pb2.Event, lease_pb2.Lease)


class ReplayError(Exception):
    """The log cannot be replayed onto this db; the message says why, in one line."""


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: the db's revision before, the revisions written, and how much."""

    base: int  # the db's current revision before the replay
    first: int  # first revision written (0: none)
    last: int  # last revision written; the db's current revision after (= base when none)
    events: int
    skipped: int  # events at or below base, already in the db
    leases: int  # leases added to the lease bucket


def read_records(stream: BinaryIO, name: str = "the event log") -> Iterator[tuple[bytes, bytes]]:
    """The (kind, payload) records of a log, in order; :class:`ReplayError` if it is damaged."""
    offset = 0
    while True:
        head = stream.read(_HEAD.size)
        if not head:
            return
        if len(head) < _HEAD.size:
            raise ReplayError(f"{name} is truncated at byte {offset}: a record header is cut")
        kind, length = _HEAD.unpack(head)
        if kind not in _KINDS:
            raise ReplayError(f"{name} is damaged at byte {offset}: unknown record kind {kind!r}")
        if length > MAX_RECORD:
            raise ReplayError(f"{name} is damaged at byte {offset}: a {length}-byte record")
        payload = stream.read(length)
        if len(payload) < length:
            raise ReplayError(f"{name} is truncated at byte {offset}: a record is cut")
        offset += _HEAD.size + length
        yield kind, payload


def current_revision(backend: Backend) -> int:
    """The revision a server opening this db starts at (as ``KVStore`` restores it): the last
    main revision in the ``key`` bucket, or the compaction revision when that is higher; 1 for
    an empty db, whose first write is revision 2."""
    latest = 1
    for key, _ in backend.range(KEY, b""):
        latest = max(latest, bytes_to_rev(key)[0])
    for marker in (FINISHED_COMPACT_KEY, SCHEDULED_COMPACT_KEY):
        raw = backend.get(META, marker)
        if raw:
            latest = max(latest, bytes_to_rev(raw)[0])
    return latest


def replay(backend: Backend, records: Iterable[tuple[bytes, bytes]]) -> ReplayResult:
    """Write the log's events after the db's current revision into ``backend``, committing as
    it goes; :class:`ReplayError` on a gap or a damaged record (the caller discards the db)."""
    for bucket in (KEY, META, LEASE):
        backend.create_bucket(bucket)
    base = current_revision(backend)
    leases: dict[int, bytes] = {}  # announced by the log, written when a key needs one
    written_leases = 0
    first = 0
    last = base
    sub = 0
    events = skipped = pending = 0
    for kind, payload in records:
        if kind == LEASE_RECORD:
            lease = _parse(lease_pb2.Lease, payload, "lease")
            leases[lease.ID] = lease_pb2.Lease(ID=lease.ID, TTL=lease.TTL).SerializeToString()
            continue
        if kind != EVENT:
            continue
        event = _parse(kv_pb2.Event, payload, "event")
        kv = event.kv
        rev = kv.mod_revision
        if rev <= 0:
            raise ReplayError(f"an event for key {kv.key!r} has no revision")
        if rev <= base:
            skipped += 1
            continue
        if rev == last:
            sub += 1
        elif rev == last + 1:
            sub = 0
            last = rev
            first = first or rev
        else:
            what = "goes back" if rev < last else f"skips revisions {last + 1}..{rev - 1}"
            raise ReplayError(
                f"the event log {what}: it has revision {rev} after {last}, and the db is at "
                f"revision {base}"
            )
        if event.type == kv_pb2.Event.DELETE:
            value = kv_pb2.KeyValue(key=kv.key).SerializeToString()
            backend.put(KEY, tombstone_bytes(rev, sub), value, seq=True)
        else:
            if kv.lease and kv.lease not in leases and not _has_lease(backend, kv.lease):
                raise ReplayError(
                    f"key {kv.key!r} at revision {rev} is attached to lease {kv.lease:x}, "
                    "which neither the db nor the log has"
                )
            if kv.lease in leases:
                record = leases.pop(kv.lease)
                if not _has_lease(backend, kv.lease):
                    backend.put(LEASE, _lease_key(kv.lease), record)
                    written_leases += 1
            backend.put(KEY, rev_to_bytes(rev, sub), kv.SerializeToString(), seq=True)
        events += 1
        pending += 1
        if pending >= COMMIT_EVERY:
            backend.commit()
            pending = 0
    backend.commit()
    return ReplayResult(
        base=base,
        first=first,
        last=last,
        events=events,
        skipped=skipped,
        leases=written_leases,
    )


def _parse(cls: type[_M], payload: bytes, what: str) -> _M:
    try:
        return cls.FromString(payload)
    except Exception as err:  # protobuf's DecodeError; one line, no traceback
        raise ReplayError(f"the event log has an unreadable {what} record: {err}") from None


def _lease_key(lease_id: int) -> bytes:
    return (lease_id & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")


def _has_lease(backend: Backend, lease_id: int) -> bool:
    return backend.get(LEASE, _lease_key(lease_id)) is not None
