"""`pyetcdutl snapshot restore --bump-revision N --mark-compacted` (etcdutl 3.5.10+).

The flags as etcdutl parses and refuses them (pflag's Uint64/Bool grammars and messages, the
both-or-neither rule checked before anything else), and what the restore writes into the db: one
empty marker at {latest + N, 0} in `key` and `meta/scheduledCompactRev` = latest + N, nothing
else in the key space. The last test opens the result with pyetcd's MVCC store, as the server
does at start, to see the bumped current revision and the compacted history. Runs on the etcd
3.4.23 snapshot fixture (latest revision 2: key `foo`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyetcd import utl
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.mvcc.errors import ErrCompacted, ErrFutureRev
from pyetcd.mvcc.kvstore import KVStore
from pyetcd.mvcc.revision import rev_to_bytes
from pyetcd.proto.mvccpb import kv_pb2

FIXTURE = Path(__file__).parent / "fixtures" / "etcd-3.4.23-snapshot.db"
FIXTURE_REVISION = 2
MISMATCH = "Error: --mark-compacted required if --revision-bump > 0"


def _restore_argv(*extra: str) -> list[str]:
    return [
        "snapshot",
        "restore",
        str(FIXTURE),
        "--name=m1",
        "--initial-cluster=m1=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        *extra,
    ]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    with pytest.raises(SystemExit) as info:
        utl.main(argv)
    out = capsys.readouterr()
    assert out.out == ""
    return info.value.code, out.err


# ------------------------------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize(
    "extra",
    [
        ["--mark-compacted"],
        ["--bump-revision", "5"],
        ["--bump-revision=0", "--mark-compacted"],
        ["--bump-revision=7", "--mark-compacted=false"],
        ["--bump-revision=0x0", "--mark-compacted=1"],
    ],
)
def test_the_pair_is_all_or_nothing(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """etcdutl's one message (naming `--revision-bump`, sic) for both half-given cases."""
    target = tmp_path / "data"
    code, err = _fails(_restore_argv(f"--data-dir={target}", *extra), capsys)
    assert (code, err) == (2, MISMATCH + "\n")
    assert not target.exists()


def test_the_pair_is_checked_before_the_cluster_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """etcdutl checks it in the command function, before `VerifyBootstrap` sees the flags."""
    argv = ["snapshot", "restore", "f", "--name=nobody", "--bump-revision=3"]
    assert _fails(argv, capsys) == (2, MISMATCH + "\n")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "invalid syntax"),
        ("+5", "invalid syntax"),
        ("abc", "invalid syntax"),
        ("", "invalid syntax"),
        ("1.5", "invalid syntax"),
        ("18446744073709551616", "value out of range"),
    ],
)
def test_bump_revision_is_a_go_uint64(
    value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """pflag's message, without argparse's `argument --bump-revision:` in front."""
    code, err = _fails(_restore_argv(f"--bump-revision={value}", "--mark-compacted"), capsys)
    assert code == 2
    assert err == (
        f'Error: invalid argument "{value}" for "--bump-revision" flag: '
        f'strconv.ParseUint: parsing "{value}": {reason}\n'
    )


def test_mark_compacted_takes_a_go_bool_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fails(_restore_argv("--bump-revision=3", "--mark-compacted=yes"), capsys)
    assert code == 2
    assert err == (
        'Error: invalid argument "yes" for "--mark-compacted" flag: '
        'strconv.ParseBool: parsing "yes": invalid syntax\n'
    )


@pytest.mark.parametrize(
    ("extra", "bump", "mark"),
    [
        ([], 0, False),
        (["--bump-revision", "1000000", "--mark-compacted"], 1_000_000, True),
        (["--bump-revision=0x10", "--mark-compacted=true"], 16, True),  # base 0, like pflag
        (["--bump-revision=1_000", "--mark-compacted=T"], 1000, True),
        (["--bump-revision=0", "--mark-compacted=false"], 0, False),
        (["--bump-revision=18446744073709551615", "--mark-compacted"], (1 << 64) - 1, True),
    ],
)
def test_accepted_spellings(extra: list[str], bump: int, mark: bool) -> None:
    argv = utl._go_bool_flags(_restore_argv(*extra))
    opts = utl.restore_options(utl.build_parser().parse_args(argv))
    assert (opts.revision_bump, opts.mark_compacted) == (bump, mark)


def test_go_bool_rewrite_stops_at_double_dash() -> None:
    argv = ["snapshot", "restore", "--skip-hash-check=false", "--mark-compacted=on", "x"]
    with pytest.raises(SystemExit):  # "on" is not a ParseBool spelling
        utl._go_bool_flags(argv)
    assert utl._go_bool_flags(["--skip-hash-check=0", "--", "--mark-compacted=true"]) == [
        "--",
        "--mark-compacted=true",
    ]


# ------------------------------------------------------------------------------------------------
# What the restore writes


def _key_bucket(db: Path) -> list[tuple[bytes, bytes]]:
    backend = BoltBackend(str(db))
    try:
        return list(backend.range(b"key", b""))
    finally:
        backend.close()


def test_restore_writes_the_marker_and_the_scheduled_compaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, bumped = tmp_path / "plain", tmp_path / "bumped"
    utl.main(_restore_argv(f"--data-dir={plain}"))
    capsys.readouterr()
    utl.main(_restore_argv(f"--data-dir={bumped}", "--bump-revision=1000000", "--mark-compacted"))
    new = FIXTURE_REVISION + 1_000_000
    assert capsys.readouterr().out == (
        f"bumped the latest revision {FIXTURE_REVISION} by 1000000 to {new} and marked it "
        f"compacted\nrestored snapshot {FIXTURE} to {bumped}\n"
    )
    db = bumped / "member" / "snap" / "db"
    before = _key_bucket(plain / "member" / "snap" / "db")
    # The user's entries untouched (revisions, values), then the empty marker.
    assert _key_bucket(db) == [*before, (rev_to_bytes(new, 0), b"")]
    backend = BoltBackend(str(db))
    try:
        assert backend.get(b"meta", b"scheduledCompactRev") == rev_to_bytes(new, 0)
        assert backend.get(b"meta", b"finishedCompactRev") is None  # the server finishes it
    finally:
        backend.close()
    assert utl.snapshot_status(str(db)).revision == new


def test_the_bump_starts_from_the_highest_revision_in_the_key_bucket(tmp_path: Path) -> None:
    """A tombstone counts (mark ignored), and an empty bucket bumps from 0."""
    db = tmp_path / "db"
    backend = BoltBackend(str(db))
    try:
        backend.create_bucket(b"key")
        backend.create_bucket(b"meta")
        assert utl.bump_latest_revision(backend, 10) == (0, 10)
        backend.put(b"key", rev_to_bytes(20, 1) + b"t", b"")
        assert utl.bump_latest_revision(backend, 5) == (20, 25)
    finally:
        backend.close()


def test_a_bump_beyond_int64_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """etcdutl wraps around to a negative revision; pyetcdutl refuses and leaves nothing."""
    target = tmp_path / "data"
    too_far = utl.MAX_REVISION - FIXTURE_REVISION
    argv = _restore_argv(f"--data-dir={target}", f"--bump-revision={too_far}", "--mark-compacted")
    code, err = _fails(argv, capsys)
    assert code == 1
    assert err == (
        f"Error: cannot restore snapshot {FIXTURE}: --bump-revision {too_far} from revision "
        f"{FIXTURE_REVISION} is beyond the largest revision, {utl.MAX_REVISION}\n"
    )
    assert list(tmp_path.iterdir()) == []
    # One less leaves room for exactly one more write.
    utl.main(
        _restore_argv(f"--data-dir={target}", f"--bump-revision={too_far - 1}", "--mark-compacted")
    )
    assert utl.snapshot_status(str(target / "member" / "snap" / "db")).revision == (
        utl.MAX_REVISION - 1
    )


def test_the_store_opens_at_the_bumped_revision_with_history_compacted(tmp_path: Path) -> None:
    """What a server sees at start (`store.restore` + the resumed compaction)."""
    target = tmp_path / "data"
    utl.main(_restore_argv(f"--data-dir={target}", "--bump-revision=1000", "--mark-compacted"))
    new = FIXTURE_REVISION + 1000
    backend = BoltBackend(str(target / "member" / "snap" / "db"))
    try:
        store = KVStore(backend)
        store.run_compactions()
        assert (store.current_revision, store.compact_revision) == (new, new)
        for old in (1, FIXTURE_REVISION, new - 1):
            with pytest.raises(ErrCompacted):
                store.range(b"foo", rev=old)
        with pytest.raises(ErrFutureRev):
            store.range(b"foo", rev=new + 1)
        # Reading at the compacted revision itself works; foo keeps its revisions.
        (kv,) = store.range(b"foo", rev=new).decoded()
        assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
            b"foo",
            b"bar",
            2,
            2,
            1,
        )
        # No client range reaches the marker: every range starts at a non-empty key.
        everything = store.range(b"\x00", b"\x00").decoded()
        assert [k.key for k in everything] == [b"foo"]
        assert backend.get(b"meta", b"finishedCompactRev") == rev_to_bytes(new, 0)
        assert kv_pb2.KeyValue.FromString(backend.get(b"key", rev_to_bytes(new, 0)) or b"") == (
            kv_pb2.KeyValue()
        )
    finally:
        backend.close()
