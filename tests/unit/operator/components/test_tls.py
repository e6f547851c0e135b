"""spec.tls in the members' pods: https URLs and etcd's TLS flags per plane, the Secret
volumes and who mounts them, the bootstrap ConfigMap's peer URLs, and the restore and
member-init containers; a plaintext cluster's pods exactly as before."""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import tls
from etcd_operator.components.bootstrap import (
    KEY_INITIAL_CLUSTER,
    BootstrapState,
    bootstrap_configmap,
)
from etcd_operator.components.children import children
from etcd_operator.components.statefulset import statefulset

from tests.unit.operator.components.clusters import make_cluster

SETTINGS = OperatorSettings()
BOTH: dict[str, Any] = {"tls": {"client": {}, "peer": {}}}
CLIENT_ONLY = {"tls": {"client": {"source": "Generated"}}}
PEER_ONLY: dict[str, Any] = {"tls": {"peer": {}}}
USER_SECRETS = {
    "tls": {
        "client": {"source": "Secret", "serverSecretName": "srv", "clientSecretName": "cli"},
        "peer": {"source": "Secret", "secretName": "peers"},
    }
}
HOST = "$(POD_NAME).demo-peer.prod.svc.cluster.local"


def pod(spec: dict[str, Any]) -> Any:
    return statefulset(make_cluster(spec), SETTINGS)["spec"]["template"]["spec"]


def args(spec: dict[str, Any]) -> list[str]:
    return list(pod(spec)["containers"][0]["args"])


def init(spec: dict[str, Any], name: str = "member-init") -> Any:
    return next(c for c in pod(spec)["initContainers"] if c["name"] == name)


def test_both_planes_serve_https_with_certificates_and_require_client_certificates() -> None:
    flags = args(BOTH)
    assert "--listen-client-urls=https://0.0.0.0:2379" in flags
    assert f"--advertise-client-urls=https://{HOST}:2379" in flags
    assert "--listen-peer-urls=https://0.0.0.0:2380" in flags
    assert f"--initial-advertise-peer-urls=https://{HOST}:2380" in flags
    start = flags.index("--cert-file=/etc/etcd/tls/server/tls.crt")
    assert flags[start : start + 8] == [
        "--cert-file=/etc/etcd/tls/server/tls.crt",
        "--key-file=/etc/etcd/tls/server/tls.key",
        "--trusted-ca-file=/etc/etcd/tls/server/ca.crt",
        "--client-cert-auth=true",
        "--peer-cert-file=/etc/etcd/tls/peer/tls.crt",
        "--peer-key-file=/etc/etcd/tls/peer/tls.key",
        "--peer-trusted-ca-file=/etc/etcd/tls/peer/ca.crt",
        "--peer-client-cert-auth=true",
    ]
    # Probes and scrapers stay on plain http: no client certificate needed for /health.
    assert "--listen-metrics-urls=http://0.0.0.0:2381" in flags


def test_one_plane_alone_leaves_the_other_plaintext() -> None:
    client = args(CLIENT_ONLY)
    assert "--listen-peer-urls=http://0.0.0.0:2380" in client
    assert "--client-cert-auth=true" in client
    assert not [f for f in client if f.startswith("--peer-")]
    peer = args(PEER_ONLY)
    assert "--listen-client-urls=http://0.0.0.0:2379" in peer
    assert "--peer-client-cert-auth=true" in peer
    assert not [f for f in peer if f.startswith(("--cert-file", "--client-cert-auth"))]


def test_members_mount_their_certificates_and_never_a_ca_key() -> None:
    spec = pod(BOTH)
    volumes = {v["name"]: v for v in spec["volumes"] if "secret" in v}
    assert {n: v["secret"]["secretName"] for n, v in volumes.items()} == {
        "tls-server": "demo-server-tls",
        "tls-peer": "demo-peer-tls",
        "tls-client": "demo-client-tls",
    }
    for volume in volumes.values():
        # Whole Secret volumes (no subPath): the kubelet refreshes renewed files in place.
        assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt", "tls.key", "ca.crt"]
        assert volume["secret"]["defaultMode"] == 0o440
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["tls-server"]["mountPath"] == "/etc/etcd/tls/server"
    assert mounts["tls-peer"]["mountPath"] == "/etc/etcd/tls/peer"
    # For etcdctl in a member (kubectl exec), and member-init, which shares the mounts.
    assert mounts["tls-client"]["mountPath"] == "/etc/etcd/tls/client"
    assert all(not m.get("subPath") for m in mounts.values())


def test_member_init_asks_the_members_over_https_with_the_client_certificate() -> None:
    container = init(BOTH)
    assert container["args"][2:] == [
        f"--peer-url=https://{HOST}:2380",
        "--endpoints=https://demo-client.prod.svc.cluster.local:2379",
        "--client-port=2379",
        "--client-scheme=https",
        "--cacert=/etc/etcd/tls/client/ca.crt",
        "--cert=/etc/etcd/tls/client/tls.crt",
        "--key=/etc/etcd/tls/client/tls.key",
    ]
    assert {"name": "tls-client", "mountPath": "/etc/etcd/tls/client", "readOnly": True} in (
        container["volumeMounts"]
    )


def test_user_secrets_are_mounted_by_their_names() -> None:
    spec = pod(USER_SECRETS)
    names = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert names == {"tls-server": "srv", "tls-peer": "peers", "tls-client": "cli"}
    cluster = make_cluster(USER_SECRETS)
    assert [(s.name, s.role, s.generated) for s in tls.secrets(cluster)] == [
        ("srv", tls.Role.SERVER, False),
        ("cli", tls.Role.CLIENT, False),
        ("peers", tls.Role.PEER, False),
    ]


def test_the_bootstrap_configmap_lists_https_peer_urls_with_peer_tls() -> None:
    data = bootstrap_configmap(make_cluster(PEER_ONLY), SETTINGS, BootstrapState.NEW)["data"]
    urls = [item.split("=", 1)[1] for item in data[KEY_INITIAL_CLUSTER].split(",")]
    assert urls and all(u.startswith("https://") and u.endswith(":2380") for u in urls)


def test_a_plaintext_cluster_has_no_tls_anywhere() -> None:
    # The pod template of a cluster without spec.tls is what earlier operator versions
    # rendered: an upgrade of the operator must not roll it.
    manifests = children(make_cluster({}), SETTINGS, BootstrapState.NEW)
    text = repr(manifests)
    for word in ("https", "tls", "--cert", "--cacert", "--client-scheme"):
        assert word not in text, word


def test_certificates_name_every_possible_member_and_both_services() -> None:
    cluster = make_cluster(BOTH)
    names = tls.member_dns_names(cluster, OperatorSettings(cluster_domain="k8s.example"))
    for ordinal in range(9):
        pod_name = f"demo-{ordinal}"
        for form in (
            pod_name,
            f"{pod_name}.demo-peer",
            f"{pod_name}.demo-peer.prod",
            f"{pod_name}.demo-peer.prod.svc",
            f"{pod_name}.demo-peer.prod.svc.k8s.example",
        ):
            assert form in names
    for service in ("demo-client", "demo-peer"):
        assert f"{service}.prod.svc.k8s.example" in names and service in names
    assert "localhost" in names and "demo-9" not in names
    server = tls.request(cluster, SETTINGS, tls.secrets(cluster)[1])
    assert server.server and not server.client and server.ip_addresses == ("127.0.0.1", "::1")
    peer = tls.request(cluster, SETTINGS, tls.secrets(cluster)[4])
    assert peer.server and peer.client
    client = tls.request(cluster, SETTINGS, tls.secrets(cluster)[2])
    assert client.client and not client.server and client.dns_names == ()
