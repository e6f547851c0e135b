"""The TLS of one EtcdCluster (``spec.tls``): which Secrets it uses, what the operator issues into
the ones it generates, and how the members see them (volumes, mounts, etcd's flags). Pure.

Per plane and source (see ``api.tls``):

==========  =========  =====================================================================
plane       source     Secrets (role)
==========  =========  =====================================================================
client      Generated  ``<c>-client-ca`` (CA), ``<c>-server-tls`` (Server), ``<c>-client-tls``
                       (Client)
client      Secret     ``serverSecretName`` (Server), ``clientSecretName`` (Client)
peer        Generated  ``<c>-peer-ca`` (CA), ``<c>-peer-tls`` (Peer)
peer        Secret     ``secretName`` (Peer)
==========  =========  =====================================================================

Every Secret holds ``tls.crt``, ``tls.key`` and ``ca.crt``. The members mount the Server, Peer
and Client Secrets (the CA Secrets, which hold the CA keys, are never mounted anywhere): the
client certificate is what member-init asks the other members for the member list with, and
what ``kubectl exec`` into a member needs for etcdctl; the operator reads it to connect.

A member's certificate names every member the cluster can ever have
(``MAX_REPLICAS`` ordinals, in each form a pod is addressed by: ``c-0``, ``c-0.c-peer``,
``c-0.c-peer.ns``, ``c-0.c-peer.ns.svc``, ``c-0.c-peer.ns.svc.<domain>``), the peer and client
Services in the same forms, and localhost: so scaling never needs a new certificate.

Certificates are mounted from Secret volumes (not ``subPath``), so the kubelet rewrites the files
when the operator renews a Secret, and etcd and pyetcd load the new files on the next handshake:
renewal restarts no member.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.tls import CertificateSource, ClientTLSSpec, PeerTLSSpec
from etcd_operator.api.v1alpha1 import MAX_REPLICAS, EtcdCluster
from etcd_operator.components import naming
from etcd_operator.components.owner import object_meta
from etcd_operator.components.pki import (
    CA_KEY,
    CERT_KEY,
    PRIVATE_KEY_KEY,
    CertificateRequest,
    KeyPair,
)

Json = dict[str, Any]

TLS_ROOT = "/etc/etcd/tls"
# Read-only for the owner and the group: the members run as a non-root user whose fsGroup the
# kubelet gives the volume.
SECRET_MODE = 0o440
CLIENT_CN = "etcd-operator"


class Plane(StrEnum):
    CLIENT = "client"
    PEER = "peer"


class Role(StrEnum):
    CA = "CA"
    SERVER = "Server"
    PEER = "Peer"
    CLIENT = "Client"


@dataclass(frozen=True)
class TLSSecret:
    """One Secret of a cluster's TLS: its name, plane and role, and whether the operator
    generates it (``generated``) or the user provides it."""

    name: str
    plane: Plane
    role: Role
    generated: bool


@dataclass(frozen=True)
class ClientCredentials:
    """What a client presents and trusts (PEM): the CA of the members' serving certificate,
    and the client certificate and key. Not a repr: it holds a private key."""

    ca: bytes
    cert: bytes
    key: bytes

    def __repr__(self) -> str:
        return "ClientCredentials(...)"


def client_tls(cluster: EtcdCluster) -> ClientTLSSpec | None:
    tls = cluster.spec.tls
    return tls.client if tls is not None else None


def peer_tls(cluster: EtcdCluster) -> PeerTLSSpec | None:
    tls = cluster.spec.tls
    return tls.peer if tls is not None else None


def client_secure(cluster: EtcdCluster) -> bool:
    """Members serve https on the client port."""
    return client_tls(cluster) is not None


def peer_secure(cluster: EtcdCluster) -> bool:
    """Members talk https to each other."""
    return peer_tls(cluster) is not None


def secrets(cluster: EtcdCluster) -> list[TLSSecret]:
    """The cluster's TLS Secrets, CAs first (what the others are issued from)."""
    name = cluster.name
    out: list[TLSSecret] = []
    client, peer = client_tls(cluster), peer_tls(cluster)
    if client is not None:
        if client.source == CertificateSource.SECRET:
            assert client.serverSecretName is not None and client.clientSecretName is not None
            out += [
                TLSSecret(client.serverSecretName, Plane.CLIENT, Role.SERVER, False),
                TLSSecret(client.clientSecretName, Plane.CLIENT, Role.CLIENT, False),
            ]
        else:
            out += [
                TLSSecret(
                    naming.tls_secret_name(name, naming.TLS_CLIENT_CA), Plane.CLIENT, Role.CA, True
                ),
                TLSSecret(
                    naming.tls_secret_name(name, naming.TLS_SERVER), Plane.CLIENT, Role.SERVER, True
                ),
                TLSSecret(
                    naming.tls_secret_name(name, naming.TLS_CLIENT), Plane.CLIENT, Role.CLIENT, True
                ),
            ]
    if peer is not None:
        if peer.source == CertificateSource.SECRET:
            assert peer.secretName is not None
            out.append(TLSSecret(peer.secretName, Plane.PEER, Role.PEER, False))
        else:
            out += [
                TLSSecret(
                    naming.tls_secret_name(name, naming.TLS_PEER_CA), Plane.PEER, Role.CA, True
                ),
                TLSSecret(
                    naming.tls_secret_name(name, naming.TLS_PEER), Plane.PEER, Role.PEER, True
                ),
            ]
    return out


def secret_for(cluster: EtcdCluster, plane: Plane, role: Role) -> TLSSecret | None:
    for secret in secrets(cluster):
        if secret.plane == plane and secret.role == role:
            return secret
    return None


def member_dns_names(cluster: EtcdCluster, settings: OperatorSettings) -> tuple[str, ...]:
    """Every name a member or the cluster's Services are reached by (see the module doc)."""
    name, ns, domain = cluster.name, cluster.namespace, settings.cluster_domain
    names: list[str] = []

    def forms(host: str, parent: str) -> list[str]:
        # How Kubernetes DNS (and the pods' search path) lets a client write the name.
        return [host, f"{host}.{parent}", f"{host}.{parent}.svc", f"{host}.{parent}.svc.{domain}"]

    peer = naming.peer_service_name(name)
    for ordinal in range(MAX_REPLICAS):
        pod = naming.member_name(name, ordinal)
        names += [pod, *(f"{pod}.{n}" for n in forms(peer, ns))]
    names += forms(peer, ns)
    names += forms(naming.client_service_name(name), ns)
    names.append("localhost")
    return tuple(names)


LOOPBACK = ("127.0.0.1", "::1")


def validity(cluster: EtcdCluster) -> timedelta:
    tls = cluster.spec.tls
    assert tls is not None
    return timedelta(hours=tls.certificateValidityHours)


def request(
    cluster: EtcdCluster, settings: OperatorSettings, secret: TLSSecret
) -> CertificateRequest:
    """What to issue into a generated ``secret``."""
    match secret.role:
        case Role.CA:
            return CertificateRequest(
                f"{cluster.namespace}/{cluster.name} etcd {secret.plane} CA",
                ca=True,
                validity=timedelta(days=3650),
            )
        case Role.SERVER:
            return CertificateRequest(
                f"{cluster.name}-server",
                dns_names=member_dns_names(cluster, settings),
                ip_addresses=LOOPBACK,
                server=True,
                validity=validity(cluster),
            )
        case Role.PEER:
            # A member dials its peers as a client and answers them as a server.
            return CertificateRequest(
                f"{cluster.name}-peer",
                dns_names=member_dns_names(cluster, settings),
                ip_addresses=LOOPBACK,
                server=True,
                client=True,
                validity=validity(cluster),
            )
        case Role.CLIENT:
            return CertificateRequest(CLIENT_CN, client=True, validity=validity(cluster))
    raise ValueError(secret.role)


def secret_manifest(cluster: EtcdCluster, secret: TLSSecret) -> Json:
    """A generated Secret (kubernetes.io/tls), all but its data (``with_keys``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(cluster, secret.name, naming.COMPONENT_TLS),
        "type": "kubernetes.io/tls",
    }


def with_keys(manifest: Json, pair: KeyPair, ca: bytes) -> Json:
    """``manifest`` holding ``pair`` and the CA certificate ``ca``."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    data = {CERT_KEY: b64(pair.cert), PRIVATE_KEY_KEY: b64(pair.key), CA_KEY: b64(ca)}
    return {**manifest, "data": data}


def secret_data(secret: Json | None) -> dict[str, bytes]:
    """A Secret's data, decoded (empty for an absent Secret; a value that is not base64 is left
    out, and the check of the Secret then says it is missing)."""
    out: dict[str, bytes] = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True)
        except ValueError:
            continue
    return out


def credentials(data: dict[str, bytes]) -> ClientCredentials | None:
    """The client credentials in a Client Secret's data, if it has all three keys."""
    ca, cert, key = data.get(CA_KEY), data.get(CERT_KEY), data.get(PRIVATE_KEY_KEY)
    if not (ca and cert and key):
        return None
    return ClientCredentials(ca, cert, key)


# -- the members' side ----------------------------------------------------------------------
SERVER_VOLUME = "tls-server"
PEER_VOLUME = "tls-peer"
CLIENT_VOLUME = "tls-client"


def _dir(volume: str) -> str:
    return f"{TLS_ROOT}/{volume.removeprefix('tls-')}"


def _volume(volume: str, secret: str) -> Json:
    items = [{"key": k, "path": k} for k in (CERT_KEY, PRIVATE_KEY_KEY, CA_KEY)]
    return {
        "name": volume,
        "secret": {"secretName": secret, "items": items, "defaultMode": SECRET_MODE},
    }


def volumes(cluster: EtcdCluster) -> list[Json]:
    """The member pod's Secret volumes: serving, peer and client certificates (never a CA)."""
    out = []
    for volume, plane, role in (
        (SERVER_VOLUME, Plane.CLIENT, Role.SERVER),
        (PEER_VOLUME, Plane.PEER, Role.PEER),
        (CLIENT_VOLUME, Plane.CLIENT, Role.CLIENT),
    ):
        secret = secret_for(cluster, plane, role)
        if secret is not None:
            out.append(_volume(volume, secret.name))
    return out


def member_mounts(cluster: EtcdCluster) -> list[Json]:
    """The etcd container's mounts: its serving and peer certificates, and the client
    certificate, so that ``kubectl exec <member> -- etcdctl`` can reach a cluster that wants
    one (``client_flags``): a member holds the keys of both planes already, so it is trusted
    with the client's too. The init containers share these mounts."""
    out = []
    if client_secure(cluster):
        out.append({"name": SERVER_VOLUME, "mountPath": _dir(SERVER_VOLUME), "readOnly": True})
    if peer_secure(cluster):
        out.append({"name": PEER_VOLUME, "mountPath": _dir(PEER_VOLUME), "readOnly": True})
    if client_secure(cluster):
        out.append({"name": CLIENT_VOLUME, "mountPath": _dir(CLIENT_VOLUME), "readOnly": True})
    return out


def member_flags(cluster: EtcdCluster) -> list[str]:
    """etcd's TLS flags: certificates, and a client certificate required on each TLS plane."""
    flags: list[str] = []
    if client_secure(cluster):
        server = _dir(SERVER_VOLUME)
        flags += [
            f"--cert-file={server}/{CERT_KEY}",
            f"--key-file={server}/{PRIVATE_KEY_KEY}",
            f"--trusted-ca-file={server}/{CA_KEY}",
            "--client-cert-auth=true",
        ]
    if peer_secure(cluster):
        peer = _dir(PEER_VOLUME)
        flags += [
            f"--peer-cert-file={peer}/{CERT_KEY}",
            f"--peer-key-file={peer}/{PRIVATE_KEY_KEY}",
            f"--peer-trusted-ca-file={peer}/{CA_KEY}",
            "--peer-client-cert-auth=true",
        ]
    return flags


def member_client_dir() -> str:
    """Where a member pod mounts the client certificate."""
    return _dir(CLIENT_VOLUME)


def client_flags_at(directory: str) -> list[str]:
    """etcdctl's flags for the client certificate files in ``directory``."""
    return [
        f"--cacert={directory}/{CA_KEY}",
        f"--cert={directory}/{CERT_KEY}",
        f"--key={directory}/{PRIVATE_KEY_KEY}",
    ]


def client_flags(cluster: EtcdCluster) -> list[str]:
    """etcdctl's names for the client certificate files (member-init takes the same)."""
    if not client_secure(cluster):
        return []
    return client_flags_at(member_client_dir())


def renewal_due(not_before: datetime | None, not_after: datetime | None, now: datetime) -> bool:
    """Two thirds of the lifetime are gone (or the dates are unknown)."""
    if not_before is None or not_after is None:
        return True
    return now >= not_before + (not_after - not_before) * 2 / 3
