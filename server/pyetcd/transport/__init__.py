"""pyetcd.transport: the peer transport between the members of one cluster.

Raft messages travel over one persistent TCP stream per peer (``peer.Transport``); snapshots to a
lagging member travel on a connection of their own, followed by the backend's bytes; a few peer
requests (the membership of a cluster a new member joins, lease keep-alives forwarded to the
leader, promotions forwarded to the leader, RTT probes) are one request and one answer on a short
connection. What the transport counts (``metrics.TransportMetrics``) the server exports.
"""

from pyetcd.transport.metrics import TransportMetrics
from pyetcd.transport.peer import (
    PeerRequestError,
    PeerTLS,
    Transport,
    TransportError,
    TransportHandler,
    fetch_cluster,
)

__all__ = [
    "PeerRequestError",
    "PeerTLS",
    "Transport",
    "TransportError",
    "TransportHandler",
    "TransportMetrics",
    "fetch_cluster",
]
