"""etcd's auth beyond what etcdctl's scenarios show (``test_etcdctl_compat``'s ``auth``):
client certificates' common names as users, JWT tokens, token expiry, tokens and auth changes
across the members of a cluster, auth state surviving kill -9 and travelling in snapshots to
and from upstream etcd, and ``--auth-token`` settings that cannot work stopping the member.

Upstream is etcd 3.5 (``make etcd35``), whose auth rules pyetcd speaks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyetcd.client import Credentials, EtcdClient, EtcdClientError
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from e2e.pki import issue, make_ca
from tests.integration import cluster as cluster_module
from tests.integration.cluster import (
    FLAVOURS,
    PYETCDUTL_BIN,
    Cluster,
    Flavour,
    Member,
    wait_for,
)
from tests.integration.conftest import start_or_fail
from tools import etcd35

pytestmark = pytest.mark.integration

ROOT = ("--user", "root:rootpw")
ALICE = ("--user", "alice:apw")


@pytest.fixture(autouse=True)
def upstream_35(monkeypatch: pytest.MonkeyPatch) -> None:
    built = etcd35.cached_binary()
    if built is None:
        pytest.fail(
            f"etcd {etcd35.ETCD35_VERSION} is not built in {etcd35.cache_dir()}; {etcd35.HINT}",
            pytrace=False,
        )
    monkeypatch.setattr(cluster_module, "ETCD_BIN", built)


def ok(member: Member, *args: str) -> str:
    result = member.etcdctl(*args)
    assert result.returncode == 0, f"etcdctl {' '.join(args)}: {result.stderr}"
    return result.stdout


def refused(member: Member, *args: str) -> str:
    result = member.etcdctl(*args)
    assert result.returncode != 0, f"etcdctl {' '.join(args)} succeeded: {result.stdout}"
    return result.stderr


def set_up_users(member: Member, *auth: str) -> None:
    """root (root role) and alice (read-write on /app/), then auth on."""
    for args in (
        ("user", "add", "root:rootpw"),
        ("user", "grant-role", "root", "root"),
        ("role", "add", "app"),
        ("role", "grant-permission", "app", "readwrite", "/app/", "--prefix"),
        ("user", "add", "alice:apw"),
        ("user", "grant-role", "alice", "app"),
        ("auth", "enable"),
    ):
        ok(member, *auth, *args)


@pytest.fixture
def members() -> Iterator[list[Member]]:
    started: list[Member] = []
    try:
        yield started
    finally:
        for member in reversed(started):
            member.stop()


def start(members: list[Member], member: Member) -> Member:
    members.append(member)
    start_or_fail(member)
    return member


def stub(member: Member) -> tuple[grpc.Channel, rpc_pb2_grpc.AuthStub, rpc_pb2_grpc.KVStub]:
    channel = grpc.insecure_channel(member.host_port)
    return channel, rpc_pb2_grpc.AuthStub(channel), rpc_pb2_grpc.KVStub(channel)


def token_for(member: Member, name: str, password: str) -> str:
    channel, auth, _ = stub(member)
    with channel:
        resp = auth.Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password))
    return str(resp.token)


def range_error(member: Member, token: str, key: bytes) -> tuple[grpc.StatusCode, str] | None:
    """The error of a Range with ``token``; None when it is served."""
    channel, _, kv = stub(member)
    with channel:
        try:
            kv.Range(rpc_pb2.RangeRequest(key=key), metadata=(("token", token),), timeout=10)
        except grpc.RpcError as err:
            return err.code(), err.details() or ""
    return None


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_client_certificates_common_name_is_the_user(
    flavour: Flavour, tmp_path: Path, members: list[Member]
) -> None:
    """With --client-cert-auth and no token, the CN of the verified certificate is the user:
    CN=root may manage auth, CN=alice gets alice's permissions; a token still wins."""
    ca = make_ca(tmp_path / "pki", common_name="etcd-ca")
    server = issue(ca, "member", "member", server=True, hosts=("127.0.0.1", "localhost"))
    certs = {cn: issue(ca, cn, cn) for cn in ("root", "alice")}

    def as_cn(cn: str, workdir: Path, port: int = 0) -> Member:
        return Member(
            flavour,
            workdir,
            client_port=port or None,
            client_scheme="https",
            extra_flags=(
                f"--cert-file={server.cert}",
                f"--key-file={server.key}",
                f"--trusted-ca-file={ca.cert}",
                "--client-cert-auth",
            ),
            etcdctl_flags=(
                f"--cacert={ca.cert}",
                f"--cert={certs[cn].cert}",
                f"--key={certs[cn].key}",
            ),
        )

    root = start(members, as_cn("root", tmp_path / flavour))
    set_up_users(root)
    alice = as_cn("alice", tmp_path / "unused", root.client_port)
    ok(root, "put", "/other", "root-only")
    ok(alice, "put", "/app/x", "1")
    assert ok(alice, "get", "/app/x", "--print-value-only").strip() == "1"
    assert "permission denied" in refused(alice, "get", "/other")
    assert "permission denied" in refused(alice, "user", "list")
    # A token names its user, whatever the certificate says.
    assert "permission denied" in refused(root, *ALICE, "get", "/other")
    ok(root, "user", "list")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_jwt_tokens(flavour: Flavour, tmp_path: Path, members: list[Member]) -> None:
    """--auth-token jwt: Authenticate answers an RS256 JWT carrying the user and the auth
    revision, which any member with the key verifies; stale after an auth change; a forged
    one is an invalid token."""
    key = rsa.generate_private_key(65537, 2048)
    priv, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    spec = f"--auth-token=jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"
    member = start(members, Member(flavour, tmp_path / flavour, extra_flags=(spec,)))
    set_up_users(member)
    ok(member, *ALICE, "put", "/app/x", "1")
    token = token_for(member, "alice", "apw")
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "RS256"
    assert claims["username"] == "alice" and claims["revision"] > 0 and claims["exp"] > 0
    assert range_error(member, token, b"/app/x") is None
    assert range_error(member, token, b"/other") == (
        grpc.StatusCode.PERMISSION_DENIED,
        "etcdserver: permission denied",
    )
    # A JWT carries the auth revision it was issued at: any later change makes it stale.
    ok(member, *ROOT, "role", "add", "unrelated")
    assert range_error(member, token, b"/app/x") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: revision of auth store is old",
    )
    forged = token[: token.rindex(".") + 1] + "AAAA"
    assert range_error(member, forged, b"/app/x") == (
        grpc.StatusCode.UNAUTHENTICATED,
        "etcdserver: invalid auth token",
    )


def test_simple_tokens_expire_their_ttl_after_the_last_use(
    tmp_path: Path, members: list[Member]
) -> None:
    member = start(members, Member("pyetcd", tmp_path / "m", extra_flags=("--auth-token-ttl=1",)))
    set_up_users(member)
    token = token_for(member, "alice", "apw")
    assert range_error(member, token, b"/app/x") is None
    # Each use renews the token: used again within the TTL, it still works...
    time.sleep(0.6)
    assert range_error(member, token, b"/app/x") is None
    time.sleep(0.6)
    assert range_error(member, token, b"/app/x") is None
    # ...and unused for longer than the TTL it is gone. Polling would renew it, so what is
    # tested here is the passage of time itself.
    time.sleep(1.5)
    expired = range_error(member, token, b"/app/x")
    assert expired == (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    # etcdctl authenticates afresh each time.
    ok(member, *ALICE, "get", "/app/x")


def test_tokens_and_auth_changes_reach_every_member(tmp_path: Path) -> None:
    cluster = Cluster("pyetcd", tmp_path / "c", 3)
    try:
        cluster.start()
        m0, m1, m2 = cluster.members
        set_up_users(m0)
        token = token_for(m0, "alice", "apw")
        # Every member learnt the token when it applied the Authenticate entry.
        for member in (m1, m2):
            assert range_error(member, token, b"/app/x") is None
        ok(m1, *ROOT, "user", "revoke-role", "alice", "app")
        # A simple token stands for its user as the auth store is now: refused everywhere.
        # A read that races the revoke's apply is told the auth store moved under it, as
        # etcd's doSerialize tells it (clients retry that); that is not the answer yet.
        for member in (m0, m1, m2):
            assert wait_for(
                f"{member.name} to apply the revoke",
                lambda member=member: settled_error(member, token, b"/app/x"),  # type: ignore[misc]
                10,
            ) == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        assert "permission denied" in refused(m2, *ALICE, "get", "/app/x")
    finally:
        cluster.stop()


def settled_error(member: Member, token: str, key: bytes) -> tuple[grpc.StatusCode, str] | None:
    """``range_error``, but None for the transient stale-revision answer of a racing read."""
    error = range_error(member, token, key)
    if error == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old"):
        return None
    return error


def without_user(member: Member) -> Member:
    """The same server, reached by etcdctl without credentials."""
    return Member(member.flavour, member.workdir / "unused", client_port=member.client_port)


def test_auth_survives_kill_9_and_travels_in_a_snapshot_to_upstream_etcd(
    tmp_path: Path, members: list[Member]
) -> None:
    # Readiness probes (etcdctl endpoint health) need a user once auth is on.
    source = start(members, Member("pyetcd", tmp_path / "source", etcdctl_flags=ROOT))
    set_up_users(source)
    ok(source, *ALICE, "put", "/app/x", "kept")
    source.restart(sig=signal.SIGKILL)
    assert "user name is empty" in refused(without_user(source), "get", "/app/x")
    assert ok(source, *ALICE, "get", "/app/x", "--print-value-only").strip() == "kept"
    snapshot = tmp_path / "auth.db"
    ok(source, "snapshot", "save", str(snapshot))

    # etcdctl's restore into etcd, pyetcdutl's (which rewrites the members) into pyetcd.
    routes: tuple[tuple[Flavour, Path], ...] = (
        ("etcd", cluster_module.ETCDCTL_BIN),
        ("pyetcd", PYETCDUTL_BIN),
    )
    for flavour, tool in routes:
        target = Member(
            flavour, tmp_path / f"restored-{flavour}", name="restored", etcdctl_flags=ROOT
        )
        subprocess.run(
            [
                str(tool),
                "snapshot",
                "restore",
                str(snapshot),
                f"--name={target.name}",
                f"--initial-cluster={target.name}={target.peer_url}",
                f"--initial-cluster-token={target.cluster_token}",
                f"--initial-advertise-peer-urls={target.peer_url}",
                f"--data-dir={target.data_dir}",
            ],
            check=True,
            capture_output=True,
            env=cluster_module.etcdctl_env(),
            timeout=60,
        )
        start(members, target)
        # Auth is on, with the same users, roles and password hashes.
        assert "user name is empty" in refused(without_user(target), "get", "/app/x")
        assert ok(target, *ALICE, "get", "/app/x", "--print-value-only").strip() == "kept"
        assert "permission denied" in refused(target, *ALICE, "put", "/other", "x")
        assert ok(target, "user", "list").split() == ["alice", "root"]
        target.stop()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--auth-token=jwt,sign-method=RS256", "auth: missing key data"),
        ("--auth-token=jwt,sign-method=NONE999", "auth: invalid auth signature method"),
        ("--auth-token=opaque", "auth: invalid auth options"),
    ],
)
def test_an_unusable_auth_token_setting_stops_the_member(
    flag: str, message: str, tmp_path: Path
) -> None:
    member = Member("pyetcd", tmp_path / "m", extra_flags=(flag,))
    member.start()
    try:
        assert member.proc is not None
        proc = member.proc
        code = wait_for("the member to exit", proc.poll, 20)
    finally:
        member.stop()
    assert code != 0
    assert message in member.log_tail()


def gateway(member: Member, path: str, body: dict[str, str], token: str = "") -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{member.host_port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    if token:
        request.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    answer = json.loads(raw)
    answer.pop("header", None)
    return status, answer


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_json_gateway_authenticates_with_the_authorization_header(
    flavour: Flavour, tmp_path: Path, members: list[Member]
) -> None:
    member = start(members, Member(flavour, tmp_path / flavour, etcdctl_flags=ROOT))
    set_up_users(member)
    ok(member, "put", "/app/x", "1")
    status, answer = gateway(member, "/v3/auth/authenticate", {"name": "alice", "password": "apw"})
    assert status == 200 and answer["token"]
    token = answer["token"]
    key = base64.b64encode(b"/app/x").decode()
    status, answer = gateway(member, "/v3/kv/range", {"key": key}, token)
    assert (status, [kv["value"] for kv in answer["kvs"]]) == (
        200,
        [base64.b64encode(b"1").decode()],
    )
    other = base64.b64encode(b"/other").decode()
    assert gateway(member, "/v3/kv/range", {"key": other}, token) == (
        403,
        {
            "error": "etcdserver: permission denied",
            "code": 7,
            "message": "etcdserver: permission denied",
        },
    )
    assert gateway(member, "/v3/kv/range", {"key": key}) == (
        400,
        {
            "error": "etcdserver: user name is empty",
            "code": 3,
            "message": "etcdserver: user name is empty",
        },
    )
    assert gateway(member, "/v3/auth/authenticate", {"name": "alice", "password": "no"})[0] == 400


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_python_client_authenticates_and_again_after_a_restart(
    flavour: Flavour, tmp_path: Path, members: list[Member]
) -> None:
    member = start(members, Member(flavour, tmp_path / flavour, etcdctl_flags=ROOT))

    async def as_alice() -> None:
        async with EtcdClient(
            [member.client_url], credentials=Credentials("alice", "apw")
        ) as client:
            # With auth off, calls go without a token; once it is on, the client authenticates.
            await client.put("/other", "before auth")
            set_up_users(member)
            await client.put("/app/x", "1")
            with pytest.raises(EtcdClientError, match="permission denied"):
                await client.get("/other")
            # A restart forgets every simple token: the client authenticates again.
            member.restart(sig=signal.SIGKILL)
            assert await client.get("/app/x") == b"1"
        async with EtcdClient(
            [member.client_url], credentials=Credentials("alice", "wrong")
        ) as client:
            with pytest.raises(EtcdClientError, match="invalid user ID or password"):
                await client.get("/app/x")
        assert "apw" not in repr(Credentials("alice", "apw"))

    asyncio.run(as_alice())


def test_the_auth_revision_metric_matches_upstream(tmp_path: Path, members: list[Member]) -> None:
    """etcd_debugging_auth_revision: the same auth revision after the same changes."""
    seen = {}
    for flavour in FLAVOURS:
        member = start(members, Member(flavour, tmp_path / flavour, etcdctl_flags=ROOT))
        set_up_users(member)
        ok(member, "role", "add", "another")
        with urllib.request.urlopen(f"http://{member.host_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        values = [
            line.split()[1]
            for line in text.splitlines()
            if line.startswith("etcd_debugging_auth_revision ")
        ]
        assert len(values) == 1, f"{flavour}: no etcd_debugging_auth_revision in /metrics"
        seen[flavour] = float(values[0])
        member.stop()
    assert seen["pyetcd"] == seen["etcd"] > 1


def test_health_with_auth_on_answers_as_upstream(tmp_path: Path, members: list[Member]) -> None:
    """/health carries no user: etcd 3.5 counts the refusal of its probe read (user name is
    empty) as a member that answers, so readiness probes keep passing once auth is on."""
    answers = {}
    for flavour in FLAVOURS:
        member = start(members, Member(flavour, tmp_path / flavour, etcdctl_flags=ROOT))
        set_up_users(member)
        with urllib.request.urlopen(f"http://{member.host_port}/health", timeout=10) as resp:
            answers[flavour] = (resp.status, json.loads(resp.read()))
        member.stop()
    assert answers["pyetcd"] == answers["etcd"]
    assert answers["etcd"][0] == 200 and answers["etcd"][1]["health"] == "true"
