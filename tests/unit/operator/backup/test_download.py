"""The download against an in-memory S3: every check at restore time, and the atomic file (a
failed download leaves nothing that looks like a snapshot, and never touches an existing one)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from etcd_operator.api.backup import Compression
from etcd_operator.backup.codec import encode
from etcd_operator.backup.download import DownloadResult, download_snapshot
from etcd_operator.backup.errors import (
    BackupError,
    CorruptObjectError,
    EncryptionKeyRequiredError,
    NoSuchKeyError,
    NotABackupError,
    SnapshotFileError,
    TrailerMismatchError,
    TruncatedObjectError,
    WrongEncryptionKeyError,
)
from etcd_operator.backup.metadata import ObjectMetadata
from etcd_operator.backup.store import StoreSettings

from tests.unit.operator.backup.fake_s3 import FakeS3

KEY = bytes(range(32))
STORE = StoreSettings(bucket="backups")
NAME = "ns/demo/b1"
LOCATION = f"s3://backups/{NAME}"


def snapshot(size: int = 200_000) -> bytes:
    db = hashlib.shake_256(b"db").digest(size)
    return db + hashlib.sha256(db).digest()


RAW = snapshot()


def store_object(
    s3: FakeS3,
    raw: bytes = RAW,
    compression: Compression = Compression.ZSTD,
    key: bytes | None = KEY,
    *,
    data: bytes | None = None,
) -> bytes:
    obj = encode(raw, compression, key, chunk_size=4096)
    meta = ObjectMetadata(
        compression=compression,
        encryption="aes-256-gcm-chunked-v1" if key else "none",
        sha256=hashlib.sha256(raw).hexdigest(),
        raw_size=len(raw),
        stored_size=len(obj),
    )
    s3.objects[NAME] = (obj if data is None else data, meta.to_s3())
    return obj


def fetch(s3: FakeS3, dest: Path, key: bytes | None = KEY) -> DownloadResult:
    return asyncio.run(download_snapshot(STORE, NAME, dest, key, client=s3))


def fails(
    s3: FakeS3, tmp_path: Path, error: type[BackupError], match: str, key: bytes | None = KEY
) -> BackupError:
    """The download fails with ``error``; the directory holds only what it held before."""
    dest = tmp_path / "snapshot.db"
    dest.write_bytes(b"previous snapshot")
    with pytest.raises(error, match=match) as info:
        fetch(s3, dest, key)
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.db"]
    assert dest.read_bytes() == b"previous snapshot"
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_download_round_trip(compression: Compression, key: bytes | None, tmp_path: Path) -> None:
    s3 = FakeS3()
    obj = store_object(s3, compression=compression, key=key)
    dest = tmp_path / "snapshot.db"
    result = fetch(s3, dest, key)
    assert dest.read_bytes() == RAW
    assert (result.raw_size, result.stored_size, result.sha256) == (
        len(RAW),
        len(obj),
        hashlib.sha256(RAW).hexdigest(),
    )
    assert result.location == LOCATION
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.db"]


def test_wrong_key(tmp_path: Path) -> None:
    s3 = FakeS3()
    store_object(s3)
    fails(s3, tmp_path, WrongEncryptionKeyError, "encrypted with another key", key=bytes(32))


def test_no_key_for_an_encrypted_object(tmp_path: Path) -> None:
    s3 = FakeS3()
    store_object(s3)
    fails(s3, tmp_path, EncryptionKeyRequiredError, f"{LOCATION} is encrypted", key=None)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize("compression", list(Compression))
def test_tampered_object(compression: Compression, key: bytes | None, tmp_path: Path) -> None:
    """Overwritten with a modified copy (same size, same metadata)."""
    s3 = FakeS3()
    obj = bytearray(store_object(s3, compression=compression, key=key))
    obj[len(obj) // 2] ^= 0x20
    store_object(s3, compression=compression, key=key, data=bytes(obj))
    fails(s3, tmp_path, CorruptObjectError, "corrupt", key=key)


def test_truncated_object(tmp_path: Path) -> None:
    s3 = FakeS3()
    obj = store_object(s3)
    store_object(s3, data=obj[:-5000])
    fails(s3, tmp_path, TruncatedObjectError, "truncated: the store holds")


def test_longer_object(tmp_path: Path) -> None:
    s3 = FakeS3()
    obj = store_object(s3)
    store_object(s3, data=obj + b"extra")
    fails(s3, tmp_path, CorruptObjectError, "corrupt or was replaced")


def test_missing_object_and_foreign_objects(tmp_path: Path) -> None:
    s3 = FakeS3()
    fails(s3, tmp_path, NoSuchKeyError, f"backup object {LOCATION} does not exist")
    s3.objects[NAME] = (RAW, {})
    fails(s3, tmp_path, NotABackupError, "not an etcd-operator backup")
    unfinished = {"etcd-backup-format": "1", "compression": "none", "encryption": "none"}
    s3.objects[NAME] = (RAW, unfinished)
    fails(s3, tmp_path, NotABackupError, "not a complete backup")


def test_etcd_trailer_is_checked_again(tmp_path: Path) -> None:
    s3 = FakeS3()
    store_object(s3, raw=RAW[:-1] + bytes([RAW[-1] ^ 1]), key=None, compression=Compression.NONE)
    fails(s3, tmp_path, TrailerMismatchError, "fails etcd's own sha256 check", key=None)


def test_unwritable_destination(tmp_path: Path) -> None:
    s3 = FakeS3()
    store_object(s3)
    with pytest.raises(SnapshotFileError, match=r"missing/snapshot\.db: No such file"):
        fetch(s3, tmp_path / "missing" / "snapshot.db")
