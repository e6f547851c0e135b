"""`pyetcdutl`: argument parsing, snapshot hash trailers, status output, and restore: the
preconditions, the data dir it writes (backend, WAL, `.snap` with etcd's v2 store), atomicity,
and that pyetcd's storage layer starts from it without replaying anything.

`fixtures/etcd-3.4.23-snapshot.db` was written by `etcdctl snapshot save` against a real etcd
3.4.23 holding one key (foo=bar); etcdctl's own `snapshot status` on it printed
`578b7d42, 2, 5, 20 kB` (and the table/json forms asserted below).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from pyetcd import __version__, utl
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.proto.etcdserverpb import etcdserver_pb2
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.server.config import ServerConfig
from pyetcd.server.membership import Cluster, member_key
from pyetcd.server.storage import members_from_backend, open_storage
from pyetcd.snap.snapshotter import read_snap_file
from pyetcd.wal.wal import WAL, valid_snapshot_entries

FIXTURE = Path(__file__).parent / "fixtures" / "etcd-3.4.23-snapshot.db"


def _snapshot(tmp_path: Path, db: bytes, trailer: bytes | None = None) -> Path:
    path = tmp_path / "snap.db"
    digest = hashlib.sha256(db).digest() if trailer is None else trailer
    path.write_bytes(db + digest)
    return path


def test_trailer_verified(tmp_path: Path) -> None:
    db = os.urandom(4096 * 3)
    path = _snapshot(tmp_path, db)
    assert utl.verify_snapshot_hash(str(path)) == len(db)


def test_trailer_mismatch_names_both_digests(tmp_path: Path) -> None:
    db = b"\x01" * 4096
    bad = hashlib.sha256(b"other").digest()
    path = _snapshot(tmp_path, db, bad)
    with pytest.raises(utl.UtlError) as info:
        utl.verify_snapshot_hash(str(path))
    assert str(info.value) == (f"expected sha256 {bad.hex()}, got {hashlib.sha256(db).hexdigest()}")
    # --skip-hash-check drops the trailer without looking at it.
    assert utl.verify_snapshot_hash(str(path), skip_hash_check=True) == 4096


def test_missing_trailer_needs_skip_hash_check(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"\x00" * 8192)
    with pytest.raises(utl.UtlError, match="snapshot missing hash but --skip-hash-check=false"):
        utl.verify_snapshot_hash(str(path))
    assert utl.verify_snapshot_hash(str(path), skip_hash_check=True) == 8192


def test_real_etcd_snapshot_trailer_verifies() -> None:
    assert utl.verify_snapshot_hash(str(FIXTURE)) == 20480


def test_copy_db_drops_the_trailer(tmp_path: Path) -> None:
    dst = tmp_path / "out" / "member" / "snap" / "db"
    utl.copy_db(str(FIXTURE), str(dst), 20480)
    assert dst.read_bytes() == FIXTURE.read_bytes()[:20480]
    assert dst.stat().st_mode & 0o777 == 0o600


def test_status_of_real_etcd_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    status = utl.snapshot_status(str(FIXTURE))
    assert status == utl.SnapshotStatus(hash=0x578B7D42, revision=2, total_key=5, total_size=20480)
    for argv, out in [
        (["snapshot", "status", str(FIXTURE)], "578b7d42, 2, 5, 20 kB\n"),
        (
            ["snapshot", "status", str(FIXTURE), "-w", "json"],
            '{"hash":1468759362,"revision":2,"totalKey":5,"totalSize":20480}\n',
        ),
        (
            ["-w", "table", "snapshot", "status", str(FIXTURE)],
            "+----------+----------+------------+------------+\n"
            "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n"
            "+----------+----------+------------+------------+\n"
            "| 578b7d42 |        2 |          5 |      20 kB |\n"
            "+----------+----------+------------+------------+\n",
        ),
    ]:
        utl.main(argv)
        assert capsys.readouterr().out == out


def test_compute_status_walks_buckets_like_etcd() -> None:
    rev = (7).to_bytes(8, "big") + b"_" + (0).to_bytes(8, "big")
    status = utl.compute_status(
        [(b"key", [(rev, b"v")]), (b"meta", [(b"consistent_index", b"\x00" * 8)])], 4096
    )
    assert (status.revision, status.total_key, status.total_size) == (7, 2, 4096)
    assert utl.compute_status([], 0) == utl.SnapshotStatus(0, 0, 0, 0)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (9, "9 B"), (20480, "20 kB"), (2_100_000, "2.1 MB"), (999_999, "1000 kB")],
)
def test_humanize_bytes(n: int, text: str) -> None:
    assert utl.humanize_bytes(n) == text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    utl.main(["version"])
    assert capsys.readouterr().out == f"pyetcdutl version: {__version__}\nAPI version: 3.5\n"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ([], 2, "Error: the following arguments are required: command"),
        (["snapshot"], 2, "Error: the following arguments are required: snapshot_command"),
        (["snapshot", "status"], 2, "Error: the following arguments are required: file"),
        (["snapshot", "status", "x", "-w", "yaml"], 2, "Error: argument -w/--write-out"),
        (["defrag"], 2, "Error: the following arguments are required: --data-dir"),
        (["snapshot", "restore", "f", "--bogus"], 2, "Error: unrecognized arguments: --bogus"),
        (["snapshot", "restore", "f", "--data"], 2, "Error: unrecognized arguments: --data"),
        (["snapshot", "status", "/nonexistent/snap.db"], 1, "Error: cannot open snapshot"),
        (["defrag", "--data-dir", "/nonexistent"], 1, "Error: cannot open database at"),
        (
            ["snapshot", "restore", "f", "--name", "x"],
            1,
            'Error: --initial-cluster: couldn\'t find local name "x"',
        ),
        (
            ["snapshot", "restore", "f", "--initial-cluster", "default=ftp://a:1"],
            1,
            "Error: --initial-cluster: URL scheme must be http, https",
        ),
        (
            [
                "snapshot",
                "restore",
                "f",
                "--name=a",
                "--initial-cluster=a=http://10.0.0.1:2380",
                "--initial-advertise-peer-urls=http://10.0.0.2:2380",
            ],
            1,
            "Error: --initial-cluster has a=http://10.0.0.1:2380 but missing from",
        ),
    ],
)
def test_command_line_errors(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        utl.main(argv)
    assert info.value.code == code
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_restore_options_defaults(tmp_path: Path) -> None:
    ns = utl.build_parser().parse_args(
        [
            "snapshot",
            "restore",
            str(FIXTURE),
            "--name",
            "m1",
            "--initial-cluster",
            "m1=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster-token",
            "tok",
        ]
    )
    opts = utl.restore_options(ns)
    assert opts.data_dir == "m1.etcd"
    assert opts.db_path == os.path.join("m1.etcd", "member", "snap", "db")
    assert opts.effective_wal_dir == os.path.join("m1.etcd", "member", "wal")
    assert opts.skip_hash_check is False
    cluster = opts.cluster()
    assert [m.name for m in cluster.members_in_order()] == ["m1"]


def _restore(*extra: str) -> list[str]:
    return [
        "snapshot",
        "restore",
        *extra,
        "--name=m1",
        "--initial-cluster=m1=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
    ]


def test_restore_refuses_a_non_empty_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(SystemExit) as info:
        utl.main(_restore(str(FIXTURE), f"--data-dir={target}"))
    assert info.value.code == 1
    assert capsys.readouterr().err == f'Error: data-dir "{target}" not empty or could not be read\n'


def test_restore_checks_the_hash_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.db"
    data = bytearray(FIXTURE.read_bytes())
    data[100] ^= 0xFF
    broken.write_bytes(bytes(data))
    target = tmp_path / "data"
    with pytest.raises(SystemExit) as info:
        utl.main(_restore(str(broken), f"--data-dir={target}"))
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith("Error: expected sha256 ")
    assert not target.exists()


THREE = (
    "--name=b",
    "--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380",
    "--initial-advertise-peer-urls=http://10.0.0.2:2380",
    "--initial-cluster-token=tok",
)


def _three_cluster() -> Cluster:
    return Cluster.from_urls_map(
        {
            "a": ["http://10.0.0.1:2380"],
            "b": ["http://10.0.0.2:2380"],
            "c": ["http://10.0.0.3:2380"],
        },
        "tok",
    )


def test_restore_writes_wal_snap_and_db_like_etcd(tmp_path: Path) -> None:
    target = tmp_path / "data"
    utl.main(["snapshot", "restore", str(FIXTURE), f"--data-dir={target}", *THREE])
    cluster = _three_cluster()
    ids = cluster.member_ids()
    me = cluster.member_by_name("b")
    assert me is not None
    assert sorted(p.name for p in (target / "member").iterdir()) == ["snap", "wal"]
    for d in (target, target / "member", target / "member" / "wal", target / "member" / "snap"):
        assert d.stat().st_mode & 0o777 == 0o700, d

    # The WAL from its start: metadata, the three bootstrap entries, HardState, snapshot record.
    with WAL.open(str(target / "member" / "wal"), None) as wal:
        metadata, hs, entries = wal.read_all()
    assert etcdserver_pb2.Metadata.FromString(metadata) == etcdserver_pb2.Metadata(
        NodeID=me.id, ClusterID=cluster.cluster_id
    )
    assert (hs.term, hs.vote, hs.commit) == (1, ids[0], 3)
    assert [(e.Index, e.Term, e.Type) for e in entries] == [
        (i, 1, raft_pb2.EntryConfChange) for i in (1, 2, 3)
    ]
    changes = [raft_pb2.ConfChange.FromString(e.Data) for e in entries]
    assert [(c.type, c.node_id, c.context) for c in changes] == [
        (raft_pb2.ConfChangeAddNode, m.id, m.to_json().encode()) for m in cluster.members_in_order()
    ]
    walsnaps = valid_snapshot_entries(str(target / "member" / "wal"))
    assert [(s.index, s.term, list(s.conf_state.voters)) for s in walsnaps] == [
        (0, 0, []),
        (3, 1, ids),
    ]

    # The .snap file at {term 1, index 3}: voters and the v2 store holding the members.
    snap_path = target / "member" / "snap" / "0000000000000001-0000000000000003.snap"
    snap = read_snap_file(str(snap_path))
    assert (snap.metadata.index, snap.metadata.term) == (3, 1)
    assert list(snap.metadata.conf_state.voters) == ids
    assert snap.data == utl.v2_store_json(cluster)

    # The backend: the new members only, consistent index 3 at term 1, the user key kept.
    backend = BoltBackend(str(target / "member" / "snap" / "db"))
    try:
        assert [k for k, _ in backend.range(b"members", b"")] == [member_key(i) for i in ids]
        assert backend.get(b"meta", b"consistent_index") == (3).to_bytes(8, "big")
        assert backend.get(b"meta", b"term") == (1).to_bytes(8, "big")
        assert backend.get(b"key", (2).to_bytes(8, "big") + b"_" + bytes(8)) is not None
    finally:
        backend.close()


def test_v2_store_json_is_what_etcd_saves() -> None:
    """Go's `json.Marshal` of the store etcd's restore builds for one member (written out by
    hand from `v2store.New("/0", "/1")` + one `Create`), without WatcherHub and Stats."""
    cluster = Cluster.from_urls_map({"x": ["http://127.0.0.1:2380"]}, "etcd-cluster")
    (m,) = cluster.members_in_order()
    h = f"{m.id:x}"
    zero = '"ExpireTime":"0001-01-01T00:00:00Z"'

    def node(path: str, index: int, value: str, children: str) -> str:
        return (
            f'{{"Path":"{path}","CreatedIndex":{index},"ModifiedIndex":{index},{zero},'
            f'"Value":{value},"Children":{children}}}'
        )

    attrs = node(
        f"/0/members/{h}/raftAttributes",
        1,
        '"{\\"peerURLs\\":[\\"http://127.0.0.1:2380\\"]}"',
        "null",
    )
    member_dir = node(f"/0/members/{h}", 1, '""', f'{{"raftAttributes":{attrs}}}')
    members = node("/0/members", 1, '""', f'{{"{h}":{member_dir}}}')
    cluster_dir = node("/0", 0, '""', f'{{"members":{members}}}')
    keys_dir = node("/1", 0, '""', "{}")
    root = node("/", 0, '""', f'{{"0":{cluster_dir},"1":{keys_dir}}}')
    expected = f'{{"Root":{root},"CurrentIndex":1,"CurrentVersion":2}}'
    assert utl.v2_store_json(cluster).decode() == expected
    decoded = json.loads(expected)
    assert json.loads(
        decoded["Root"]["Children"]["0"]["Children"]["members"]["Children"][h]["Children"][
            "raftAttributes"
        ]["Value"]
    ) == {"peerURLs": ["http://127.0.0.1:2380"]}


def test_v2_store_indexes_follow_creates() -> None:
    cluster = _three_cluster()
    doc = json.loads(utl.v2_store_json(cluster))
    assert doc["CurrentIndex"] == 3
    members = doc["Root"]["Children"]["0"]["Children"]["members"]
    assert members["CreatedIndex"] == 1
    for index, m in enumerate(cluster.members_in_order(), start=1):
        node = members["Children"][f"{m.id:x}"]
        assert node["CreatedIndex"] == index
        assert node["Children"]["raftAttributes"]["CreatedIndex"] == index


def test_pyetcd_storage_starts_from_a_restored_dir_without_replay(tmp_path: Path) -> None:
    target = tmp_path / "data"
    utl.main(_restore(str(FIXTURE), f"--data-dir={target}"))
    cfg = ServerConfig(name="m1", data_dir=str(target))
    st = open_storage(cfg)
    try:
        cluster = Cluster.from_urls_map({"m1": ["http://127.0.0.1:2380"]}, "etcd-cluster")
        assert (st.member_id, st.cluster_id) == (cluster.member_ids()[0], cluster.cluster_id)
        assert (st.snapshot_index, st.snapshot_term, st.consistent_index) == (1, 1, 1)
        assert st.entries == []
        assert (st.last_index, st.last_term) == (1, 1)
        assert (st.hard_state.term, st.hard_state.commit) == (1, 1)
        assert members_from_backend(st.backend) == cluster.members_in_order()
    finally:
        st.wal.close()
        st.backend.close()


def test_restore_into_an_existing_empty_dir_and_a_separate_wal_dir(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    wal_dir = tmp_path / "elsewhere" / "wal"
    utl.main(_restore(str(FIXTURE), f"--data-dir={target}", f"--wal-dir={wal_dir}"))
    assert sorted(p.name for p in (target / "member").iterdir()) == ["snap"]
    assert [p.name for p in wal_dir.iterdir()] == ["0000000000000000-0000000000000000.wal"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "elsewhere"]


def test_wal_dir_inside_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "data"
    utl.main(_restore(str(FIXTURE), f"--data-dir={target}", f"--wal-dir={target}/wal"))
    assert sorted(p.name for p in target.iterdir()) == ["member", "wal"]
    assert sorted(p.name for p in (target / "member").iterdir()) == ["snap"]


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failed_restore_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(utl, "write_wal_and_snap", explode)
    parent = tmp_path / "new" / "parents"
    target = parent / "data"
    wal_dir = tmp_path / "wal"
    argv = _restore(str(FIXTURE), f"--data-dir={target}", f"--wal-dir={wal_dir}")
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            utl.main(argv)
    else:
        with pytest.raises(SystemExit) as info:
            utl.main(argv)
        assert info.value.code == 1
        assert capsys.readouterr().err == "Error: RuntimeError: disk on fire\n"
    assert list(tmp_path.iterdir()) == []  # not even the parents it created


def test_restore_refuses_a_non_empty_wal_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    (wal_dir / "x.wal").write_bytes(b"")
    with pytest.raises(SystemExit):
        utl.main(_restore(str(FIXTURE), f"--data-dir={tmp_path / 'd'}", f"--wal-dir={wal_dir}"))
    assert (
        capsys.readouterr().err == f'Error: data-dir "{wal_dir}" not empty or could not be read\n'
    )
    assert not (tmp_path / "d").exists()


def test_restore_of_a_damaged_db_names_the_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "noise.db"
    noise.write_bytes(b"\x01" * 8192)
    target = tmp_path / "data"
    with pytest.raises(SystemExit):
        utl.main(_restore(str(noise), f"--data-dir={target}", "--skip-hash-check"))
    err = capsys.readouterr().err
    assert err.startswith(f"Error: cannot read snapshot {noise}: invalid database: ")
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.db"]


def test_restore_backend_rewrites_membership_and_consistent_index(tmp_path: Path) -> None:
    db = tmp_path / "member" / "snap" / "db"
    utl.copy_db(str(FIXTURE), str(db), utl.verify_snapshot_hash(str(FIXTURE)))
    cluster = Cluster.from_urls_map(
        {"a": ["http://10.0.0.1:2380"], "b": ["http://10.0.0.2:2380"]}, "restored"
    )
    utl.restore_backend(str(db), cluster, consistent_index=2, term=1)
    backend = BoltBackend(str(db))
    try:
        assert list(backend.range(b"members", b"")) == [
            (member_key(m.id), m.to_json().encode()) for m in cluster.members_in_order()
        ]
        assert list(backend.range(b"members_removed", b"")) == []
        assert backend.get(b"meta", b"consistent_index") == (2).to_bytes(8, "big")
        assert backend.get(b"meta", b"term") == (1).to_bytes(8, "big")
        assert backend.get(b"key", (2).to_bytes(8, "big") + b"_" + bytes(8)) is not None
    finally:
        backend.close()


def test_defrag_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "member" / "snap" / "db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURE, db)
    with open(db, "r+b") as f:
        f.truncate(20480)
    before = utl.snapshot_status(str(db))
    utl.main(["defrag", "--data-dir", str(tmp_path)])
    assert capsys.readouterr().out == f"Finished defragmenting etcd data[{db}]\n"
    after = utl.snapshot_status(str(db))
    assert (after.hash, after.revision, after.total_key) == (
        before.hash,
        before.revision,
        before.total_key,
    )
