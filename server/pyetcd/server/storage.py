"""A member's data dir: etcd's layout, and bringing it up new or from what is on disk.

``<data-dir>/member/wal`` holds the WAL, ``<data-dir>/member/snap`` the Raft snapshots and ``db``,
the bbolt backend. A member of a new cluster writes its bootstrap entries (one ConfChange per
initial member, as etcd does) to a fresh WAL; a member joining an existing cluster
(``--initial-cluster-state existing``) starts an empty WAL with the IDs the cluster gave it, and
learns the log (or a snapshot) from the leader; a restarted member reads the newest snapshot and
the WAL after it. The server replays the log into its Raft storage; entries the backend has
already applied (up to ``meta/consistent_index``) are skipped by the apply.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pyetcd.backend import contract
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.proto.etcdserverpb import etcdserver_pb2
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.server.config import ServerConfig
from pyetcd.server.membership import Cluster, Member
from pyetcd.server.v2store import members_from_v2_store
from pyetcd.snap.snapshotter import Snapshotter
from pyetcd.wal import files as wal_files
from pyetcd.wal.wal import WAL, valid_snapshot_entries

log = logging.getLogger(__name__)
U64 = struct.Struct(">Q")
CONSISTENT_INDEX = b"consistent_index"
TERM = b"term"
AUTH_REVISION = b"authRevision"
CLUSTER_VERSION = b"clusterVersion"


class StorageError(Exception):
    """The data dir cannot be used; the message says which file and why."""


@dataclass
class Storage:
    """Everything opened from the data dir, ready for the server to take over."""

    backend: BoltBackend
    wal: WAL
    snapshotter: Snapshotter
    member_id: int
    cluster_id: int
    hard_state: raft_pb2.HardState
    entries: list[raft_pb2.Entry]  # the log after the last snapshot
    # The Raft snapshot the log starts after (None: the log starts at index 1).
    snapshot: raft_pb2.Snapshot | None
    snapshot_index: int
    snapshot_term: int
    consistent_index: int

    @property
    def last_index(self) -> int:
        return self.entries[-1].Index if self.entries else self.snapshot_index

    @property
    def last_term(self) -> int:
        return self.entries[-1].Term if self.entries else self.snapshot_term


def member_dir(data_dir: str) -> Path:
    return Path(data_dir) / "member"


def read_consistent_index(backend: contract.Backend) -> tuple[int, int]:
    raw = backend.get(contract.META, CONSISTENT_INDEX)
    term = backend.get(contract.META, TERM)
    return (
        U64.unpack(raw)[0] if raw and len(raw) == 8 else 0,
        U64.unpack(term)[0] if term and len(term) == 8 else 0,
    )


def write_consistent_index(backend: contract.Backend, index: int) -> None:
    # etcd 3.5 also keeps meta/term; nothing here reads it, and leaving it out keeps the file's
    # contents identical to what etcd 3.4 writes.
    backend.put(contract.META, CONSISTENT_INDEX, U64.pack(index))


def init_auth(backend: contract.Backend) -> None:
    """etcd's auth store writes revision 1 when it first opens a backend."""
    if backend.get(contract.AUTH, AUTH_REVISION) is None:
        backend.put(contract.AUTH, AUTH_REVISION, U64.pack(1))


def conf_change_entry(index: int, term: int, member: Member) -> raft_pb2.Entry:
    context = member.to_json().encode()
    cc = raft_pb2.ConfChange(
        id=0,
        type=raft_pb2.ConfChangeAddNode,
        node_id=member.id,
        context=context,
    )
    return raft_pb2.Entry(
        Term=term, Index=index, Type=raft_pb2.EntryConfChange, Data=cc.SerializeToString()
    )


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def has_wal(cfg: ServerConfig) -> bool:
    """Whether the data dir already holds a WAL (a restart rather than a first start).

    An unreadable data dir counts as none here; ``open_storage`` then says what is wrong."""
    try:
        return wal_files.exists(str(member_dir(cfg.data_dir) / "wal"))
    except OSError:
        return False


def open_storage(cfg: ServerConfig, existing: Cluster | None = None) -> Storage:
    """Open the data dir; ``existing`` is the cluster a joining member fetched from its peers
    (needed only on the first start with ``--initial-cluster-state existing``)."""
    try:
        return _open_storage(cfg, existing)
    except OSError as exc:
        # A data dir that is a file, a directory where the db belongs, no permission...
        where = exc.filename or cfg.data_dir
        raise StorageError(f"{where}: {exc.strerror or exc}") from None


def _open_storage(cfg: ServerConfig, existing: Cluster | None) -> Storage:
    mdir = member_dir(cfg.data_dir)
    wal_dir = mdir / "wal"
    snap_dir = mdir / "snap"
    have_wal = wal_files.exists(str(wal_dir))
    if not have_wal and cfg.initial_cluster_state == "existing" and existing is None:
        raise StorageError(
            f"{wal_dir}: no WAL found and --initial-cluster-state=existing: the existing "
            "cluster's members could not be fetched from its peers"
        )
    if not have_wal and existing is not None:
        # Before anything is written to the data dir.
        joining = match_joining_member(cfg, existing)
        if is_bootstrapped(joining):
            raise already_bootstrapped(cfg, joining, existing.cluster_id)
    _mkdir(snap_dir)
    backend = BoltBackend.open(str(snap_dir / "db"))
    for bucket in contract.ALL_BUCKETS:
        backend.create_bucket(bucket)
    init_auth(backend)
    snapshotter = Snapshotter(str(snap_dir), on_broken=_report_broken_snap)
    if not have_wal:
        if existing is not None:
            return _bootstrap_join(cfg, existing, backend, snapshotter, wal_dir)
        return _bootstrap_new(cfg, backend, snapshotter, wal_dir)
    snap = snapshotter.load_newest_available(valid_snapshot_entries(str(wal_dir)))
    if snap is not None and read_consistent_index(backend)[0] <= snap.metadata.index:
        # Only when the backend is not newer than the snapshot: members added after it are in
        # the backend, and the log replay skips what the backend already holds.
        _recover_membership(backend, snap.data)
    snap_index = snap.metadata.index if snap is not None else 0
    snap_term = snap.metadata.term if snap is not None else 0
    wal = WAL.open(str(wal_dir), record_pb2.Snapshot(index=snap_index, term=snap_term))
    meta_bytes, hs, entries = wal.read_all()
    meta = etcdserver_pb2.Metadata.FromString(meta_bytes)
    ci, _ = read_consistent_index(backend)
    entries = list(entries)
    if cfg.force_new_cluster:
        hs, entries, _ = _force_new_cluster(
            cfg.data_dir,
            wal,
            backend_ids=lambda: [m.id for m in members_from_backend(backend)],
            meta=meta,
            snap=snap,
            hs=hs,
            entries=entries,
        )
    return Storage(
        backend=backend,
        wal=wal,
        snapshotter=snapshotter,
        member_id=meta.NodeID,
        cluster_id=meta.ClusterID,
        hard_state=hs,
        entries=entries,
        snapshot=snap,
        snapshot_index=snap_index,
        snapshot_term=snap_term,
        consistent_index=ci,
    )


def member_ids_in_log(
    snap: raft_pb2.Snapshot | None, entries: list[raft_pb2.Entry], fallback: Iterable[int]
) -> set[int]:
    """The members Raft knows at the end of ``entries`` (etcd's getIDs): the snapshot's
    configuration, then every ConfChange after it. ``fallback`` (the backend's members) stands
    in for a snapshot written without a configuration."""
    ids: set[int] = set()
    if snap is not None:
        ids.update(snap.metadata.conf_state.voters)
        ids.update(snap.metadata.conf_state.learners)
        if not ids:
            ids.update(fallback)
    for entry in entries:
        if entry.Type != raft_pb2.EntryConfChange:
            continue
        cc = raft_pb2.ConfChange.FromString(entry.Data)
        if cc.type in (raft_pb2.ConfChangeAddNode, raft_pb2.ConfChangeAddLearnerNode):
            ids.add(cc.node_id)
        elif cc.type == raft_pb2.ConfChangeRemoveNode:
            ids.discard(cc.node_id)
    return ids


def force_new_cluster_entries(
    hs: raft_pb2.HardState, entries: list[raft_pb2.Entry], member_id: int, others: Iterable[int]
) -> tuple[raft_pb2.HardState, list[raft_pb2.Entry], list[raft_pb2.Entry]]:
    """etcd's restartAsStandaloneNode on the log: drop what was not committed, then commit one
    ConfChange removing each other member. Returns the hard state to start from, the whole log
    and the entries to append to the WAL."""
    kept = [e for e in entries if e.Index <= hs.commit]
    index, term = hs.commit, hs.term
    appended: list[raft_pb2.Entry] = []
    for node_id in sorted(others):
        if node_id == member_id:
            continue
        index += 1
        cc = raft_pb2.ConfChange(type=raft_pb2.ConfChangeRemoveNode, node_id=node_id)
        appended.append(
            raft_pb2.Entry(
                Term=term, Index=index, Type=raft_pb2.EntryConfChange, Data=cc.SerializeToString()
            )
        )
    forced = raft_pb2.HardState(term=hs.term, vote=hs.vote, commit=index)
    return forced, kept + appended, appended


@dataclass(frozen=True)
class ForcedCluster:
    """What forcing a one-member cluster did: the member kept, the committed index it starts
    from, the members removed and how many uncommitted entries were discarded."""

    member_id: int
    cluster_id: int
    commit: int
    removed: tuple[int, ...]
    discarded: int


def _force_new_cluster(
    data_dir: str,
    wal: WAL,
    *,
    backend_ids: Callable[[], Iterable[int]],
    meta: etcdserver_pb2.Metadata,
    snap: raft_pb2.Snapshot | None,
    hs: raft_pb2.HardState,
    entries: list[raft_pb2.Entry],
) -> tuple[raft_pb2.HardState, list[raft_pb2.Entry], ForcedCluster]:
    member_id = meta.NodeID
    conf = snap.metadata.conf_state if snap is not None else None
    # The backend's members stand in only for a snapshot written without a configuration.
    fallback = backend_ids() if conf is not None and not (conf.voters or conf.learners) else ()
    ids = member_ids_in_log(snap, entries, fallback)
    if member_id not in ids:
        raise StorageError(
            f"--force-new-cluster: member {member_id:x} is not a member of its own log's "
            "configuration (it was removed); it cannot continue the cluster"
        )
    dropped = sum(1 for e in entries if e.Index > hs.commit)
    forced, kept, appended = force_new_cluster_entries(hs, entries, member_id, ids)
    removed = tuple(sorted(ids - {member_id}))
    log.warning(
        "forcing a new one-member cluster from member %x's data (%s): committed index %d, %d "
        "uncommitted entries discarded, removing members %s",
        member_id,
        data_dir,
        hs.commit,
        dropped,
        ", ".join(f"{i:x}" for i in removed) or "none",
    )
    # The entries past the commit index are superseded in the WAL by the ones appended here,
    # as a leader's conflicting entries supersede a follower's. The commit index goes to disk
    # with them: a restart before the next hard state would otherwise find the removals
    # uncommitted and wait for a quorum of members that are gone.
    wal.save(forced, appended)
    wal.sync()
    summary = ForcedCluster(
        member_id=member_id,
        cluster_id=meta.ClusterID,
        commit=forced.commit,
        removed=removed,
        discarded=dropped,
    )
    return forced, kept, summary


def force_new_cluster_offline(data_dir: str) -> ForcedCluster:
    """``--force-new-cluster`` done on the data dir of a stopped member, without starting it:
    its log then commits the removal of every other member, so that a plain start of either
    engine (pyetcd, or etcd 3.4/3.5, whose data dir this is too) continues the cluster as a
    one-member cluster with the same cluster and member IDs and every committed write.

    For a member that cannot be started with an extra flag (the operator's member-init
    container runs this before the member's own container). Running it again on its result
    removes nothing more: the log's configuration is then the member alone.
    """
    mdir = member_dir(data_dir)
    wal_dir, snap_dir = mdir / "wal", mdir / "snap"
    try:
        if not wal_files.exists(str(wal_dir)):
            raise StorageError(f"{wal_dir}: no WAL: there is no member data to continue from")
        snapshotter = Snapshotter(str(snap_dir), on_broken=_report_broken_snap)
        snap = snapshotter.load_newest_available(valid_snapshot_entries(str(wal_dir)))
        index = snap.metadata.index if snap is not None else 0
        term = snap.metadata.term if snap is not None else 0
        wal = WAL.open(str(wal_dir), record_pb2.Snapshot(index=index, term=term))
        try:
            meta_bytes, hs, entries = wal.read_all()
            meta = etcdserver_pb2.Metadata.FromString(meta_bytes)

            def backend_ids() -> list[int]:
                backend = BoltBackend.open(str(snap_dir / "db"))
                try:
                    return [m.id for m in members_from_backend(backend)]
                finally:
                    backend.close()

            _, _, summary = _force_new_cluster(
                data_dir,
                wal,
                backend_ids=backend_ids,
                meta=meta,
                snap=snap,
                hs=hs,
                entries=list(entries),
            )
        finally:
            wal.close()
    except OSError as exc:
        raise StorageError(f"{exc.filename or data_dir}: {exc.strerror or exc}") from None
    return summary


def _bootstrap_new(
    cfg: ServerConfig, backend: BoltBackend, snapshotter: Snapshotter, wal_dir: Path
) -> Storage:
    cluster = Cluster.from_initial_cluster(cfg)
    me = cluster.member_by_name(cfg.name)
    if me is None:
        raise StorageError(f"--initial-cluster has no member named {cfg.name!r}")
    metadata = etcdserver_pb2.Metadata(NodeID=me.id, ClusterID=cluster.cluster_id)
    wal = WAL.create(str(wal_dir), metadata.SerializeToString())
    # etcd's StartNode: the initial members as committed ConfChange entries of term 1, so that
    # a member added later learns the whole membership history from the log.
    entries = [conf_change_entry(i + 1, 1, m) for i, m in enumerate(cluster.members_in_order())]
    hs = raft_pb2.HardState(term=1, vote=0, commit=len(entries))
    wal.save(hs, entries)
    wal.sync()
    return Storage(
        backend=backend,
        wal=wal,
        snapshotter=snapshotter,
        member_id=me.id,
        cluster_id=cluster.cluster_id,
        hard_state=hs,
        entries=entries,
        snapshot=None,
        snapshot_index=0,
        snapshot_term=0,
        consistent_index=0,
    )


def match_joining_member(cfg: ServerConfig, existing: Cluster) -> Member:
    """The member the cluster added for us: the one whose peer URLs are ours (etcd's
    ValidateClusterAndAssignIDs matches the local --initial-cluster to the remote members)."""
    local = Cluster.from_initial_cluster(cfg)
    if len(local.members) != len(existing.members):
        raise StorageError(
            "error validating peerURLs "
            f"{{ClusterID:{existing.cluster_id:x} Members:[{len(existing.members)} members]}}: "
            "member count is unequal"
        )
    mine = tuple(sorted(str(u) for u in cfg.initial_advertise_peer_urls))
    for member in existing.members.values():
        if tuple(sorted(member.peer_urls)) == mine:
            return member
    raise StorageError(
        f"error validating peerURLs: no member of cluster {existing.cluster_id:x} has the "
        f"peer URLs {', '.join(mine)}; add it first (etcdctl member add)"
    )


def already_bootstrapped(cfg: ServerConfig, member: Member, cluster_id: int) -> StorageError:
    """The refusal of a member with an empty data dir that its cluster lists as started.

    Its WAL held its votes and the entries it acknowledged; rejoining under the same ID without
    them could help elect a leader that lacks committed writes. etcd refuses the ``new`` case
    with this message (``isMemberBootstrapped``) and panics in the ``existing`` case on the first
    heartbeat (``tocommit(N) is out of range``); pyetcd refuses both at start, with etcd's
    message, and logs what happened and what to do (the operator matches the message).
    """
    log.error(
        "member %x (name %r, client URLs %s) is listed as started by cluster %x, but its data "
        "dir %s holds no WAL: its data was lost. It must not rejoin under its old ID: remove it "
        "(etcdctl member remove %x), add it back as a new member (etcdctl member add %s "
        "--learner --peer-urls=%s), and start it again on an empty data dir",
        member.id,
        member.name,
        ",".join(member.client_urls) or "none",
        cluster_id,
        cfg.data_dir,
        member.id,
        cfg.name,
        ",".join(member.peer_urls),
    )
    return StorageError(f"member {member.id:x} has already been bootstrapped")


def is_bootstrapped(member: Member | None) -> bool:
    """etcd's test (``isMemberBootstrapped``): the cluster lists the member with client URLs,
    which it publishes once it has started (the name alone is not enough: the bootstrap
    entries of a new cluster carry every member's name)."""
    return member is not None and bool(member.client_urls)


def _bootstrap_join(
    cfg: ServerConfig,
    existing: Cluster,
    backend: BoltBackend,
    snapshotter: Snapshotter,
    wal_dir: Path,
) -> Storage:
    me = match_joining_member(cfg, existing)
    metadata = etcdserver_pb2.Metadata(NodeID=me.id, ClusterID=existing.cluster_id)
    wal = WAL.create(str(wal_dir), metadata.SerializeToString())
    # No bootstrap entries: the leader sends the whole log (or a snapshot) to a new member.
    return Storage(
        backend=backend,
        wal=wal,
        snapshotter=snapshotter,
        member_id=me.id,
        cluster_id=existing.cluster_id,
        hard_state=raft_pb2.HardState(),
        entries=[],
        snapshot=None,
        snapshot_index=0,
        snapshot_term=0,
        consistent_index=0,
    )


def _report_broken_snap(path: str, exc: Exception) -> None:
    log.warning("snap: skipping corrupted snapshot file %s: %s (kept as .broken)", path, exc)


def _recover_membership(backend: contract.Backend, snap_data: bytes) -> None:
    """Make the backend's member buckets agree with the snapshot's v2 store, as etcd 3.5 does
    (RaftCluster.Recover prefers the v2 store): a data dir restored by etcdctl 3.4 lists the
    new members only there."""
    recorded = members_from_v2_store(snap_data)
    if recorded is None:
        return
    members, removed = recorded
    if not members:
        return
    current = {m.id: m for m in members_from_backend(backend)}
    for key, _ in list(backend.range(contract.MEMBERS, b"\x00")):
        backend.delete(contract.MEMBERS, key)
    for member in members:
        known = current.get(member.id)
        if not member.name and known is not None:
            # Our own snapshots carry only raft attributes; keep the published name and URLs.
            save_member(backend, member.with_attributes(known.name, known.client_urls))
        else:
            save_member(backend, member)
    for member_id in removed:
        backend.put(contract.MEMBERS_REMOVED, f"{member_id:x}".encode(), b"removed")


def members_from_backend(backend: contract.Backend) -> list[Member]:
    return [Member.from_json(v.decode()) for _, v in backend.range(contract.MEMBERS, b"\x00")]


def save_member(backend: contract.Backend, member: Member) -> None:
    backend.put(contract.MEMBERS, f"{member.id:x}".encode(), member.to_json().encode())


__all__ = [
    "ForcedCluster",
    "Storage",
    "StorageError",
    "already_bootstrapped",
    "force_new_cluster_offline",
    "has_wal",
    "is_bootstrapped",
    "match_joining_member",
    "open_storage",
]
