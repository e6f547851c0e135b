"""`pyetcdutl analyze` end to end in process: snapshot files, bare db files and data dirs
built with the real backend (and etcd 3.4's snapshot fixture), the JSON and table outputs, and
every bad input as one `Error:` line with a non-zero exit status, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pyetcd import utl
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.mvcc.revision import rev_to_bytes

from tests.unit.analyze.records import Entry, delete, history, lease, put

FIXTURE = Path(__file__).parents[1] / "server" / "fixtures" / "etcd-3.4.23-snapshot.db"

KEYS: list[Entry] = [
    *history(b"/registry/leases/hot", 2, 30, b"renewed"),  # revisions 2..31
    put(32, b"/registry/configmaps/big", b"x" * 9000),  # overflow pages
    put(33, b"/registry/pods/p1", b"pod", lease=0x10),
    put(34, b"/junk/a", b"j" * 500),
    delete(35, b"/junk/a"),
]
LEASES: list[Entry] = [lease(0x10, 60), lease(0x20, 30)]


def write_db(path: Path, keys: list[Entry] = KEYS, buckets: tuple[bytes, ...] = ()) -> bytes:
    """An etcd-shaped db at `path`; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with BoltBackend(str(path)) as b:
        for name in (b"key", b"lease", b"meta", *buckets):
            b.create_bucket(name)
        for k, v in keys:
            b.put(b"key", k, v, seq=True)
        for k, v in LEASES:
            b.put(b"lease", k, v)
        b.put(b"meta", b"finishedCompactRev", rev_to_bytes(1))
        b.put(b"meta", b"scheduledCompactRev", rev_to_bytes(1))
        b.commit()
    return path.read_bytes()


def write_snapshot(path: Path) -> bytes:
    db = write_db(path.with_suffix(".src"))
    path.write_bytes(db + hashlib.sha256(db).digest())
    return db


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        utl.main(["analyze", *argv])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert (code, err) == (0, "")
    doc: dict[str, Any] = json.loads(out)
    return doc


def check_planted(doc: dict[str, Any]) -> None:
    totals = doc["totals"]
    assert (totals["revision"], totals["compactRevision"]) == (35, 1)
    assert (totals["liveKeys"], totals["revisions"], totals["tombstones"]) == (3, 34, 1)
    assert doc["hotKeys"][0]["key"] == "/registry/leases/hot"
    assert doc["hotKeys"][0]["revisions"] == 30
    assert doc["biggestKeys"][0]["key"] == "/registry/configmaps/big"
    assert doc["biggestKeys"][0]["valueSize"] == 9000
    assert doc["prefixes"][0]["prefix"] == "/registry/configmaps/"  # 9000 bytes > 30 renewals
    assert [(x["idHex"], x["liveKeys"]) for x in doc["leases"]] == [("10", 1), ("20", 0)]
    assert totals["leasesWithoutKeys"] == 1


def test_snapshot_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.db"
    db = write_snapshot(snap)
    doc = run_json(capsys, str(snap))
    assert doc["source"] == {
        "path": str(snap),
        "kind": "snapshot",
        "db": str(snap),
        "sha256": "verified",
    }
    assert doc["totals"]["dbSize"] == len(db)
    check_planted(doc)
    assert run_json(capsys, str(snap), "--skip-hash-check")["source"]["sha256"] == "skipped"


def test_data_dir_and_bare_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    db_path = data / "member" / "snap" / "db"
    db = write_db(db_path)
    doc = run_json(capsys, str(data))
    assert doc["source"] == {
        "path": str(data),
        "kind": "dataDir",
        "db": str(db_path),
        "sha256": "absent",
    }
    check_planted(doc)
    assert doc["totals"]["dbSize"] == len(db)
    bare = run_json(capsys, str(db_path))
    assert bare["source"]["kind"] == "db"
    assert {k: v for k, v in bare.items() if k != "source"} == {
        k: v for k, v in doc.items() if k != "source"
    }


def test_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.db"
    write_snapshot(snap)
    doc = run_json(capsys, str(snap), "--depth", "1", "--top", "1", "--separator", "/")
    assert doc["options"] == {"separator": "/", "depth": 1, "top": 1}
    assert [p["prefix"] for p in doc["prefixes"]] == ["/registry/"]
    assert doc["otherPrefixes"]["prefixes"] == 1  # /junk/
    assert len(doc["hotKeys"]) == len(doc["biggestKeys"]) == 1


def test_table_is_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.db"
    write_snapshot(snap)
    code, out, err = run(capsys, str(snap))
    assert (code, err) == (0, "")
    assert out.startswith(f"source     {snap} (snapshot, sha256 verified)\n")
    assert "\nHOT KEYS (most stored revisions" in out
    assert re.search(r"^/registry/leases/hot +30 ", out, re.MULTILINE)


def test_real_etcd_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, str(FIXTURE))
    assert doc["source"]["sha256"] == "verified"
    assert doc["totals"]["revision"] == 2
    assert doc["totals"]["liveKeys"] == 1
    assert doc["totals"]["dbSize"] == 20480
    assert doc["totals"]["dbSizeInUse"] == 12288
    assert [(k["key"], k["valueSize"], k["createRevision"]) for k in doc["biggestKeys"]] == [
        ("foo", 3, 2)
    ]


def test_help_says_ages_are_in_revisions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "etcd stores no wall-clock times" in text
    for flag in ("--format", "--separator", "--depth", "--top", "--skip-hash-check"):
        assert flag in text


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code, out, err = run(capsys, *argv)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ")
    return code, err.rstrip("\n")


def test_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    assert _error(capsys, str(missing)) == (
        1,
        f"Error: cannot analyze {missing}: No such file or directory",
    )


def test_data_dir_without_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "member" / "wal").mkdir(parents=True)
    assert _error(capsys, str(tmp_path / "data")) == (
        1,
        f"Error: cannot analyze {tmp_path / 'data'}: not a data dir: it has no member/snap/db",
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello\n", "not a bbolt database: 6 bytes is less than two pages"),
        (b"\x01" * 8192, "not a bbolt database: meta page 0: invalid magic 0x01010101; no valid"),
        # A snapshot-sized file of noise: its trailer is checked first.
        (b"\x01" * 8192 + b"\x02" * 32, "expected sha256 0202"),
    ],
)
def test_not_a_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, reason: str
) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(data)
    code, err = _error(capsys, str(path))
    assert code == 1
    assert err.startswith(f"Error: cannot analyze {path}: {reason}"), err


def test_truncated_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.db"
    db = write_snapshot(snap)
    whole = snap.read_bytes()
    snap.write_bytes(whole[: len(whole) // 2])
    code, err = _error(capsys, str(snap))
    assert code == 1
    assert err.startswith(f"Error: cannot analyze {snap}: truncated: the database needs {len(db)}")
    snap.write_bytes(whole[:-10])  # cut inside the trailer: the db itself is whole
    assert _error(capsys, str(snap)) == (
        1,
        f"Error: cannot analyze {snap}: truncated: its size {len(whole) - 10} is neither whole "
        "512-byte blocks (a db) nor that plus a 32-byte SHA-256 (a snapshot)",
    )
    snap.write_bytes(db[: len(db) - 4096])  # whole pages: a db that lacks its last page
    code, err = _error(capsys, str(snap))
    assert err.startswith(f"Error: cannot analyze {snap}: truncated: the database needs")


def test_corrupt_trailer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "snap.db"
    db = write_snapshot(snap)
    bad = bytes(32)
    snap.write_bytes(db + bad)
    assert _error(capsys, str(snap)) == (
        1,
        f"Error: cannot analyze {snap}: expected sha256 {bad.hex()}, got "
        f"{hashlib.sha256(db).hexdigest()}",
    )
    check_planted(run_json(capsys, str(snap), "--skip-hash-check"))


def test_bbolt_but_not_etcd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.db"
    with BoltBackend(str(path)) as b:
        b.create_bucket(b"widgets")
        b.commit()
    assert _error(capsys, str(path)) == (
        1,
        f"Error: cannot analyze {path}: not an etcd database: no `key` bucket (buckets: widgets)",
    )


def test_damaged_entries_and_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad-value.db"
    write_db(path, [*KEYS, (rev_to_bytes(40), b"\x0a\x09short")])
    assert _error(capsys, str(path)) == (
        1,
        f"Error: cannot analyze {path}: key bucket: the value at revision 40_0 is not an "
        "mvccpb.KeyValue",
    )
    path = tmp_path / "bad-page.db"
    many = [put(2 + i, b"/k/%05d" % i, b"v" * 200) for i in range(400)]
    write_db(path, many)
    with BoltBackend(str(path)) as b:
        key_root = b._buckets[b"key"].root_pgid
    with open(path, "r+b") as f:
        f.seek(key_root * 4096 + 8)
        f.write(b"\x04\x00")  # the key bucket's root now claims to be a meta page
    _, err = _error(capsys, str(path))
    assert err == (
        f"Error: cannot analyze {path}: page {key_root}: type 0x04, expected a branch or leaf page"
    )


def test_a_running_members_data_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    db_path = data / "member" / "snap" / "db"
    write_db(db_path)
    with BoltBackend(str(db_path)):  # the lock a server holds
        assert _error(capsys, str(data)) == (
            1,
            f"Error: cannot analyze {data}: database is locked by another process "
            "(is a member running on it?)",
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--depth", "0"], "Error: depth must be at least 1, got 0"),
        (["--top", "-1"], "Error: top must be at least 1, got -1"),
        (["--separator", ""], "Error: the separator must not be empty"),
        (["--top", "x"], "Error: argument --top: invalid int value: 'x'"),
        (["--format", "yaml"], "Error: argument --format: invalid choice: 'yaml'"),
    ],
)
def test_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    snap = tmp_path / "snap.db"
    write_snapshot(snap)
    code, err = _error(capsys, str(snap), *argv)
    assert code == 2
    assert err.startswith(message)


def test_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    db_path = data / "member" / "snap" / "db"
    write_db(db_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.rglob("*") if p.is_file()}
    run_json(capsys, str(data))
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.rglob("*") if p.is_file()}
    assert after == before
    assert os.listdir(db_path.parent) == ["db"]
