"""Point-in-time selection and cutting (``backup.pitr``), pure: which segments a target needs,
the targets a chain cannot reach (before the backup, past the chain's end, past a hole, inside a
blind spell), and where a log is cut for a revision and for a time. The whole restore against a
real S3 server and real members: tests/integration/test_pitr.py."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from etcd_operator.backup.eventlog import EventLog, Record, read_log, write_records
from etcd_operator.backup.pitr import Cutter, PointInTimeError, Target, select, write_chain_log
from etcd_operator.backup.segments import Segment, coverage, upload_segment
from etcd_operator.backup.store import StoreSettings
from pyetcd.proto.mvccpb import kv_pb2

from tests.unit.operator.backup.fake_s3 import FakeS3

WHERE = "s3://backups/ns/demo/full.db"
# Base 10; revisions 11..20 in two segments watched live, a blind spell, then 21..25.
CHAIN = [
    Segment(10, 15, 1_000, 2_000),
    Segment(15, 20, 2_000, 3_000),
    Segment(20, 25, 5_000, 6_000),
]


def test_a_revision_needs_the_segments_up_to_it() -> None:
    cov = coverage(10, CHAIN)
    assert select(cov, Target(revision=10), WHERE) == ()
    assert select(cov, Target(revision=12), WHERE) == tuple(CHAIN[:1])
    assert select(cov, Target(revision=16), WHERE) == tuple(CHAIN[:2])
    assert select(cov, Target(revision=25), WHERE) == tuple(CHAIN)


@pytest.mark.parametrize(
    ("target", "said"),
    [
        (Target(revision=9), "revision 9 is before s3://backups/ns/demo/full.db (revision 10)"),
        (Target(revision=26), "reaches revision 25, not 26"),
        (Target(unix_ms=999), "before the continuous backup of"),
        (Target(unix_ms=6_001), "reaches 1970-01-01T00:00:06.000Z, not"),
        (Target(unix_ms=4_000), "falls where no recorder watched"),
    ],
)
def test_a_target_the_chain_cannot_reach_is_refused_saying_why(target: Target, said: str) -> None:
    with pytest.raises(PointInTimeError, match=said.replace("(", r"\(").replace(")", r"\)")):
        select(coverage(10, CHAIN), target, WHERE)


def test_past_a_hole_the_refusal_names_it() -> None:
    cov = coverage(10, [CHAIN[0], CHAIN[2]])
    with pytest.raises(PointInTimeError, match=re.escape("revisions 16..20 are missing")):
        select(cov, Target(revision=22), WHERE)


def test_a_time_needs_the_segments_that_began_before_it() -> None:
    cov = coverage(10, CHAIN)
    assert select(cov, Target(unix_ms=1_500), WHERE) == tuple(CHAIN[:1])
    assert select(cov, Target(unix_ms=2_000), WHERE) == tuple(CHAIN[:1])
    assert select(cov, Target(unix_ms=5_500), WHERE) == tuple(CHAIN)


def put(rev: int, lease: int = 0) -> kv_pb2.Event:
    kv = kv_pb2.KeyValue(key=b"/k", value=b"%d" % rev, mod_revision=rev, lease=lease)
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)


def history() -> list[Record]:
    """Marks at 100, 200 and 300 ms; revisions 11-12 (a lease first), 13, 14-15."""
    log = EventLog()
    log.mark_time(100)
    log.add_lease(7, 60)
    log.add_event(put(11, lease=7))
    log.add_event(put(12))
    log.mark_time(200)
    log.add_event(put(13))
    log.mark_time(300)
    log.add_event(put(14))
    log.add_event(put(15))
    return list(read_log(log.to_bytes()))


def kept(target: Target) -> tuple[list[int], Cutter]:
    cutter = Cutter(target, base=10)
    records = list(cutter.feed(history()))
    return [r.event.kv.mod_revision for r in records if r.event is not None], cutter


def test_a_revision_keeps_every_event_up_to_it_and_nothing_after() -> None:
    assert kept(Target(revision=10))[0] == []
    revisions, cutter = kept(Target(revision=14))
    assert revisions == [11, 12, 13, 14]
    assert cutter.done and (cutter.reached.revision, cutter.reached.unix_ms) == (14, 300)
    assert kept(Target(revision=15))[0] == [11, 12, 13, 14, 15]


def test_a_time_keeps_what_had_arrived_by_then() -> None:
    assert kept(Target(unix_ms=99))[0] == []
    assert kept(Target(unix_ms=150))[0] == [11, 12]
    revisions, cutter = kept(Target(unix_ms=299))
    assert revisions == [11, 12, 13] and cutter.reached.revision == 13
    assert kept(Target(unix_ms=300))[0] == [11, 12, 13, 14, 15]


def test_the_lease_before_a_kept_event_is_kept() -> None:
    cutter = Cutter(Target(revision=11), base=10)
    records = list(cutter.feed(history()))
    assert [r.lease.ID for r in records if r.lease is not None] == [7]


def test_the_chain_log_is_written_from_the_store_cut_at_the_target(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = StoreSettings(bucket="backups")
    key = "ns/demo/full.db"
    records = history()

    async def upload() -> None:
        halves = [(Segment(10, 12, 50, 150), records[:4]), (Segment(12, 15, 150, 350), records[4:])]
        for seg, part in halves:
            await upload_segment(
                s3, store, key, seg, write_records(part), events=seg.upto - seg.after, base=10,
                compression="zstd", encryption_key=None,
            )  # fmt: skip

    asyncio.run(upload())
    out = tmp_path / "cut.log"
    reached = asyncio.run(
        write_chain_log(s3, store, key, Target(revision=13), out, base=None, encryption_key=None)
    )
    assert (reached.revision, reached.events) == (13, 3)
    got = [r.event.kv.mod_revision for r in read_log(out.read_bytes()) if r.event is not None]
    assert got == [11, 12, 13]
    with pytest.raises(PointInTimeError, match="reaches revision 15, not 16"):
        asyncio.run(
            write_chain_log(s3, store, key, Target(revision=16), out, base=10, encryption_key=None)
        )
    with pytest.raises(PointInTimeError, match="has no continuous backup beside it"):
        asyncio.run(
            write_chain_log(
                s3,
                store,
                "ns/demo/other.db",
                Target(revision=11),
                out,
                base=10,
                encryption_key=None,
            )
        )
