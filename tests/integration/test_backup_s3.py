"""Backups of real members to real S3 servers, and restores from them with both tools.

Every test that talks to S3 runs against two independent implementations, each a real HTTP
server process on a free loopback port, started once for this module and stopped afterwards:

* moto in server mode (Python), with signature and IAM checks switched on after the fixture
  created its users (so wrong credentials are refused as AWS refuses them);
* versitygw (Go; `tools/versitygw.py` builds it from the Go module proxy, `make versitygw`),
  an S3 gateway storing objects as files in a directory, with its root account as the admin
  and a plain account of its own IAM that owns no bucket.

A pyetcd member and a Debian etcd 3.4 member each hold ~10k keys; their ``Maintenance.Snapshot``
streams through ``etcd_operator.backup.upload_snapshot`` into the bucket (zstd + AES-256-GCM, and
plain), comes back through ``download_snapshot``, is restored with ``pyetcdutl snapshot
restore`` and with ``etcdctl snapshot restore``, and a server started on each restore must serve
every key and value the source served, at the same revisions.

Faults: an unreachable endpoint, a missing bucket, wrong credentials and missing permissions,
a wrong encryption key at download, an object overwritten with a modified copy, a key below an
existing object (which only a server storing objects as files refuses), server-side encryption
the server does not confirm (versitygw ignores it: a warning), and a member killed with SIGKILL
in the middle of its snapshot stream (the multipart upload must be aborted: no upload listed, no
object). Every process is stopped in a finalizer; waits poll conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcd_operator.api.backup import Compression, ServerSideEncryption
from etcd_operator.backup import (
    AccessDeniedError,
    BackupError,
    CorruptObjectError,
    Credentials,
    EtcdStreamError,
    InvalidCredentialsError,
    NoSuchBucketError,
    SnapshotInfo,
    StoreError,
    StoreSettings,
    StoreUnreachableError,
    UploadResult,
    WrongEncryptionKeyError,
    download_snapshot,
    make_client,
    multipart,
    upload_snapshot,
)
from etcd_operator.backup.upload import DEFAULT_PART_SIZE, MIN_PART_SIZE
from etcd_operator.backup.verify import VerificationError, verify_backup
from pyetcd.client import EtcdClient
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import (
    ETCD_BIN,
    ETCDCTL_BIN,
    PYETCD_BIN,
    PYETCDUTL_BIN,
    Cluster,
    Flavour,
    Member,
    MemberError,
    etcdctl_env,
    status,
)
from tests.integration.conftest import MemberRegistry, start_or_fail
from tools.ports import free_port
from tools.s3server import S3Server, S3ServerError, moto_server, versitygw_server

pytestmark = pytest.mark.integration

KEY_COUNT = 10_000
TXN_OPS = 100  # puts per transaction (etcd allows 128)
START_TIMEOUT = 30.0
CMD_TIMEOUT = 120.0
ENCRYPTION_KEY = hashlib.sha256(b"backup test key").digest()

Codec = tuple[Compression, bytes | None]
CODECS: dict[str, Codec] = {
    "zstd-aes": (Compression.ZSTD, ENCRYPTION_KEY),
    "plain": (Compression.NONE, None),
}
# Plain backups go up in 5 MiB parts (multipart upload, staging key, server-side copy); the
# compressed ones in one PutObject (less than one 16 MiB part): both paths reach the restores.
PART_SIZES = {"zstd-aes": DEFAULT_PART_SIZE, "plain": MIN_PART_SIZE}


def require_binaries() -> None:
    """Fail (never skip) when a binary the module needs is missing."""
    missing = [
        str(p)
        for p in (ETCD_BIN, ETCDCTL_BIN, PYETCD_BIN, PYETCDUTL_BIN)
        if not (p.is_file() and os.access(p, os.X_OK))
    ]
    if missing:
        pytest.fail(
            f"missing binaries: {', '.join(missing)}; run `make setup` (it installs etcd and "
            "etcdctl from Debian and the pyetcd console scripts into .venv)",
            pytrace=False,
        )


# ------------------------------------------------------------------------------------------------
# The S3 server


S3_SERVERS = ("moto", "versitygw")


@pytest.fixture(scope="module", params=S3_SERVERS)
def s3(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    """Each S3 implementation in turn, running for the tests of this module that use it."""
    name: str = request.param
    base = tmp_path_factory.mktemp(name)
    runner = moto_server if name == "moto" else versitygw_server
    try:
        with runner(base) as server:
            yield server
    except S3ServerError as err:
        pytest.fail(str(err), pytrace=False)


def new_bucket(s3: S3Server) -> str:
    name = f"backups-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    return new_bucket(s3)


def listing(s3: S3Server, bucket: str) -> tuple[list[str], list[str]]:
    """(object keys, keys of unfinished multipart uploads) in the bucket."""
    client = s3.client()
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return objects, uploads


# ------------------------------------------------------------------------------------------------
# Source members and what they serve


@dataclass(frozen=True)
class Served:
    revision: int
    kvs: tuple[tuple[bytes, bytes, int, int, int], ...]  # key value create mod version


def write_keys(endpoint: str, count: int = KEY_COUNT) -> None:
    """``count`` keys with varied values (binary, empty, up to ~2000 bytes), some overwritten
    and some deleted afterwards, in transactions of TXN_OPS puts."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for start in range(0, count, TXN_OPS):
            ops = []
            for i in range(start, min(start + TXN_OPS, count)):
                # Random bytes (incompressible) and runs (compressible): a ~14 MB database.
                value = hashlib.shake_256(str(i).encode()).digest(i % 500) + b"v" * (i % 1500)
                ops.append(
                    rpc_pb2.RequestOp(
                        request_put=rpc_pb2.PutRequest(key=f"/k/{i:06d}".encode(), value=value)
                    )
                )
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
        for i in range(0, count, 97):
            kv.Put(rpc_pb2.PutRequest(key=f"/k/{i:06d}".encode(), value=b"again"), timeout=30)
        for i in range(5, count, 499):
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=f"/k/{i:06d}".encode()), timeout=30)


def served(endpoint: str) -> Served:
    """Every key with its value, create/mod revision and version, in pages."""
    out: list[tuple[bytes, bytes, int, int, int]] = []
    start = b"\x00"
    revision = 0
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        while True:
            resp = kv.Range(
                rpc_pb2.RangeRequest(key=start, range_end=b"\x00", limit=2000, revision=revision),
                timeout=30,
            )
            revision = revision or resp.header.revision
            out.extend(
                (k.key, k.value, k.create_revision, k.mod_revision, k.version) for k in resp.kvs
            )
            if not resp.more:
                return Served(revision, tuple(out))
            start = resp.kvs[-1].key + b"\x00"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Flavour, Member]]:
    """A running member of each flavour holding the same ~10k keys (for the whole module)."""
    require_binaries()
    base = tmp_path_factory.mktemp("sources")
    started: list[Member] = []
    try:
        out: dict[Flavour, Member] = {}
        flavours: tuple[Flavour, ...] = ("etcd", "pyetcd")
        for flavour in flavours:
            member = Member(flavour, base / flavour, name=f"src-{flavour}")
            started.append(member)
            member.start_and_wait(START_TIMEOUT)
            write_keys(member.host_port)
            out[flavour] = member
        yield out
    except MemberError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        for member in started:
            member.stop()


# ------------------------------------------------------------------------------------------------
# Backup, download, restore


async def snapshot_info(client: EtcdClient, member: Member) -> SnapshotInfo:
    status = await client.status(member.client_url)
    return SnapshotInfo(
        revision=status.revision,
        cluster_id=status.cluster_id,
        etcd_version=status.version,
        member=member.name,
    )


def back_up(
    member: Member,
    store: StoreSettings,
    name: str,
    codec: Codec,
    *,
    part_size: int = MIN_PART_SIZE,
) -> UploadResult:
    compression, key = codec

    async def main() -> UploadResult:
        async with EtcdClient([member.client_url]) as client:
            info = await snapshot_info(client, member)
            return await upload_snapshot(
                client.snapshot(member.client_url),
                store,
                store.key_for(name),
                compression=compression,
                encryption_key=key,
                metadata=info,
                part_size=part_size,
            )

    return asyncio.run(main())


def fetch(store: StoreSettings, key: str, dest: Path, encryption_key: bytes | None) -> None:
    asyncio.run(download_snapshot(store, key, dest, encryption_key))


def run_ok(cmd: list[str]) -> str:
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=CMD_TIMEOUT,
        env=etcdctl_env(),
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}{proc.stderr.decode(errors='replace')}"
    )
    return out


def restore(tool: str, snapshot: Path, target: Member) -> None:
    binary = ETCDCTL_BIN if tool == "etcdctl" else PYETCDUTL_BIN
    run_ok(
        [
            str(binary),
            "snapshot",
            "restore",
            str(snapshot),
            f"--name={target.name}",
            f"--initial-cluster={target.name}={target.peer_url}",
            f"--initial-cluster-token={target.cluster_token}",
            f"--initial-advertise-peer-urls={target.peer_url}",
            f"--data-dir={target.data_dir}",
        ]
    )


def start_restored(members: MemberRegistry, member: Member) -> None:
    members.created.append(member)
    start_or_fail(member, START_TIMEOUT)


def restores_serve_what_was_served(
    snapshot: Path, before: Served, members: MemberRegistry, tmp_path: Path
) -> None:
    """Restore ``snapshot`` with pyetcdutl (into pyetcd) and with etcdctl (into etcd): each
    serves exactly the keys, values and revisions ``before`` holds."""
    restores: tuple[tuple[str, Flavour], ...] = (("pyetcdutl", "pyetcd"), ("etcdctl", "etcd"))
    for tool, target_flavour in restores:
        target = Member(
            target_flavour,
            tmp_path / f"restored-{tool}",
            name="restored",
            cluster_token="restored-token",
        )
        restore(tool, snapshot, target)
        start_restored(members, target)
        after = served(target.host_port)
        assert after.revision == before.revision, tool
        assert after.kvs == before.kvs, tool
        target.stop()


# ------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(
    "case",
    [(f, c) for f in ("pyetcd", "etcd") for c in CODECS],
    ids="-".join,
)
def test_backup_restore_with_both_tools(
    sources: dict[Flavour, Member],
    s3: S3Server,
    members: MemberRegistry,
    tmp_path: Path,
    case: tuple[Flavour, str],
) -> None:
    """Back up each flavour with each codec, download, restore with both tools, compare."""
    flavour, codec_name = case
    bucket = new_bucket(s3)
    source = sources[flavour]
    before = served(source.host_port)
    assert len(before.kvs) > KEY_COUNT * 0.95
    codec = CODECS[codec_name]
    store = s3.store(bucket)

    result = back_up(
        source, store, f"{flavour}-{codec_name}", codec, part_size=PART_SIZES[codec_name]
    )
    assert (result.parts > 1) == (codec_name == "plain")
    assert result.location == f"s3://{bucket}/ns/demo/{flavour}-{codec_name}"
    assert listing(s3, bucket) == ([result.key], [])
    head = s3.client().head_object(Bucket=bucket, Key=result.key)
    meta = head["Metadata"]
    assert meta["sha256"] == result.sha256
    assert int(meta["raw-size"]) == result.raw_size
    assert int(meta["stored-size"]) == result.stored_size == head["ContentLength"]
    assert int(meta["etcd-revision"]) == before.revision
    assert meta["etcd-member"] == source.name
    assert meta["compression"] == codec[0].value
    assert meta["encryption"] == ("aes-256-gcm-chunked-v1" if codec[1] else "none")
    assert meta["etcd-version"].startswith("3.")
    for secret in (*s3.admin.secrets(), ENCRYPTION_KEY.hex()):
        assert secret not in json.dumps(meta)

    snapshot = tmp_path / "download" / "snapshot.db"
    snapshot.parent.mkdir()
    fetch(store, result.key, snapshot, codec[1])
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == result.sha256
    assert [p.name for p in snapshot.parent.iterdir()] == ["snapshot.db"]

    restores_serve_what_was_served(snapshot, before, members, tmp_path)


LARGE_KEY_COUNT = 100_000


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto alone, for the large round trip (the codecs and faults run against both servers)."""
    try:
        with moto_server(tmp_path_factory.mktemp("moto-large")) as server:
            yield server
    except S3ServerError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.mark.parametrize("flavour", ["pyetcd", "etcd"])
def test_three_member_clusters_of_100k_keys_back_up_from_a_follower_and_restore_with_both_tools(
    flavour: Flavour, moto: S3Server, members: MemberRegistry, tmp_path: Path
) -> None:
    """A 3-member cluster holding 100k keys (~100 MB): the backup streams from a follower, and
    pyetcdutl and etcdctl restore exactly the keys, values and revisions it served."""
    require_binaries()
    cluster = Cluster(flavour, tmp_path / "source", 3)
    try:
        cluster.start()
        write_keys(cluster.members[0].host_port, LARGE_KEY_COUNT)
        before = served(cluster.members[0].host_port)
        assert len(before.kvs) > LARGE_KEY_COUNT * 0.95
        answers = {m.name: status(m) for m in cluster.members}
        leader = {a.leader for a in answers.values() if a is not None}
        assert len(leader) == 1, answers
        follower = next(
            m
            for m in cluster.members
            if (a := answers[m.name]) and a.header.member_id not in leader
        )
        store = moto.store(new_bucket(moto))
        result = back_up(follower, store, f"large-{flavour}", CODECS["zstd-aes"])
        assert result.metadata.snapshot.member == follower.name
        assert result.raw_size > 50 << 20, result.raw_size  # tens of MB: many parts streamed
    finally:
        cluster.stop()
    snapshot = tmp_path / "snapshot.db"
    fetch(store, result.key, snapshot, ENCRYPTION_KEY)
    restores_serve_what_was_served(snapshot, before, members, tmp_path)


def test_unreachable_endpoint(sources: dict[Flavour, Member], s3: S3Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = StoreSettings(
        bucket="backups",
        endpoint=dead,
        force_path_style=True,
        credentials=s3.admin,
        max_attempts=1,
        connect_timeout=2.0,
    )
    with pytest.raises(StoreUnreachableError) as info:
        back_up(sources["pyetcd"], store, "x", CODECS["plain"])
    assert str(info.value).startswith(f"S3 endpoint {dead} is unreachable during upload")
    with pytest.raises(StoreUnreachableError):
        fetch(store, "ns/demo/x", Path("/nonexistent/snapshot.db"), None)


def test_missing_bucket(sources: dict[Flavour, Member], s3: S3Server) -> None:
    store = s3.store("no-such-bucket-here")
    with pytest.raises(NoSuchBucketError, match="bucket 'no-such-bucket-here' does not exist"):
        back_up(sources["pyetcd"], store, "x", CODECS["zstd-aes"])


def test_wrong_credentials_and_missing_permissions(
    sources: dict[Flavour, Member], s3: S3Server, bucket: str
) -> None:
    wrong_secret = Credentials(s3.admin.access_key_id, "not-the-secret-" + "x" * 25)
    unknown_key = Credentials("AKIAUNKNOWNKEY000000", "whatever-secret-value")
    cases: list[tuple[Credentials, type[BackupError], str]] = [
        (wrong_secret, InvalidCredentialsError, "SignatureDoesNotMatch"),
        (unknown_key, InvalidCredentialsError, "InvalidAccessKeyId"),
        (s3.nobody, AccessDeniedError, "allow the credentials s3:PutObject"),
    ]
    for creds, error, text in cases:
        with pytest.raises(error, match=text) as info:
            back_up(sources["pyetcd"], s3.store(bucket, creds), "x", CODECS["zstd-aes"])
        message = str(info.value) + repr(info.value)
        for secret in (*creds.secrets(), *s3.admin.secrets()):
            assert secret not in message
    assert listing(s3, bucket) == ([], [])


@pytest.fixture(scope="module")
def stored(
    sources: dict[Flavour, Member], s3: S3Server
) -> dict[str, tuple[StoreSettings, UploadResult]]:
    """One backup of the pyetcd source per codec, in a bucket of its own."""
    store = s3.store(new_bucket(s3))
    return {
        codec: (store, back_up(sources["pyetcd"], store, codec, CODECS[codec])) for codec in CODECS
    }


def test_wrong_encryption_key(
    stored: dict[str, tuple[StoreSettings, UploadResult]], tmp_path: Path
) -> None:
    store, result = stored["zstd-aes"]
    dest = tmp_path / "snapshot.db"
    with pytest.raises(WrongEncryptionKeyError, match="encrypted with another key"):
        fetch(store, result.key, dest, hashlib.sha256(b"another key").digest())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_verification_restores_a_backup_and_reports_its_key_space(
    stored: dict[str, tuple[StoreSettings, UploadResult]], codec_name: str, tmp_path: Path
) -> None:
    """Before test_tampered_object, which breaks these objects."""
    store, result = stored[codec_name]
    found = asyncio.run(
        verify_backup(store, result.key, CODECS[codec_name][1], scratch_root=str(tmp_path))
    )
    assert result.metadata.snapshot.revision is not None
    assert found.revision >= result.metadata.snapshot.revision
    assert found.total_keys >= KEY_COUNT
    assert list(tmp_path.iterdir()) == []  # the scratch directory is gone


def test_verification_refuses_a_snapshot_that_is_not_a_database(
    s3: S3Server, tmp_path: Path
) -> None:
    """A stream with a valid trailer over bytes that are no bbolt file: stored fine, refused
    by the verification."""
    store = s3.store(new_bucket(s3))
    junk = os.urandom(64 * 1024)

    async def stream() -> AsyncIterator[bytes]:
        yield junk + hashlib.sha256(junk).digest()

    async def main() -> None:
        result = await upload_snapshot(stream(), store, store.key_for("junk"))
        await verify_backup(store, result.key, None, scratch_root=str(tmp_path))

    with pytest.raises(VerificationError, match="pyetcdutl snapshot status"):
        asyncio.run(main())


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_tampered_object(
    stored: dict[str, tuple[StoreSettings, UploadResult]],
    s3: S3Server,
    tmp_path: Path,
    codec_name: str,
) -> None:
    """The object is overwritten with a modified copy of itself, metadata and size unchanged."""
    store, result = stored[codec_name]
    client = s3.client()
    obj = client.get_object(Bucket=store.bucket, Key=result.key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0x40
    client.put_object(
        Bucket=store.bucket, Key=result.key, Body=bytes(data), Metadata=obj["Metadata"]
    )
    dest = tmp_path / "snapshot.db"
    with pytest.raises(CorruptObjectError, match="corrupt or was tampered with"):
        fetch(store, result.key, dest, CODECS[codec_name][1])
    assert list(tmp_path.iterdir()) == []


def test_requests_carry_no_checksums_and_use_path_style(
    sources: dict[Flavour, Member], s3: S3Server, bucket: str
) -> None:
    """What goes on the wire for a multipart backup (create, parts, complete, copy, delete):
    path-style URLs, SigV4, a plain signed body, and none of the CRC checksums (nor the
    ``aws-chunked`` bodies that carry them) recent boto3 releases send by default, which several
    S3-compatible servers refuse. (moto and versitygw both accept those too; they are left out
    for the others.)"""
    store = s3.store(bucket)
    client: Any = make_client(store)
    sent: list[tuple[str, str, dict[str, str]]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        sent.append((request.method, request.url, headers))

    client.meta.events.register("before-send.s3", record)
    member = sources["pyetcd"]

    async def main() -> UploadResult:
        async with EtcdClient([member.client_url]) as etcd:
            return await upload_snapshot(
                etcd.snapshot(member.client_url),
                store,
                store.key_for("wire"),
                compression=Compression.NONE,
                part_size=MIN_PART_SIZE,
                client=client,
            )

    result = asyncio.run(main())
    assert result.parts > 1
    methods = [method for method, _, _ in sent]
    assert methods.count("PUT") >= result.parts + 1  # the parts and the copy
    for method, url, headers in sent:
        assert url.startswith(f"{s3.url}/{bucket}/"), url  # path style
        assert headers["authorization"].startswith("AWS4-HMAC-SHA256 "), method
        assert not [h for h in headers if h.startswith("x-amz-checksum-")], (method, headers)
        assert "x-amz-sdk-checksum-algorithm" not in headers, (method, headers)
        assert "x-amz-trailer" not in headers, (method, headers)
        assert "aws-chunked" not in headers.get("content-encoding", ""), (method, headers)
        assert not headers["x-amz-content-sha256"].startswith("STREAMING-"), (method, headers)
    assert listing(s3, bucket) == ([result.key], [])


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_server_side_encryption_is_confirmed_or_warned_about(
    sources: dict[Flavour, Member],
    s3: S3Server,
    bucket: str,
    codec_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SSE-S3 asked for (one PutObject; parts and a CopyObject): moto, like AWS, answers with
    the algorithm it applied; versitygw accepts the header and stores the object as it is, and
    the upload says so in a warning (the backup is kept)."""
    store = dataclasses.replace(
        s3.store(bucket), server_side_encryption=ServerSideEncryption(algorithm="AES256")
    )
    with caplog.at_level("WARNING", logger="etcd_operator.backup.multipart"):
        result = back_up(
            sources["pyetcd"], store, "sse", CODECS[codec_name], part_size=PART_SIZES[codec_name]
        )
    warned = [r.getMessage() for r in caplog.records if "server-side encryption" in r.getMessage()]
    head = s3.client().head_object(Bucket=bucket, Key=result.key)
    if s3.name == "moto":
        assert head["ServerSideEncryption"] == "AES256"
        assert warned == []
    else:
        assert "ServerSideEncryption" not in head
        assert len(warned) == 1
        assert f"did not confirm server-side encryption AES256 of {result.location}" in warned[0]
    assert listing(s3, bucket) == ([result.key], [])


def test_copy_into_place_in_parts(
    sources: dict[Flavour, Member],
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Objects over 5 GiB are copied from the staging key in parts (UploadPartCopy with byte
    ranges): the same path, with the limit lowered so that a ~14 MB backup takes it."""
    monkeypatch.setattr(multipart, "MAX_COPY_SIZE", 0)
    monkeypatch.setattr(multipart, "COPY_PART_SIZE", MIN_PART_SIZE)
    store = s3.store(bucket)
    result = back_up(sources["pyetcd"], store, "copied", CODECS["plain"])
    assert result.stored_size > 2 * MIN_PART_SIZE  # three copied parts, the last one short
    assert listing(s3, bucket) == ([result.key], [])
    head = s3.client().head_object(Bucket=bucket, Key=result.key)
    assert head["Metadata"]["sha256"] == result.sha256
    assert head["ContentLength"] == result.stored_size
    snapshot = tmp_path / "snapshot.db"
    fetch(store, result.key, snapshot, None)
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == result.sha256


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_key_below_an_existing_object(
    sources: dict[Flavour, Member], s3: S3Server, bucket: str, codec_name: str
) -> None:
    """A store whose prefix is an existing backup's key: AWS and moto hold an object "a" and
    an object "a/b"; versitygw (objects as files) refuses the second, with a message that says
    so, and the failed upload leaves nothing behind. A PutObject is refused at once; a multipart
    upload only at CompleteMultipartUpload, after every part went up, and is then aborted."""
    store = s3.store(bucket)
    first = back_up(sources["pyetcd"], store, "x", CODECS["zstd-aes"])
    nested = dataclasses.replace(store, prefix=first.key)
    source = sources["pyetcd"]
    if s3.name == "moto":
        second = back_up(source, nested, "y", CODECS[codec_name])
        assert listing(s3, bucket) == (sorted([first.key, second.key]), [])
        return
    with pytest.raises(StoreError, match="collides with an existing object") as info:
        back_up(source, nested, "y", CODECS[codec_name])
    assert info.value.code == "ObjectParentIsFile"
    assert listing(s3, bucket) == ([first.key], [])


BIG_VALUES = 64  # of 1 MiB each: the stream takes a moment, more than gRPC buffers
KILL_AFTER = 2 * MIN_PART_SIZE + (1 << 20)  # two parts on their way when the member dies


@pytest.mark.parametrize("flavour", ["pyetcd", "etcd"])
def test_member_killed_mid_stream_aborts_the_upload(
    members: MemberRegistry, s3: S3Server, bucket: str, flavour: Flavour
) -> None:
    require_binaries()
    member = members.new(flavour, name=f"victim-{flavour}")
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for i in range(BIG_VALUES):
            value = hashlib.shake_256(str(i).encode()).digest(1 << 20)
            kv.Put(rpc_pb2.PutRequest(key=f"/big/{i:03d}".encode(), value=value), timeout=30)
    store = s3.store(bucket)
    seen_during: list[tuple[list[str], list[str]]] = []

    async def main() -> None:
        async with EtcdClient([member.client_url]) as client:
            stream = client.snapshot(member.client_url)

            async def killing() -> AsyncIterator[bytes]:
                received = 0
                killed = False
                async for chunk in stream:
                    yield chunk
                    received += len(chunk)
                    if not killed and received >= KILL_AFTER:
                        # The uploader asked for more: its multipart upload is under way.
                        seen_during.append(await asyncio.to_thread(listing, s3, bucket))
                        await asyncio.to_thread(member.kill, signal.SIGKILL)
                        killed = True

            await upload_snapshot(
                killing(),
                store,
                store.key_for("killed"),
                compression=Compression.NONE,
                encryption_key=ENCRYPTION_KEY,
                metadata=SnapshotInfo(member=member.name),
                part_size=MIN_PART_SIZE,
            )

    with pytest.raises(EtcdStreamError, match=f"snapshot stream from member {member.name}"):
        asyncio.run(main())
    assert seen_during == [([], [store.key_for("killed") + ".partial"])]
    assert listing(s3, bucket) == ([], [])
    assert not member.running


def test_client_snapshot_is_what_etcdctl_saves(
    sources: dict[Flavour, Member], tmp_path: Path
) -> None:
    """``EtcdClient.snapshot`` yields etcd's stream unchanged: db + sha256 trailer, which
    ``etcdctl snapshot status`` reads like a file from ``etcdctl snapshot save``."""
    member = sources["etcd"]

    async def main() -> bytes:
        async with EtcdClient([member.client_url]) as client:
            return b"".join([chunk async for chunk in client.snapshot(member.client_url)])

    raw = asyncio.run(main())
    assert hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    path = tmp_path / "client.db"
    path.write_bytes(raw)
    status = json.loads(run_ok([str(ETCDCTL_BIN), "snapshot", "status", str(path), "-w", "json"]))
    assert status["revision"] == served(member.host_port).revision
    assert status["totalSize"] == len(raw) - 32
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def test_stalled_member_fails_the_stream(
    members: MemberRegistry, s3: S3Server, bucket: str
) -> None:
    """A member that stops sending (SIGSTOP: alive, connected, silent) fails the stream after
    the client's idle timeout, and the upload is aborted."""
    require_binaries()
    member = members.new("pyetcd", name="stalled")
    with grpc.insecure_channel(member.host_port) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for i in range(BIG_VALUES):
            value = hashlib.shake_256(str(i).encode()).digest(1 << 20)
            kv.Put(rpc_pb2.PutRequest(key=f"/big/{i:03d}".encode(), value=value), timeout=30)
    store = s3.store(bucket)

    async def main() -> None:
        async with EtcdClient([member.client_url]) as client:
            stream = client.snapshot(member.client_url, idle_timeout=2.0)

            async def stopping() -> AsyncIterator[bytes]:
                received = 0
                async for chunk in stream:
                    yield chunk
                    if received < KILL_AFTER <= received + len(chunk):
                        member.kill(signal.SIGSTOP)
                    received += len(chunk)

            await upload_snapshot(
                stopping(),
                store,
                store.key_for("stalled"),
                compression=Compression.ZSTD,
                part_size=MIN_PART_SIZE,
            )

    try:
        with pytest.raises(EtcdStreamError, match="DEADLINE_EXCEEDED: snapshot stream stalled"):
            asyncio.run(main())
    finally:
        member.kill(signal.SIGCONT)
    assert listing(s3, bucket) == ([], [])
