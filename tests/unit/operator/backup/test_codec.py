"""The backup object format: round trips for every compression x encryption, and every way an
object can be damaged, cut, reordered, spliced or opened with the wrong key is told apart."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from etcd_operator.api.backup import Compression
from etcd_operator.backup import codec
from etcd_operator.backup.codec import (
    DEFAULT_CHUNK_SIZE,
    HEADER,
    MIN_CHUNK_SIZE,
    TAG_SIZE,
    Encoder,
    SnapshotDigest,
    decode,
    decode_bytes,
    encode,
    parse_key,
)
from etcd_operator.backup.errors import (
    CorruptObjectError,
    EncryptionKeyRequiredError,
    InvalidEncryptionKeyError,
    NotABackupError,
    TrailerMismatchError,
    TruncatedObjectError,
    WrongEncryptionKeyError,
)
from etcd_operator.backup.metadata import ObjectMetadata, SnapshotInfo

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CHUNK = MIN_CHUNK_SIZE  # small chunks: many of them in a small object
COMPRESSIONS = list(Compression)


def snapshot(db: bytes) -> bytes:
    """A raw stream as etcd sends it: the database, then its sha256."""
    return db + hashlib.sha256(db).digest()


def sample_db(size: int = 300_000) -> bytes:
    # Some incompressible pages, some zeroed ones, some text: like a bbolt file.
    rng = hashlib.shake_256(b"db").digest(size // 3)
    return (rng + bytes(size // 3) + b"key=value;" * (size // 30))[:size]


RAW = snapshot(sample_db())


def chunks_of(obj: bytes, chunk: int = CHUNK) -> tuple[bytes, list[bytes]]:
    """An encrypted object split into its header and sealed chunks."""
    header, rest = obj[: HEADER.size], obj[HEADER.size :]
    step = chunk + TAG_SIZE
    return header, [rest[i : i + step] for i in range(0, len(rest), step)]


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize("chunk", [CHUNK, DEFAULT_CHUNK_SIZE])
def test_round_trip(compression: Compression, key: bytes | None, chunk: int) -> None:
    obj = encode(RAW, compression, key, chunk_size=chunk)
    sha = hashlib.sha256(RAW).hexdigest()
    assert decode_bytes(obj, compression, key, expected_sha256=sha, expected_size=len(RAW)) == RAW
    if compression == Compression.NONE and key is None:
        assert obj == RAW  # a plain backup is an etcd snapshot file as it is
    if key is not None:
        assert obj[:4] == b"EOBK"
        assert RAW[:64] not in obj


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7], ids=str
)
def test_round_trip_at_chunk_boundaries(
    compression: Compression, key: bytes | None, size: int
) -> None:
    """Fed in odd pieces; sizes around the chunk size (the final chunk may be full or empty)."""
    data = hashlib.shake_256(str(size).encode()).digest(size) if size else b""
    enc = Encoder(compression, key, chunk_size=CHUNK)
    obj = b"".join(enc.update(data[i : i + 777]) for i in range(0, len(data), 777))
    obj += enc.finish()
    assert enc.size == len(obj)
    assert decode_bytes(obj, compression, key, check_trailer=False) == data


def test_encrypted_layout() -> None:
    """Header fields and chunk sizes are what the module docstring says."""
    plain = os.urandom(3 * CHUNK + 100)
    obj = encode(plain, Compression.NONE, KEY, chunk_size=CHUNK)
    header, chunks = chunks_of(obj)
    magic, version, cipher, reserved, chunk, prefix, check = HEADER.unpack(header)
    assert (magic, version, cipher, reserved, chunk) == (b"EOBK", 1, 1, 0, CHUNK)
    assert check == codec.key_check(KEY)
    assert [len(c) for c in chunks] == [CHUNK + TAG_SIZE] * 3 + [100 + TAG_SIZE]
    # A fresh nonce prefix per object: the same input never gives the same bytes.
    again = encode(plain, Compression.NONE, KEY, chunk_size=CHUNK)
    assert HEADER.unpack(again[: HEADER.size])[5] != prefix
    assert again[HEADER.size :] != obj[HEADER.size :]


def test_decoding_is_bounded() -> None:
    """A small object that decompresses to a lot is read in bounded pieces."""
    zeros = bytes(64 << 20)
    for compression in (Compression.GZIP, Compression.ZSTD):
        obj = encode(zeros, compression, KEY)
        assert len(obj) < 1 << 20
        reader = codec.open_reader(io.BytesIO(obj), compression, encrypted=True, key=KEY)
        total = 0
        while piece := reader.read(1 << 20):
            assert len(piece) <= 1 << 20
            total += len(piece)
        assert total == len(zeros)


# -- encryption: damage, truncation, reordering, splicing, keys ---------------------------------


def encrypted(compression: Compression = Compression.NONE) -> bytes:
    return encode(RAW, compression, KEY, chunk_size=CHUNK)


def test_wrong_key_is_named() -> None:
    for compression in COMPRESSIONS:
        with pytest.raises(WrongEncryptionKeyError, match="another key"):
            decode_bytes(encrypted(compression), compression, OTHER_KEY)


def test_missing_key_is_named() -> None:
    with pytest.raises(EncryptionKeyRequiredError, match="is encrypted"):
        decode_bytes(encrypted(), Compression.NONE, None, encrypted=True)


@pytest.mark.parametrize("offset", [HEADER.size + 5, HEADER.size + CHUNK + TAG_SIZE + 100, -1])
def test_flipped_bit_in_a_chunk_is_tampering(offset: int) -> None:
    obj = bytearray(encrypted())
    obj[offset] ^= 0x01
    with pytest.raises(CorruptObjectError, match="fails authentication") as info:
        decode_bytes(bytes(obj), Compression.NONE, KEY)
    assert type(info.value) is CorruptObjectError


@pytest.mark.parametrize(
    ("field", "offset"), [("chunk size", 10), ("nonce prefix", 12), ("reserved", 7)]
)
def test_altered_header_is_tampering(field: str, offset: int) -> None:
    obj = bytearray(encrypted())
    obj[offset] ^= 0x04
    with pytest.raises(CorruptObjectError) as info:
        decode_bytes(bytes(obj), Compression.NONE, KEY)
    assert type(info.value) is CorruptObjectError, field


def test_altered_key_check_is_tampering_not_a_wrong_key() -> None:
    obj = bytearray(encrypted())
    obj[25] ^= 0xFF
    with pytest.raises(CorruptObjectError, match="key check value is altered"):
        decode_bytes(bytes(obj), Compression.NONE, KEY)


def test_unknown_format_version_and_foreign_data() -> None:
    obj = bytearray(encrypted())
    obj[4] = 2
    with pytest.raises(NotABackupError, match="format 2"):
        decode_bytes(bytes(obj), Compression.NONE, KEY)
    with pytest.raises(NotABackupError, match="not an encrypted backup"):
        decode_bytes(RAW, Compression.NONE, KEY)


def test_truncation_at_a_chunk_boundary() -> None:
    header, chunks = chunks_of(encrypted())
    for keep in (1, 2, len(chunks) - 1):
        cut = header + b"".join(chunks[:keep])
        with pytest.raises(TruncatedObjectError, match=f"ends after chunk {keep - 1}"):
            decode_bytes(cut, Compression.NONE, KEY)


def test_truncation_inside_a_chunk_and_inside_the_header() -> None:
    obj = encrypted()
    with pytest.raises(CorruptObjectError, match="truncated"):
        decode_bytes(obj[:-100], Compression.NONE, KEY)
    with pytest.raises(TruncatedObjectError, match="right after its encryption header"):
        decode_bytes(obj[: HEADER.size], Compression.NONE, KEY)
    with pytest.raises(TruncatedObjectError, match="less than the encryption header"):
        decode_bytes(obj[:20], Compression.NONE, KEY)
    with pytest.raises(TruncatedObjectError):
        decode_bytes(b"", Compression.NONE, KEY)


def test_reordered_chunks() -> None:
    header, chunks = chunks_of(encrypted())
    chunks[1], chunks[2] = chunks[2], chunks[1]
    with pytest.raises(CorruptObjectError, match="chunk 1 fails authentication"):
        decode_bytes(header + b"".join(chunks), Compression.NONE, KEY)


def test_dropped_and_duplicated_chunks() -> None:
    header, chunks = chunks_of(encrypted())
    with pytest.raises(CorruptObjectError, match="chunk 1 fails"):
        decode_bytes(header + b"".join(chunks[:1] + chunks[2:]), Compression.NONE, KEY)
    with pytest.raises(CorruptObjectError, match="chunk 1 fails"):
        decode_bytes(header + b"".join(chunks[:1] + chunks), Compression.NONE, KEY)


def test_appended_chunk_after_the_final_one() -> None:
    header, chunks = chunks_of(encrypted())
    with pytest.raises(CorruptObjectError):
        decode_bytes(header + b"".join([*chunks, chunks[0]]), Compression.NONE, KEY)


def test_chunk_spliced_from_another_object_under_the_same_key() -> None:
    header, chunks = chunks_of(encrypted())
    _, foreign = chunks_of(encrypted())
    chunks[2] = foreign[2]
    with pytest.raises(CorruptObjectError, match="chunk 2 fails"):
        decode_bytes(header + b"".join(chunks), Compression.NONE, KEY)
    # Even with the other object's header, its chunks do not mix with ours.
    other_header, _ = chunks_of(encrypted())
    with pytest.raises(CorruptObjectError, match="chunk 0 fails"):
        decode_bytes(other_header + b"".join(chunks), Compression.NONE, KEY)


# -- compression without encryption -------------------------------------------------------------


def test_truncated_gzip_is_named() -> None:
    obj = encode(RAW, Compression.GZIP)
    with pytest.raises(TruncatedObjectError, match="gzip stream ends early"):
        decode_bytes(obj[:-20], Compression.GZIP)
    with pytest.raises(CorruptObjectError, match="data after its gzip end"):
        decode_bytes(obj + b"x", Compression.GZIP)


def test_truncated_zstd_is_caught_by_the_recorded_size() -> None:
    obj = encode(RAW, Compression.ZSTD)
    with pytest.raises(TruncatedObjectError, match=f"of the {len(RAW)} bytes"):
        decode_bytes(obj[: len(obj) // 2], Compression.ZSTD, expected_size=len(RAW))


def test_damaged_compressed_data_is_corrupt() -> None:
    for compression in (Compression.GZIP, Compression.ZSTD):
        obj = bytearray(encode(RAW, compression))
        obj[len(obj) // 2] ^= 0xFF
        with pytest.raises(CorruptObjectError):
            decode_bytes(
                bytes(obj),
                compression,
                expected_sha256=hashlib.sha256(RAW).hexdigest(),
                expected_size=len(RAW),
            )


def test_plain_damage_is_caught_by_the_sha256() -> None:
    obj = bytearray(RAW)
    obj[1000] ^= 1
    with pytest.raises(CorruptObjectError, match="sha256"):
        decode_bytes(bytes(obj), expected_sha256=hashlib.sha256(RAW).hexdigest())


# -- the raw stream: our sha256 and etcd's trailer ---------------------------------------------


@pytest.mark.parametrize("piece", [1, 7, 31, 32, 33, 4096])
def test_snapshot_digest_in_any_pieces(piece: int) -> None:
    digest = SnapshotDigest()
    for i in range(0, len(RAW), piece):
        digest.update(RAW[i : i + piece])
    assert digest.size == len(RAW)
    assert digest.sha256 == hashlib.sha256(RAW).hexdigest()
    assert digest.trailer_ok
    digest.check_trailer("member m0")


def test_trailer_mismatch_and_short_stream() -> None:
    bad = SnapshotDigest()
    bad.update(RAW[:-1] + bytes([RAW[-1] ^ 1]))
    with pytest.raises(TrailerMismatchError, match="member m0 fails etcd's own sha256"):
        bad.check_trailer("member m0")
    cut = SnapshotDigest()
    cut.update(RAW[: len(RAW) // 2])
    assert not cut.trailer_ok
    short = SnapshotDigest()
    short.update(b"x" * 32)
    with pytest.raises(TrailerMismatchError, match="too short"):
        short.check_trailer("etcd")


def test_decode_checks_the_trailer() -> None:
    broken = snapshot(b"db")[:-1] + b"\x00"
    obj = encode(broken, Compression.ZSTD, KEY)
    with pytest.raises(TrailerMismatchError):
        decode(io.BytesIO(obj), lambda _b: None, compression="zstd", encrypted=True, key=KEY)


# -- keys ---------------------------------------------------------------------------------------


def test_parse_key_accepts_raw_and_base64() -> None:
    key = os.urandom(32)
    assert parse_key(key) == key
    assert parse_key(base64.b64encode(key)) == key
    assert parse_key(base64.b64encode(key) + b"\n") == key
    assert parse_key(base64.b64encode(key).decode()) == key
    assert parse_key(base64.urlsafe_b64encode(key).rstrip(b"=")) == key


@pytest.mark.parametrize("value", [b"", b"short", bytes(range(31)), base64.b64encode(bytes(16))])
def test_parse_key_refuses_other_lengths_without_showing_the_value(value: bytes) -> None:
    with pytest.raises(InvalidEncryptionKeyError, match="must be 32 bytes") as info:
        parse_key(value)
    if len(value) > 4:
        assert value.decode(errors="replace") not in str(info.value)


def test_encoder_refuses_a_key_of_the_wrong_size() -> None:
    with pytest.raises(InvalidEncryptionKeyError):
        Encoder(Compression.NONE, b"k" * 16)


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_round_trip_and_no_secrets() -> None:
    meta = ObjectMetadata(
        compression=Compression.ZSTD,
        encryption=codec.ENCRYPTION_AES_GCM,
        sha256="ab" * 32,
        raw_size=123,
        stored_size=100,
        snapshot=SnapshotInfo(
            revision=42, cluster_id=0xCDF818194E3A8C32, etcd_version="3.4.30", member="m0"
        ),
    )
    s3 = meta.to_s3()
    assert s3["etcd-cluster-id"] == "cdf818194e3a8c32"
    assert s3["encryption"] == "aes-256-gcm-chunked-v1"
    assert all(v.isascii() for v in s3.values())
    assert KEY.hex() not in str(s3)
    # S3 may hand names back in another case.
    assert ObjectMetadata.from_s3({k.title(): v for k, v in s3.items()}, "x") == meta
    assert meta.complete and meta.encrypted


def test_metadata_of_foreign_objects() -> None:
    with pytest.raises(NotABackupError, match="not an etcd-operator backup"):
        ObjectMetadata.from_s3({}, "s3://b/k")
    with pytest.raises(NotABackupError, match="format '9'"):
        ObjectMetadata.from_s3({"etcd-backup-format": "9"}, "s3://b/k")
    with pytest.raises(NotABackupError, match="unreadable"):
        ObjectMetadata.from_s3(
            {"etcd-backup-format": "1", "compression": "lz4", "encryption": "none"}, "s3://b/k"
        )
