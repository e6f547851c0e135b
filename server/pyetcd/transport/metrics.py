"""What the peer transport counts: bytes, failures and stream state per peer, and probe RTTs.

etcd's rafthttp exports these as ``etcd_network_peer_*`` and ``etcd_network_active_peers``. The
transport only counts, in plain ints, because the counts sit on its per-message paths; the
server layer turns them into Prometheus families when ``/metrics`` is scraped
(``server.metrics.PeerCollector``), so this package needs neither ``prometheus_client`` nor
anything above it.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# etcd's rttSec buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), 0.1 ms to 3.2768 s.
RTT_BUCKETS: tuple[float, ...] = tuple(0.0001 * 2**i for i in range(16))


class Histogram:
    """Observations in fixed buckets (upper bounds inclusive, as Prometheus's ``le``)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One slot per bound and one past the last (+Inf); not cumulative.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, observations <= le)`` per bound, ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass(slots=True)
class PeerStats:
    """One remote member as the transport saw it.

    A count that is still zero has never been touched; the exporter leaves its series out, as
    a Go ``CounterVec`` has no series for a label value it was never given.
    """

    sent_bytes: int = 0  # Raft messages and snapshots, message bytes without framing
    received_bytes: int = 0
    sent_failures: int = 0  # messages dropped unsent, and streams lost
    received_failures: int = 0  # frames from this peer that could not be taken
    disconnects: int = 0
    probe_failures: int = 0  # not exported (etcd's prober only logs); for tests and debugging
    # None until the first outgoing stream comes up (etcd's activePeers has no series before).
    active: bool | None = None
    rtt: Histogram = field(default_factory=lambda: Histogram(RTT_BUCKETS))


class TransportMetrics:
    """Every peer's ``PeerStats``, by member id; kept after a peer is removed, as etcd keeps
    the series of a removed peer until it restarts."""

    def __init__(self) -> None:
        self.peers: dict[int, PeerStats] = {}

    def peer(self, peer_id: int) -> PeerStats:
        stats = self.peers.get(peer_id)
        if stats is None:
            stats = self.peers[peer_id] = PeerStats()
        return stats
