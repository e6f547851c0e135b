"""Reading the WAL and .snap files written by a real etcd (Debian's 3.4 build).

One etcd process is started on loopback, fed some puts with etcdctl and stopped; the tests
then read its `member/wal` and `member/snap` with pyetcd's code, and re-encode every record
to check that pyetcd writes the same bytes etcd does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from pyetcd.proto.etcdserverpb import etcdserver_pb2, raft_internal_pb2
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.snap import Snapshotter
from pyetcd.wal import WAL, valid_snapshot_entries
from pyetcd.wal.encoding import (
    ENTRY_TYPE,
    STATE_TYPE,
    encode_entry,
    encode_hard_state,
    encode_record_frame,
)

from tools.ports import free_port

from .frames import parse_frames

pytestmark = pytest.mark.integration

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
PUTS = {f"key-{i:02d}": f"value-{i}" for i in range(15)}
SNAPSHOT_COUNT = 10
READY_DEADLINE_S = 30.0


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETCDCTL, "--endpoints", endpoint, "--dial-timeout=1s", "--command-timeout=5s", *args],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclass
class EtcdRun:
    data_dir: Path
    peer_url: str


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def etcd_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdRun]:
    assert os.access(ETCD, os.X_OK), "install Debian's etcd-server and etcd-client"
    base = tmp_path_factory.mktemp("etcd")
    data_dir = base / "data"
    client = f"http://127.0.0.1:{free_port()}"
    peer = f"http://127.0.0.1:{free_port()}"
    log_path = base / "etcd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                ETCD,
                "--name",
                "t",
                "--data-dir",
                str(data_dir),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"t={peer}",
                "--snapshot-count",
                str(SNAPSHOT_COUNT),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"etcd exited with {proc.returncode}:\n{log_path.read_text()}")
            if etcdctl(client, "endpoint", "health").returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"etcd not healthy in {READY_DEADLINE_S}s:\n{log_path.read_text()}")
        for key, value in PUTS.items():
            result = etcdctl(client, "put", key, value)
            assert result.returncode == 0, result.stderr
        _stop(proc)
        # etcd re-raises SIGTERM after its graceful shutdown.
        assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()
        yield EtcdRun(data_dir, peer)
    finally:
        _stop(proc)


def decode_normal(data: bytes) -> raft_internal_pb2.InternalRaftRequest | etcdserver_pb2.Request:
    # etcd's apply order: an InternalRaftRequest, else a bare v2 Request (3.4's publish).
    try:
        return raft_internal_pb2.InternalRaftRequest.FromString(data)
    except DecodeError:
        return etcdserver_pb2.Request.FromString(data)


def test_read_all_of_an_etcd_wal(etcd_run: EtcdRun) -> None:
    waldir = etcd_run.data_dir / "member" / "wal"
    at_zero = record_pb2.Snapshot(index=0, term=0)
    ro_metadata, ro_state, ro_entries = WAL.open_for_read(str(waldir), at_zero).read_all()
    with WAL.open(str(waldir), at_zero) as wal:
        metadata, state, entries = wal.read_all()
    # The append-mode open found a clean tail: nothing to repair.
    assert not [n for n in os.listdir(waldir) if n.endswith(".broken")]
    assert (metadata, state, entries) == (ro_metadata, ro_state, ro_entries)

    meta = etcdserver_pb2.Metadata.FromString(metadata)
    assert meta.NodeID != 0 and meta.ClusterID != 0
    assert [e.Index for e in entries] == list(range(1, len(entries) + 1))
    assert state.term >= 1 and state.commit == entries[-1].Index

    conf_changes = [e for e in entries if e.Type == raft_pb2.EntryConfChange]
    assert len(conf_changes) == 1
    cc = raft_pb2.ConfChange.FromString(conf_changes[0].Data)
    assert cc.type == raft_pb2.ConfChangeAddNode
    assert cc.node_id == meta.NodeID
    member = json.loads(cc.context)
    assert member["peerURLs"] == [etcd_run.peer_url]

    puts = {}
    for e in entries:
        if e.Type != raft_pb2.EntryNormal or not e.Data:
            continue
        request = decode_normal(e.Data)
        if isinstance(request, raft_internal_pb2.InternalRaftRequest) and request.HasField("put"):
            puts[request.put.key.decode()] = request.put.value.decode()
    assert puts == PUTS


def test_pyetcd_encodes_every_record_exactly_like_etcd(etcd_run: EtcdRun) -> None:
    waldir = etcd_run.data_dir / "member" / "wal"
    [name] = [n for n in os.listdir(waldir) if n.endswith(".wal")]
    raw = (waldir / name).read_bytes()
    frames = parse_frames(raw)
    assert len(frames) > len(PUTS)
    for f in frames:
        rec = f.record
        assert encode_record_frame(rec.type, rec.crc, rec.data) == raw[f.offset : f.end]
        if rec.type == ENTRY_TYPE:
            assert encode_entry(raft_pb2.Entry.FromString(rec.data)) == rec.data
        elif rec.type == STATE_TYPE:
            hs = raft_pb2.HardState.FromString(rec.data)
            assert encode_hard_state(hs.term, hs.vote, hs.commit) == rec.data


def test_etcd_snap_file_loads_and_matches_the_wal(etcd_run: EtcdRun, tmp_path: Path) -> None:
    member = etcd_run.data_dir / "member"
    walsnaps = valid_snapshot_entries(str(member / "wal"))
    assert (walsnaps[0].index, walsnaps[0].term) == (0, 0)
    assert len(walsnaps) >= 2, "etcd should have taken a snapshot after --snapshot-count"
    snapdir = tmp_path / "snap"
    shutil.copytree(member / "snap", snapdir)
    snapshotter = Snapshotter(str(snapdir))
    newest = snapshotter.load_newest_available(walsnaps)
    assert newest is not None
    assert (newest.metadata.index, newest.metadata.term) == (walsnaps[-1].index, walsnaps[-1].term)
    assert newest.metadata.conf_state.voters
    # In etcd v3, the raft snapshot data is the v2 store as JSON.
    assert json.loads(newest.data)
    assert snapshotter.load() == newest
    # Re-saving it with pyetcd gives etcd's exact file bytes.
    [etcd_name] = [n for n in os.listdir(member / "snap") if n.endswith(".snap")]
    resaved = Snapshotter(str(tmp_path / "resaved")).save_snap(newest)
    assert os.path.basename(resaved) == etcd_name
    assert Path(resaved).read_bytes() == (member / "snap" / etcd_name).read_bytes()
