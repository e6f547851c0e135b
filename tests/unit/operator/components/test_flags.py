"""The member's image, command and etcd flags, for both engines and the spec.etcd options."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import flags, naming
from pyetcd.cli import parse_args

from tests.unit.operator.components.clusters import make_cluster

SETTINGS = OperatorSettings()

# The flags every member gets whatever the options, for cluster "demo" in namespace "prod".
BASE = [
    "--name=$(POD_NAME)",
    "--data-dir=/var/lib/etcd/data",
    "--listen-client-urls=http://0.0.0.0:2379",
    "--advertise-client-urls=http://$(POD_NAME).demo-peer.prod.svc.cluster.local:2379",
    "--listen-peer-urls=http://0.0.0.0:2380",
    "--initial-advertise-peer-urls=http://$(POD_NAME).demo-peer.prod.svc.cluster.local:2380",
    "--initial-cluster-token=prod-demo",
    "--listen-metrics-urls=http://0.0.0.0:2381",
]


@pytest.mark.parametrize("engine", ["pyetcd", "etcd"])
@pytest.mark.parametrize(
    ("options", "expected_tail"),
    [
        pytest.param(
            None,
            [
                "--heartbeat-interval=100",
                "--election-timeout=1000",
                "--pre-vote=true",
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=1h",
            ],
            id="defaults",
        ),
        pytest.param(
            {"heartbeatIntervalMs": 250, "electionTimeoutMs": 2500},
            [
                "--heartbeat-interval=250",
                "--election-timeout=2500",
                "--pre-vote=true",
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=1h",
            ],
            id="timings",
        ),
        pytest.param(
            {"autoCompaction": None},
            ["--heartbeat-interval=100", "--election-timeout=1000", "--pre-vote=true"],
            id="no-auto-compaction",
        ),
        pytest.param(
            {"autoCompaction": {"mode": "revision", "retention": "1000"}},
            [
                "--heartbeat-interval=100",
                "--election-timeout=1000",
                "--pre-vote=true",
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
            ],
            id="revision-compaction",
        ),
        pytest.param(
            {"quotaBackendBytes": 8589934592, "snapshotCount": 10000, "autoCompaction": None},
            [
                "--heartbeat-interval=100",
                "--election-timeout=1000",
                "--pre-vote=true",
                "--quota-backend-bytes=8589934592",
                "--snapshot-count=10000",
            ],
            id="quota-and-snapshots",
        ),
        pytest.param(
            {
                "heartbeatIntervalMs": 50,
                "electionTimeoutMs": 500,
                "quotaBackendBytes": 0,
                "autoCompaction": {"mode": "periodic", "retention": "30m"},
                "snapshotCount": 1,
            },
            [
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--pre-vote=true",
                "--quota-backend-bytes=0",
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=30m",
                "--snapshot-count=1",
            ],
            id="everything",
        ),
    ],
)
def test_args(engine: str, options: dict[str, Any] | None, expected_tail: list[str]) -> None:
    spec: dict[str, Any] = {"engine": engine}
    if options is not None:
        spec["etcd"] = options
    assert flags.args(make_cluster(spec), SETTINGS) == BASE + expected_tail


@pytest.mark.parametrize(
    ("engine", "version", "settings", "image", "command"),
    [
        ("pyetcd", "3.5.17", SETTINGS, "ghcr.io/pyetcd/pyetcd:3.5.17", ["pyetcd"]),
        ("pyetcd", "v3.5.17", SETTINGS, "ghcr.io/pyetcd/pyetcd:3.5.17", ["pyetcd"]),
        (
            "etcd",
            "3.5.17",
            SETTINGS,
            "gcr.io/etcd-development/etcd:v3.5.17",
            ["/usr/local/bin/etcd"],
        ),
        (
            "etcd",
            "v3.6.4",
            SETTINGS,
            "gcr.io/etcd-development/etcd:v3.6.4",
            ["/usr/local/bin/etcd"],
        ),
        (
            "etcd",
            "3.5.17",
            OperatorSettings(etcd_image="quay.io/coreos/etcd"),
            "quay.io/coreos/etcd:v3.5.17",
            ["/usr/local/bin/etcd"],
        ),
        (
            "pyetcd",
            "0.1.0-rc.1",
            OperatorSettings(pyetcd_image="registry.local/pyetcd"),
            "registry.local/pyetcd:0.1.0-rc.1",
            ["pyetcd"],
        ),
    ],
)
def test_image_and_command(
    engine: str, version: str, settings: OperatorSettings, image: str, command: list[str]
) -> None:
    cluster = make_cluster({"engine": engine, "version": version})
    assert flags.image(cluster, settings) == image
    assert flags.command(cluster) == command


def test_urls_follow_cluster_domain_namespace_and_name() -> None:
    cluster = make_cluster(name="events", namespace="kube-system")
    args = flags.args(cluster, OperatorSettings(cluster_domain="corp.internal"))
    assert (
        "--advertise-client-urls=http://$(POD_NAME).events-peer.kube-system.svc.corp.internal:2379"
        in args
    )
    assert (
        "--initial-advertise-peer-urls="
        "http://$(POD_NAME).events-peer.kube-system.svc.corp.internal:2380"
    ) in args
    assert "--initial-cluster-token=kube-system-events" in args


@pytest.mark.parametrize("engine", ["pyetcd", "etcd"])
def test_bootstrap_settings_are_never_flags(engine: str) -> None:
    # etcd refuses a flag and its ETCD_* variable together; these two come from the ConfigMap.
    args = flags.args(make_cluster({"engine": engine}), SETTINGS)
    names = [arg.split("=", 1)[0] for arg in args]
    assert "--initial-cluster" not in names
    assert "--initial-cluster-state" not in names
    for variable in (flags.ENV_INITIAL_CLUSTER, flags.ENV_INITIAL_CLUSTER_STATE):
        assert "--" + variable.removeprefix("ETCD_").lower().replace("_", "-") not in names
    assert len(names) == len(set(names)), "a flag given twice"


@pytest.mark.parametrize("state", ["new", "existing"])
def test_pyetcd_accepts_the_member_command_line(state: str) -> None:
    """The real pyetcd parser, given a member's args (as the kubelet expands them) and the
    environment from the bootstrap ConfigMap: accepted, no shadowing warning, same config."""
    cluster = make_cluster(
        {"replicas": 3, "etcd": {"quotaBackendBytes": 1 << 30, "snapshotCount": 5000}}
    )
    member = naming.member_name(cluster.name, 1)
    argv = [arg.replace(naming.POD_NAME_REF, member) for arg in flags.args(cluster, SETTINGS)]
    environ = {
        "POD_NAME": member,
        "POD_NAMESPACE": cluster.namespace,
        flags.ENV_INITIAL_CLUSTER: naming.initial_cluster(cluster.name, cluster.namespace, 3),
        flags.ENV_INITIAL_CLUSTER_STATE: state,
    }
    warnings: list[str] = []
    config = parse_args(argv, environ, warn=warnings.append)
    assert warnings == []
    assert config.name == member
    assert config.data_dir == naming.DATA_DIR
    assert config.initial_cluster_state == state
    assert config.initial_cluster_token == "prod-demo"
    assert sorted(config.initial_cluster) == ["demo-0", "demo-1", "demo-2"]
    # The member's advertised peer URL is its own entry in the initial cluster, as etcd checks.
    assert config.initial_advertise_peer_urls == config.initial_cluster[member]
    assert [str(u) for u in config.advertise_client_urls] == [
        naming.client_url(cluster.name, cluster.namespace, 1)
    ]
    assert config.quota_backend_bytes == 1 << 30
    assert config.snapshot_count == 5000
