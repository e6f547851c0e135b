"""A continuous backup's segments on an in-memory S3: names that sort and say what they cover,
the unbroken run of a chain and its first hole, one object per segment (plain, compressed or
encrypted with the cluster's key), verified on the way back, and deleted with their backup."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from etcd_operator.backup import EncryptionKeyRequiredError, StoreSettings
from etcd_operator.backup.errors import CorruptObjectError, NotABackupError
from etcd_operator.backup.segments import (
    Segment,
    coverage,
    delete_chain,
    fetch_segment,
    list_chain,
    upload_segment,
)

from tests.unit.operator.backup.fake_s3 import FakeS3

STORE = StoreSettings(bucket="backups", prefix="ns/demo/")
BACKUP_KEY = "ns/demo/demo-20261206-1200.db.zst"
KEY = hashlib.sha256(b"backup key").digest()
LOG = b"E\x00\x00\x00\x00" * 50


def test_a_name_says_what_the_segment_covers_and_sorts_by_it() -> None:
    seg = Segment(after=41, upto=1_000, start_ms=1_765_000_000_000, end_ms=1_765_000_010_000)
    assert seg.name() == "0000000000000000041-0000000000000001000-1765000000000-1765000010000"
    assert seg.key(BACKUP_KEY) == f"{BACKUP_KEY}.continuous/{seg.name()}"
    assert Segment.parse(seg.name()) == seg
    later = Segment(1_000, 1_001, 1_765_000_010_000, 1_765_000_020_000)
    assert sorted([later.name(), seg.name()]) == [seg.name(), later.name()]
    for junk in ("", "1-2-3-4", seg.name() + ".tmp", "x" + seg.name()[1:]):
        assert Segment.parse(junk) is None
    with pytest.raises(ValueError):
        Segment(after=5, upto=4, start_ms=0, end_ms=0)


def seg(after: int, upto: int, start: int, end: int) -> Segment:
    return Segment(after, upto, start, end)


def test_a_chain_reaches_as_far_as_its_segments_follow_on() -> None:
    chain = [seg(10, 15, 0, 10), seg(15, 15, 10, 20), seg(15, 30, 20, 30), seg(30, 31, 30, 40)]
    got = coverage(10, list(reversed(chain)))
    assert got.segments == tuple(chain) and got.gap is None
    assert (got.upto, got.end_ms) == (31, 40)
    assert got.blind_spells == ()


def test_the_first_hole_ends_the_chain() -> None:
    got = coverage(10, [seg(10, 15, 0, 10), seg(17, 20, 10, 20), seg(20, 25, 20, 30)])
    assert got.upto == 15 and got.gap == "revisions 16..17 are missing"


def test_an_overlap_ends_the_chain() -> None:
    got = coverage(10, [seg(10, 15, 0, 10), seg(12, 20, 10, 20)])
    assert got.upto == 15 and got.gap is not None and "overlaps revisions up to 15" in got.gap


def test_a_chain_without_segments_reaches_its_base() -> None:
    got = coverage(10, [seg(3, 9, 0, 1)])  # another base's: ignored
    assert (got.upto, got.end_ms, got.gap) == (10, None, None)


def test_time_a_recorder_did_not_watch_is_a_blind_spell() -> None:
    got = coverage(10, [seg(10, 15, 0, 10), seg(15, 20, 50, 60)])
    assert got.upto == 20 and got.gap is None
    assert got.blind_spells == ((10, 50),)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_a_segment_comes_back_as_it_went(compression: str, encrypted: bool) -> None:
    s3 = FakeS3()
    key = KEY if encrypted else None
    one = seg(10, 12, 1_000, 2_000)
    stored = asyncio.run(
        upload_segment(
            s3, STORE, BACKUP_KEY, one, LOG, events=50, base=10,
            compression=compression, encryption_key=key,
        )
    )  # fmt: skip
    assert stored.key == one.key(BACKUP_KEY) and stored.raw_size == len(LOG)
    data, meta = s3.objects[stored.key]
    assert meta["etcd-backup-segment-format"] == "1"
    assert meta["etcd-events"] == "50" and meta["etcd-base-revision"] == "10"
    assert meta["sha256"] == hashlib.sha256(LOG).hexdigest()
    assert (LOG in data) == (compression == "none" and not encrypted)
    assert asyncio.run(fetch_segment(s3, STORE, BACKUP_KEY, one, key)) == LOG
    if encrypted:
        with pytest.raises(EncryptionKeyRequiredError):
            asyncio.run(fetch_segment(s3, STORE, BACKUP_KEY, one, None))


def test_a_damaged_segment_is_refused() -> None:
    s3 = FakeS3()
    one = seg(10, 12, 1_000, 2_000)
    asyncio.run(
        upload_segment(
            s3, STORE, BACKUP_KEY, one, LOG, events=50, base=10,
            compression="none", encryption_key=None,
        )
    )  # fmt: skip
    data, meta = s3.objects[one.key(BACKUP_KEY)]
    s3.objects[one.key(BACKUP_KEY)] = (b"X" + data[1:], meta)
    with pytest.raises(CorruptObjectError, match="sha256"):
        asyncio.run(fetch_segment(s3, STORE, BACKUP_KEY, one, None))
    s3.objects[one.key(BACKUP_KEY)] = (data, {})
    with pytest.raises(NotABackupError):
        asyncio.run(fetch_segment(s3, STORE, BACKUP_KEY, one, None))


def test_a_chain_is_listed_across_pages_and_deleted_with_its_backup() -> None:
    s3 = FakeS3()
    segments = [seg(i, i + 1, i * 10, i * 10 + 10) for i in range(10, 2_510)]
    for one in segments:
        s3.objects[one.key(BACKUP_KEY)] = (b"", {})
    s3.objects[BACKUP_KEY] = (b"the full backup", {})
    s3.objects["ns/demo/other.db.zst.continuous/" + segments[0].name()] = (b"", {})
    assert asyncio.run(list_chain(s3, STORE, BACKUP_KEY)) == segments
    assert s3.calls.count("ListObjectsV2") == 3
    assert asyncio.run(delete_chain(s3, STORE, BACKUP_KEY)) == len(segments)
    assert sorted(s3.objects) == [
        BACKUP_KEY,
        "ns/demo/other.db.zst.continuous/" + segments[0].name(),
    ]
