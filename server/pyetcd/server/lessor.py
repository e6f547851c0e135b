"""etcd's lessor as pure logic: leases, their attached keys, and expiry order.

No clock, no asyncio, no I/O: every call that depends on time takes `now` (monotonic seconds), and
persistence is left to the caller through `to_record`/`restore` (the `lease` bucket). The server
applies Grant/Revoke/Checkpoint from the Raft log in the same order on every member; only the
primary lessor (the leader's) tracks expiries, renews, and reports expired leases, which the
leader then revokes through Raft (etcd: `server/lease/lessor.go`).

Expiry order is a binary heap of `(deadline, seq, lease id)` with lazy deletion: a renew pushes a
new entry and the old one becomes stale (its `seq` no longer matches the lease's), so neither a
renew nor a revoke ever searches the heap, and finding expired leases costs O(log n) per lease
found, never a scan of all leases.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyetcd.proto.leasepb import lease_pb2
from pyetcd.server.errors import EtcdError

__all__ = [
    "EXPIRED_LEASE_RETRY_INTERVAL",
    "FOREVER",
    "LEASE_REVOKE_RATE",
    "MAX_LEASE_TTL",
    "NO_LEASE",
    "Lease",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseTTLTooLargeError",
    "LeaseTimeToLive",
    "Lessor",
    "LessorError",
    "NotPrimaryError",
    "lease_bucket_key",
    "min_lease_ttl",
]

NO_LEASE = 0
MAX_LEASE_TTL = 9_000_000_000
"""Seconds; etcd's `MaxLeaseTTL`."""
LEASE_REVOKE_RATE = 1000
"""etcd's `leaseRevokeRate`: the leader revokes at most this many expired leases per second."""
EXPIRED_LEASE_RETRY_INTERVAL = 3.0
"""etcd's `expiredLeaseRetryInterval`: an expired lease is reported again after this long if it
has not been revoked by then (say the revoke proposal was lost in a leader change)."""
FOREVER = math.inf
"""The expiry of a lease on a non-primary lessor: it never expires there."""
_MAX_INT64_NS_IN_SECONDS = ((1 << 63) - 1) // 1_000_000_000


class LessorError(EtcdError):
    """A lessor error: etcd's client-visible message and gRPC status code name.

    These subclass `EtcdError`, so they compare equal to `errors.ErrLeaseNotFound` & co.
    """

    MESSAGE = "etcdserver: lessor error"
    CODE = "UNKNOWN"

    def __init__(self, lease_id: int = NO_LEASE) -> None:
        super().__init__(self.MESSAGE, self.CODE)
        self.lease_id = lease_id


class LeaseNotFoundError(LessorError):
    MESSAGE = "etcdserver: requested lease not found"
    CODE = "NOT_FOUND"


class LeaseExistsError(LessorError):
    MESSAGE = "etcdserver: lease already exists"
    CODE = "FAILED_PRECONDITION"


class LeaseTTLTooLargeError(LessorError):
    MESSAGE = "etcdserver: too large lease TTL"
    CODE = "OUT_OF_RANGE"


class NotPrimaryError(LessorError):
    """Renew/keep-alive on a follower's lessor: the server must forward to the leader."""

    MESSAGE = "not a primary lessor"
    CODE = "UNAVAILABLE"


def min_lease_ttl(election_timeout_ms: int, heartbeat_interval_ms: int) -> int:
    """etcd: `ceil(((3 * electionTicks) / 2) * TickMs)` seconds, with integer tick arithmetic."""
    election_ticks = election_timeout_ms // heartbeat_interval_ms
    return math.ceil((3 * election_ticks) // 2 * heartbeat_interval_ms / 1000)


def lease_bucket_key(lease_id: int) -> bytes:
    """Key in the `lease` bucket: the int64 ID as 8 bytes big-endian (two's complement)."""
    return (lease_id & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")


@dataclass(slots=True, eq=False)
class Lease:
    """One lease. `ttl` is the granted TTL after etcd's minimum was applied."""

    id: int
    ttl: int
    remaining_ttl: int = 0
    """Checkpointed remaining TTL (lease checkpointing); 0 when not checkpointed."""
    expiry: float = FOREVER
    keys: set[bytes] = field(default_factory=set)
    heap_seq: int = -1
    """The `seq` of this lease's live heap entry; older entries for it are stale."""
    heap_deadline: float = FOREVER
    """When the live heap entry falls due: the expiry, or a retry time once reported."""

    def remaining(self, now: float) -> float:
        """Seconds until expiry (`Lease.Remaining`); `FOREVER` on a non-primary lessor."""
        return self.expiry - now

    def expired(self, now: float) -> bool:
        return self.expiry - now <= 0

    def effective_ttl(self) -> int:
        """`Lease.RemainingTTL()`: the checkpointed remaining TTL if set, else the TTL."""
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """What `LeaseTimeToLive` reports: remaining whole seconds, granted TTL, attached keys."""

    id: int
    remaining: int
    """The response's `TTL`."""
    granted: int
    """The response's `grantedTTL`."""
    keys: tuple[bytes, ...]
    """Sorted."""


class Lessor:
    """Leases by ID, keys by lease, and the expiry heap of the primary lessor."""

    def __init__(
        self,
        min_ttl: int,
        *,
        expired_retry_interval: float = EXPIRED_LEASE_RETRY_INTERVAL,
    ) -> None:
        self.min_ttl = min_ttl
        self.expired_retry_interval = expired_retry_interval
        self.primary = False
        self._leases: dict[int, Lease] = {}
        self._key_to_lease: dict[bytes, int] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._seq = 0
        self.heap_operations = 0
        """Pushes + pops so far: lets tests check the cost of expiry tracking without timing."""
        # etcd's etcd_debugging_lease_{granted,revoked,renewed}_total; a restore counts none.
        self.granted = 0
        self.revoked = 0
        self.renewed = 0

    # ------------------------------------------------------------------ leases

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def grant(self, lease_id: int, ttl: int, now: float) -> Lease:
        """Apply a LeaseGrant. The server picks an ID for `ID=0` requests before proposing."""
        if lease_id == NO_LEASE:
            raise LeaseNotFoundError(lease_id)
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError(lease_id)
        if lease_id in self._leases:
            raise LeaseExistsError(lease_id)
        # etcd raises a too-small TTL silently, so that a lease cannot expire during an election.
        lease = Lease(id=lease_id, ttl=max(ttl, self.min_ttl))
        self._leases[lease_id] = lease
        if self.primary:
            self._refresh(lease, now, 0.0)
        self.granted += 1
        return lease

    def revoke(self, lease_id: int) -> list[bytes]:
        """Apply a LeaseRevoke: forget the lease and return its keys (sorted) for the caller to
        delete in the same backend transaction, as etcd does."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFoundError(lease_id)
        keys = sorted(lease.keys)
        for key in keys:
            if self._key_to_lease.get(key) == lease_id:
                del self._key_to_lease[key]
        # Its heap entry, if any, is now stale and is dropped when it reaches the top.
        self.revoked += 1
        return keys

    def renew(self, lease_id: int, now: float) -> int:
        """A keep-alive on the primary: push the expiry out by the TTL; returns the TTL.

        etcd makes a keep-alive for an expired-but-not-yet-revoked lease wait for its revocation
        and then answers "not found"; pure logic cannot wait, so it answers "not found" at once.
        """
        if not self.primary:
            raise NotPrimaryError(lease_id)
        lease = self._leases.get(lease_id)
        if lease is None or lease.expired(now):
            raise LeaseNotFoundError(lease_id)
        # A keep-alive restarts the full TTL: forget a checkpointed remainder (etcd clears it
        # through a checkpoint proposal; the server proposes that when remaining_ttl was > 0).
        lease.remaining_ttl = 0
        self._refresh(lease, now, 0.0)
        self.renewed += 1
        return lease.ttl

    def checkpoint(self, lease_id: int, remaining_ttl: int, now: float) -> None:
        """Apply a LeaseCheckpoint: persist the remaining TTL so a new leader does not restart
        the lease at its full TTL."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return  # etcd ignores checkpoints of leases revoked meanwhile
        lease.remaining_ttl = remaining_ttl
        if self.primary:
            self._refresh(lease, now, 0.0)

    def time_to_live(self, lease_id: int, now: float) -> LeaseTimeToLive | None:
        """`LeaseTimeToLive`: remaining seconds truncated toward zero, as Go's int64(seconds).

        None for an unknown lease (the RPC then answers `TTL=-1`, not an error).
        """
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        if lease.expiry == FOREVER:
            # etcd's Remaining() is MaxInt64 ns off the leader (followers forward this RPC).
            ttl = _MAX_INT64_NS_IN_SECONDS
        else:
            ttl = int(lease.remaining(now))
        return LeaseTimeToLive(lease.id, ttl, lease.ttl, tuple(sorted(lease.keys)))

    def leases(self) -> list[int]:
        """All lease IDs, soonest expiry first (etcd's `Leases()` order)."""
        ordered = sorted(self._leases.values(), key=lambda lease: (lease.expiry, lease.id))
        return [lease.id for lease in ordered]

    # ------------------------------------------------------------------ keys

    def attach(self, lease_id: int, keys: bytes | Iterable[bytes]) -> None:
        """Attach one key or several to a lease. A key attached to another lease moves here."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(lease_id)
        for key in _key_list(keys):
            previous = self._key_to_lease.get(key)
            if previous is not None and previous != lease_id:
                old = self._leases.get(previous)
                if old is not None:
                    old.keys.discard(key)
            lease.keys.add(key)
            self._key_to_lease[key] = lease_id

    def detach(self, lease_id: int, keys: bytes | Iterable[bytes]) -> None:
        """Detach one key or several from a lease (keys attached elsewhere are left alone)."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(lease_id)
        for key in _key_list(keys):
            lease.keys.discard(key)
            if self._key_to_lease.get(key) == lease_id:
                del self._key_to_lease[key]

    def get_lease(self, key: bytes) -> int:
        """The lease a key is attached to, or `NO_LEASE`."""
        return self._key_to_lease.get(key, NO_LEASE)

    # ------------------------------------------------------------------ expiry

    def expired(self, now: float, limit: int) -> list[int]:
        """Up to `limit` expired lease IDs, earliest first (etcd's `findExpiredLeases`).

        Each reported lease is re-queued `expired_retry_interval` later, so that it is reported
        again if its revocation does not happen (etcd does the same). Stale heap entries met on
        the way are dropped. Costs O(log n) per lease examined, nothing when none is due.
        """
        found: list[int] = []
        heap = self._heap
        while heap and len(found) < limit:
            deadline, seq, lease_id = heap[0]
            if deadline > now:
                break  # nothing (live or stale) is due: O(1) when there is nothing to do
            heapq.heappop(heap)
            self.heap_operations += 1
            lease = self._leases.get(lease_id)
            if lease is None or lease.heap_seq != seq:
                continue  # stale: revoked, renewed or re-queued since this entry was pushed
            self._push(lease, now + self.expired_retry_interval)
            if lease.expired(now):
                found.append(lease_id)
        return found

    def next_expiry(self) -> float:
        """The earliest live deadline in the heap (`FOREVER` if none): when to look next."""
        heap = self._heap
        while heap:
            _, seq, lease_id = heap[0]
            lease = self._leases.get(lease_id)
            if lease is not None and lease.heap_seq == seq:
                return heap[0][0]
            heapq.heappop(heap)
            self.heap_operations += 1
        return FOREVER

    def promote(self, now: float, extend: float = 0.0) -> None:
        """This member became leader: restart every lease from `now + extend` (etcd passes the
        election timeout), then spread piled-up expiries so at most 3/4 of the revoke rate fall
        due in any one second (etcd's `Promote`)."""
        self.primary = True
        leases = list(self._leases.values())
        for lease in leases:
            lease.expiry = now + extend + lease.effective_ttl()
        if len(leases) >= LEASE_REVOKE_RATE:
            leases.sort(key=lambda lease: lease.expiry)
            base_window = leases[0].remaining(now)
            next_window = base_window + 1.0
            expires = 0
            target_per_second = (3 * LEASE_REVOKE_RATE) // 4
            for lease in leases:
                remaining = lease.remaining(now)
                if remaining > next_window:
                    base_window = remaining
                    next_window = base_window + 1.0
                    expires = 1
                    continue
                expires += 1
                if expires <= target_per_second:
                    continue
                # If leases are extended by n seconds, leases n seconds ahead of the base window
                # should be extended by only one second.
                delay = expires / target_per_second - (remaining - base_window)
                next_window = base_window + delay
                lease.expiry = now + delay + extend + lease.effective_ttl()
        for lease in leases:
            lease.heap_deadline = lease.expiry
        self._rebuild_heap()

    def demote(self) -> None:
        """This member lost leadership: leases stop expiring here."""
        self.primary = False
        for lease in self._leases.values():
            lease.expiry = FOREVER
            lease.heap_seq = -1
            lease.heap_deadline = FOREVER
        self._heap.clear()

    # ------------------------------------------------------------------ persistence

    @staticmethod
    def to_record(lease: Lease) -> bytes:
        """The `lease` bucket value: `leasepb.Lease{ID, TTL, RemainingTTL}`."""
        return lease_pb2.Lease(
            ID=lease.id, TTL=lease.ttl, RemainingTTL=lease.remaining_ttl
        ).SerializeToString()

    def restore(self, records: Iterable[bytes | lease_pb2.Lease], now: float | None = None) -> None:
        """Rebuild from the `lease` bucket values (keys are re-attached by the MVCC restore).

        As etcd's `initAndRecover`: TTLs below the minimum are raised, and expiries are
        "forever" until `promote` starts the clocks, unless this lessor is already primary and
        `now` is given, in which case the restored leases start counting from `now`.
        """
        self._leases.clear()
        self._key_to_lease.clear()
        self._heap.clear()
        for record in records:
            pb = lease_pb2.Lease.FromString(record) if isinstance(record, bytes) else record
            self._leases[pb.ID] = Lease(
                id=pb.ID, ttl=max(pb.TTL, self.min_ttl), remaining_ttl=pb.RemainingTTL
            )
        if self.primary and now is not None:
            for lease in self._leases.values():
                lease.expiry = lease.heap_deadline = now + lease.effective_ttl()
            self._rebuild_heap()

    # ------------------------------------------------------------------ internals

    def _refresh(self, lease: Lease, now: float, extend: float) -> None:
        lease.expiry = now + extend + lease.effective_ttl()
        self._push(lease, lease.expiry)

    def _push(self, lease: Lease, deadline: float) -> None:
        self._seq += 1
        lease.heap_seq = self._seq
        lease.heap_deadline = deadline
        heapq.heappush(self._heap, (deadline, self._seq, lease.id))
        self.heap_operations += 1
        # Lazy deletion leaves stale entries behind; rebuild when they outnumber live ones so
        # the heap stays O(number of leases). Amortised O(1) per push.
        if len(self._heap) > 2 * len(self._leases) + 64:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        entries: list[tuple[float, int, int]] = []
        for lease in self._leases.values():
            if lease.heap_deadline == FOREVER:
                lease.heap_seq = -1
                continue
            self._seq += 1
            lease.heap_seq = self._seq
            entries.append((lease.heap_deadline, self._seq, lease.id))
        heapq.heapify(entries)
        self._heap = entries
        self.heap_operations += len(entries)


def _key_list(keys: bytes | Iterable[bytes]) -> Iterable[bytes]:
    # One key is bytes, which is itself iterable (of ints): never iterate it.
    return (keys,) if isinstance(keys, bytes) else keys
