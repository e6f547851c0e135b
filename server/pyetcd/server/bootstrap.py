"""Before a member has a log of its own: what the running cluster says about it (etcd's
bootstrap.go and cluster_util.go). A member joining an existing cluster asks the peers
``--initial-cluster`` names for the members (GetClusterFromRemotePeers); a member told to
bootstrap a new cluster on an empty data dir first asks whether the peers already run it, and
refuses if so (isMemberBootstrapped): its data dir was lost after it had started.
"""

from __future__ import annotations

import time

from pyetcd.server import storage
from pyetcd.server.config import ServerConfig
from pyetcd.server.membership import Cluster, Member
from pyetcd.transport import PeerTLS, TransportError, fetch_cluster

JOIN_FETCH_TIMEOUT = 30.0
# etcd bounds isMemberBootstrapped by the bootstrap timeout; a peer that does not answer in
# this time is taken as not started yet.
BOOTSTRAP_PROBE_TIMEOUT = 1.0


def fetch_existing_cluster(
    cfg: ServerConfig, peer_tls: PeerTLS, attempts: int = 0
) -> Cluster | None:
    """For ``--initial-cluster-state existing``: the members of the running cluster, from
    the peers named in ``--initial-cluster`` (etcd's GetClusterFromRemotePeers); retried
    until JOIN_FETCH_TIMEOUT, or ``attempts`` times if given."""
    if cfg.initial_cluster_state != "existing":
        return None
    urls = other_peer_urls(cfg)
    deadline = time.monotonic() + JOIN_FETCH_TIMEOUT
    tried = 0
    while True:
        tried += 1
        try:
            cluster_id, members_json = fetch_cluster(urls, tls=peer_tls)
        except TransportError as exc:
            if time.monotonic() >= deadline or tried == attempts:
                raise storage.StorageError(
                    f"cannot fetch cluster info from peer urls: {exc}"
                ) from None
            time.sleep(0.2)  # blocking on purpose: nothing else runs before start-up
            continue
        members = {m.id: m for m in (Member.from_json(j) for j in members_json)}
        return Cluster(cluster_id, members)


def other_peer_urls(cfg: ServerConfig) -> list[str]:
    """The peer URLs ``--initial-cluster`` gives the other members: whom to ask about the
    cluster before this member has a log of its own."""
    mine = {str(u) for u in cfg.initial_advertise_peer_urls}
    return [
        str(u)
        for name, peer_urls in cfg.initial_cluster.items()
        for u in peer_urls
        if name != cfg.name and str(u) not in mine
    ]


def refuse_if_bootstrapped(cfg: ServerConfig, peer_tls: PeerTLS) -> None:
    """For ``--initial-cluster-state new`` on an empty data dir: refuse if the peers already
    run this member (etcd's isMemberBootstrapped), i.e. its data dir was lost after it had
    started; a member that bootstrapped a second cluster with the same ID would be worse."""
    if cfg.initial_cluster_state != "new":
        return
    me = Cluster.from_initial_cluster(cfg).member_by_name(cfg.name)
    if me is None:
        return  # open_storage says what is wrong with --initial-cluster
    urls = other_peer_urls(cfg)
    if not urls:
        return
    try:
        cluster_id, members_json = fetch_cluster(
            urls, timeout=BOOTSTRAP_PROBE_TIMEOUT, tls=peer_tls
        )
    except TransportError:
        return  # no peer up yet: a new cluster forming
    remote = {m.id: m for m in (Member.from_json(j) for j in members_json)}
    if storage.is_bootstrapped(remote.get(me.id)):
        raise storage.already_bootstrapped(cfg, remote[me.id], cluster_id)
