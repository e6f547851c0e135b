"""TLS on the client and peer URLs, pyetcd beside upstream etcd: etcdctl over https, client
certificates required with a trusted CA, plaintext refused on an https URL, peer TLS clusters
that elect, replicate and survive kill -9, certificates rotated without a restart, and files
that cannot be used stopping the member with a message that names them.

Certificates come from ``e2e.pki`` (the ``openssl`` command): one CA, a serving and client
certificate for 127.0.0.1 per member, and a client certificate for etcdctl.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyetcd.client import ClientTLS, EtcdClient, EtcdClientError

from e2e.pki import KeyPair, issue, make_ca
from tests.integration.cluster import FLAVOURS, Cluster, Flavour, Member, binary_for, wait_for
from tests.integration.conftest import start_or_fail
from tools.ports import free_port


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    member: KeyPair
    client: KeyPair
    other_ca: KeyPair


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca(tmp_path / "pki", common_name="etcd-ca")
    member = issue(ca, "member", "member", server=True, hosts=("127.0.0.1", "localhost"))
    client = issue(ca, "client", "root")
    other = make_ca(tmp_path / "other", common_name="someone-else")
    return Pki(ca, member, client, other)


def client_flags(pki: Pki, *, trusted_ca: bool = True) -> list[str]:
    flags = [f"--cert-file={pki.member.cert}", f"--key-file={pki.member.key}"]
    if trusted_ca:
        flags.append(f"--trusted-ca-file={pki.ca.cert}")
    return flags


def etcdctl_tls(pki: Pki, *, client_cert: bool = True) -> list[str]:
    flags = [f"--cacert={pki.ca.cert}"]
    if client_cert:
        flags += [f"--cert={pki.client.cert}", f"--key={pki.client.key}"]
    return flags


def tls_member(
    flavour: Flavour, workdir: Path, pki: Pki, *, trusted_ca: bool = True, client_cert: bool = True
) -> Member:
    return Member(
        flavour,
        workdir,
        extra_flags=client_flags(pki, trusted_ca=trusted_ca),
        client_scheme="https",
        etcdctl_flags=etcdctl_tls(pki, client_cert=client_cert),
    )


def served_certificate(port: int, pki: Pki) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is served (with a client cert)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def plaintext_is_refused(port: int) -> bool:
    """A plain HTTP request on the https port gets no HTTP answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.settimeout(5)
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = conn.recv(1024)
        except (ConnectionResetError, TimeoutError):
            return True
    return not answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_etcdctl_over_tls_with_a_client_certificate(
    flavour: Flavour, pki: Pki, tmp_path: Path
) -> None:
    member = tls_member(flavour, tmp_path / flavour, pki)
    try:
        start_or_fail(member)
        put = member.etcdctl("put", "greeting", "over-tls")
        assert put.returncode == 0, put.stderr
        got = member.etcdctl("get", "greeting", "--print-value-only")
        assert (got.returncode, got.stdout.strip()) == (0, "over-tls"), got.stderr
        # A trusted CA makes the client certificate required (etcd's RequireAndVerify).
        bare = Member(
            flavour,
            tmp_path / "unused",
            client_port=member.client_port,
            client_scheme="https",
            etcdctl_flags=etcdctl_tls(pki, client_cert=False),
        )
        refused = bare.etcdctl("get", "greeting", "--dial-timeout=2s", "--command-timeout=3s")
        assert refused.returncode != 0
        assert plaintext_is_refused(member.client_port)
    finally:
        member.stop()


def test_pyetcd_logs_etcd_s_lifecycle_lines(pki: Pki, tmp_path: Path) -> None:
    """The lines scripts wait for, in etcd's (zap) wording and fields, once it is published."""
    member = tls_member("pyetcd", tmp_path / "pyetcd", pki)
    try:
        start_or_fail(member)
        wanted = (
            "published local member to cluster through raft",
            "ready to serve client requests",
            "serving client traffic securely",
        )

        def logged() -> list[dict[str, object]] | None:
            lines = [
                json.loads(text)
                for text in member.log_path.read_text().splitlines()
                if text.startswith("{")
            ]
            msgs = [line["msg"] for line in lines]
            return lines if all(w in msgs for w in wanted) else None

        lines = wait_for("etcd's lifecycle lines in the log", logged, 10, member)
        msgs = [line["msg"] for line in lines]
        assert msgs.index(wanted[0]) < msgs.index(wanted[1]) < msgs.index(wanted[2])
        secure = lines[msgs.index(wanted[2])]
        assert secure["address"] == f"127.0.0.1:{member.client_port}"
        assert secure["traffic"] == "grpc+http"
    finally:
        member.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_without_a_trusted_ca_no_client_certificate_is_asked_for(
    flavour: Flavour, pki: Pki, tmp_path: Path
) -> None:
    member = tls_member(flavour, tmp_path / flavour, pki, trusted_ca=False, client_cert=False)
    try:
        start_or_fail(member)
        put = member.etcdctl("put", "k", "v")
        assert put.returncode == 0, put.stderr
    finally:
        member.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_rotated_certificate_is_served_without_a_restart(
    flavour: Flavour, pki: Pki, tmp_path: Path
) -> None:
    member = tls_member(flavour, tmp_path / flavour, pki)
    try:
        start_or_fail(member)
        before = served_certificate(member.client_port, pki)
        # The new pair replaces the files in place, as a Secret update or cert-manager does.
        renewed = issue(pki.ca, "renewed", "member", server=True, hosts=("127.0.0.1",))
        pki.member.cert.write_bytes(renewed.cert.read_bytes())
        pki.member.key.write_bytes(renewed.key.read_bytes())
        after = wait_for(
            "the renewed certificate served",
            lambda: der if (der := served_certificate(member.client_port, pki)) != before else None,
            10,
            member,
        )
        assert after == ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
        assert member.etcdctl("put", "after-rotation", "ok").returncode == 0
        assert member.proc is not None and member.proc.poll() is None  # never restarted
    finally:
        member.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_peer_tls_cluster_elects_replicates_and_survives_kill_9(
    flavour: Flavour, pki: Pki, tmp_path: Path
) -> None:
    peer = [
        f"--peer-cert-file={pki.member.cert}",
        f"--peer-key-file={pki.member.key}",
        f"--peer-trusted-ca-file={pki.ca.cert}",
        "--peer-client-cert-auth",
        "--peer-cert-allowed-cn=member",
    ]
    cluster = Cluster(
        flavour,
        tmp_path / flavour,
        size=3,
        extra_flags=[*client_flags(pki), *peer],
        client_scheme="https",
        peer_scheme="https",
        etcdctl_flags=etcdctl_tls(pki),
    )
    try:
        cluster.start()
        first, second, third = cluster.members
        for i in range(20):
            assert first.etcdctl("put", f"k{i}", f"v{i}").returncode == 0
        wait_for(
            "the last write on a follower",
            lambda: (
                True
                if third.etcdctl(
                    "get", "k19", "--print-value-only", "--consistency=s"
                ).stdout.strip()
                == "v19"
                else None
            ),
            10,
            third,
        )
        second.kill()
        # The killed member may have led: the put may meet the election that follows.
        wait_for(
            "a put while a member is down",
            lambda: True if first.etcdctl("put", "while-down", "yes").returncode == 0 else None,
            15,
            first,
        )
        second.restart()
        got = second.etcdctl("get", "while-down", "--print-value-only")
        assert (got.returncode, got.stdout.strip()) == (0, "yes"), got.stderr
    finally:
        cluster.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_peer_whose_certificate_cn_is_not_allowed_is_refused(
    flavour: Flavour, pki: Pki, tmp_path: Path
) -> None:
    peer = [
        f"--peer-cert-file={pki.member.cert}",
        f"--peer-key-file={pki.member.key}",
        f"--peer-trusted-ca-file={pki.ca.cert}",
        "--peer-client-cert-auth",
        "--peer-cert-allowed-cn=someone-else",
    ]
    cluster = Cluster(flavour, tmp_path / flavour, size=3, extra_flags=peer, peer_scheme="https")
    try:
        for member in cluster.members:
            member.start()

        def refused() -> bool | None:
            logs = "".join(m.log_path.read_text(errors="replace") for m in cluster.members)
            return True if "client certificate authentication failed" in logs else None

        wait_for("a member logging the refused peer certificate", refused, 20, *cluster.members)
        # And so no quorum: nothing is served.
        got = cluster.members[0].etcdctl("put", "k", "v", "--command-timeout=2s")
        assert got.returncode != 0
    finally:
        cluster.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_auto_tls_makes_a_self_signed_pair_once_and_peers_use_theirs(
    flavour: Flavour, tmp_path: Path
) -> None:
    cluster = Cluster(
        flavour,
        tmp_path / flavour,
        size=3,
        extra_flags=["--auto-tls", "--peer-auto-tls"],
        client_scheme="https",
        peer_scheme="https",
        etcdctl_flags=["--insecure-transport=false", "--insecure-skip-tls-verify"],
    )
    try:
        cluster.start()
        first = cluster.members[0]
        assert first.etcdctl("put", "k", "auto").returncode == 0
        fixtures = first.data_dir / "fixtures"
        pem = (fixtures / "client" / "cert.pem").read_bytes()
        assert (fixtures / "peer" / "key.pem").is_file()
        first.restart()
        assert (fixtures / "client" / "cert.pem").read_bytes() == pem  # reused, not remade
        got = first.etcdctl("get", "k", "--print-value-only")
        assert (got.returncode, got.stdout.strip()) == (0, "auto"), got.stderr
        assert plaintext_is_refused(first.client_port)
    finally:
        cluster.stop()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_operator_s_client_speaks_tls(flavour: Flavour, pki: Pki, tmp_path: Path) -> None:
    """pyetcd.client (what the operator uses) over https: KV, status, health, the member
    list, the cluster version; an http endpoint to the same port gets nothing."""
    member = tls_member(flavour, tmp_path / flavour, pki)
    tls = ClientTLS.from_files(str(pki.ca.cert), str(pki.client.cert), str(pki.client.key))

    async def scenario() -> None:
        async with EtcdClient([member.client_url], timeout=5.0, tls=tls) as client:
            await client.put("k", "over-tls")
            assert await client.get("k") == b"over-tls"
            status = await client.status(member.client_url)
            assert status.member_id != 0
            assert (await client.health(member.client_url)).healthy
            listed = await client.member_list()
            assert [m.client_urls for m in listed.members] == [(member.client_url,)]
            assert (await client.cluster_version(member.client_url)).startswith("3.")
        async with EtcdClient([f"http://{member.host_port}"], timeout=2.0) as plain:
            with pytest.raises(EtcdClientError):
                await plain.status(f"http://{member.host_port}")

    try:
        start_or_fail(member)
        asyncio.run(scenario())
    finally:
        member.stop()


def run_pyetcd(workdir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    port, peer = free_port(), free_port()
    argv = [
        str(binary_for("pyetcd")),
        f"--data-dir={workdir}",
        f"--listen-client-urls=https://127.0.0.1:{port}",
        f"--advertise-client-urls=https://127.0.0.1:{port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=default=http://127.0.0.1:{peer}",
        *flags,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_certificate_files_that_cannot_be_used_stop_the_member_naming_them(
    pki: Pki, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.crt"
    done = run_pyetcd(tmp_path / "a", f"--cert-file={missing}", f"--key-file={pki.member.key}")
    assert done.returncode != 0 and f"open {missing}: no such file" in done.stderr, done.stderr
    mismatch = run_pyetcd(
        tmp_path / "b", f"--cert-file={pki.member.cert}", f"--key-file={pki.client.key}"
    )
    assert mismatch.returncode != 0, mismatch.stderr
    assert f"private key {pki.client.key} does not match" in mismatch.stderr, mismatch.stderr
    no_key = run_pyetcd(tmp_path / "c", f"--cert-file={pki.member.cert}")
    # etcd's own words (transport.TLSInfo.baseConfig).
    assert no_key.returncode != 0, no_key.stderr
    assert "KeyFile and CertFile must both be present[key: , cert: " in no_key.stderr
    # Nothing was created for a member that never started.
    assert not (tmp_path / "a" / "member").exists()
