"""The operator's generated certificates (``spec.tls``, source Generated) on real members:
three pyetcd members, and three upstream etcd members beside them, run with exactly the flags the
operator gives them (``components.tls.member_flags``: https on both planes, client certificates
required on both) and the files it would write into its Secrets. The cluster elects and
replicates over peer TLS; the operator's own client (``members.connect_etcd`` with the client
certificate: what its passes, membership changes and backups use) lists the members, reads their
status and streams a snapshot; etcdctl with ``--cacert/--cert/--key`` works, and without the
client certificate is refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import pki, tls
from etcd_operator.members import connect_etcd
from pyetcd.client import EtcdClientError

from tests.integration.cluster import FLAVOURS, Cluster, Flavour, Member, wait_for

CLUSTER = EtcdCluster.model_validate(
    {
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u"},
        "spec": {"version": "3.5.17", "tls": {"client": {}, "peer": {}}},
    }
)
SETTINGS = OperatorSettings()


def write_secrets(root: Path) -> dict[tls.Role, Path]:
    """The generated Secrets' files, as the members (and the operator) see them mounted: one
    directory per Secret, holding tls.crt, tls.key and ca.crt."""
    now = datetime.now(UTC)
    cas: dict[tls.Plane, pki.KeyPair] = {}
    dirs: dict[tls.Role, Path] = {}
    for secret in tls.secrets(CLUSTER):
        request = tls.request(CLUSTER, SETTINGS, secret)
        if secret.role == tls.Role.CA:
            cas[secret.plane] = pki.issue(request, now)
            continue
        ca = cas[secret.plane]
        pair = pki.issue(request, now, ca)
        directory = root / secret.name
        directory.mkdir(parents=True)
        for key, data in ((pki.CERT_KEY, pair.cert), (pki.PRIVATE_KEY_KEY, pair.key)):
            (directory / key).write_bytes(data)
        (directory / pki.CA_KEY).write_bytes(ca.cert)
        dirs[secret.role] = directory
    return dirs


def flags_for(dirs: dict[tls.Role, Path]) -> list[str]:
    """The operator's TLS flags with the mount paths replaced by these directories."""
    mounts = {
        "/etc/etcd/tls/server": dirs[tls.Role.SERVER],
        "/etc/etcd/tls/peer": dirs[tls.Role.PEER],
    }
    out = []
    for flag in tls.member_flags(CLUSTER):
        local = flag
        for mount, directory in mounts.items():
            local = local.replace(mount, str(directory))
        out.append(local)
    return out


def etcdctl_flags(dirs: dict[tls.Role, Path], *, cert: bool = True) -> list[str]:
    client = dirs[tls.Role.CLIENT]
    flags = [f"--cacert={client / pki.CA_KEY}"]
    if cert:
        flags += [f"--cert={client / pki.CERT_KEY}", f"--key={client / pki.PRIVATE_KEY_KEY}"]
    return flags


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_members_on_the_operators_certificates_serve_only_its_clients(
    flavour: Flavour, tmp_path: Path
) -> None:
    dirs = write_secrets(tmp_path / "secrets")
    cluster = Cluster(
        flavour,
        tmp_path / flavour,
        size=3,
        extra_flags=flags_for(dirs),
        client_scheme="https",
        peer_scheme="https",
        etcdctl_flags=etcdctl_flags(dirs),
    )
    try:
        cluster.start()
        first, _, third = cluster.members
        put = first.etcdctl("put", "greeting", "over-operator-tls")
        assert put.returncode == 0, put.stderr
        wait_for(
            "the write on another member, over peer TLS",
            lambda: (
                True
                if third.etcdctl(
                    "get", "greeting", "--print-value-only", "--consistency=s"
                ).stdout.strip()
                == "over-operator-tls"
                else None
            ),
            10,
            third,
        )
        bare = Member(
            flavour,
            tmp_path / "unused",
            client_port=first.client_port,
            client_scheme="https",
            etcdctl_flags=etcdctl_flags(dirs, cert=False),
        )
        refused = bare.etcdctl("get", "greeting", "--dial-timeout=2s", "--command-timeout=3s")
        assert refused.returncode != 0

        client = dirs[tls.Role.CLIENT]
        credentials = tls.credentials(
            {k: (client / k).read_bytes() for k in (pki.CA_KEY, pki.CERT_KEY, pki.PRIVATE_KEY_KEY)}
        )
        assert credentials is not None

        async def as_the_operator() -> tuple[int, int, int]:
            etcd = connect_etcd([m.client_url for m in cluster.members], 5.0, credentials)
            try:
                members = (await etcd.member_list()).members
                assert all(u.startswith("https://") for m in members for u in m.client_urls)
                assert all(u.startswith("https://") for m in members for u in m.peer_urls)
                status = await etcd.status(first.client_url)
                size = 0
                async for chunk in etcd.snapshot(first.client_url):
                    size += len(chunk)
                return len(members), status.db_size, size
            finally:
                await etcd.close()

        members, db_size, snapshot = asyncio.run(as_the_operator())
        assert members == 3
        # The snapshot is the whole backend (plus etcd's trailing checksum).
        assert snapshot >= db_size > 0

        async def without_certificate() -> None:
            etcd = connect_etcd([first.client_url], 3.0)
            try:
                await etcd.member_list()
            finally:
                await etcd.close()

        # The system's roots do not trust the cluster's CA, and the member wants a client
        # certificate anyway: the handshake fails, the call with it.
        with pytest.raises(EtcdClientError) as refused_call:
            asyncio.run(without_certificate())
        assert refused_call.value.unreachable
    finally:
        cluster.stop()
