"""The members' StatefulSet: scheduling, probes, security, environment, volumes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import naming
from etcd_operator.components.statefulset import statefulset

from tests.unit.operator.components.clusters import (
    POD_TEMPLATE_EXTRAS,
    USER_AFFINITY,
    make_cluster,
)

SETTINGS = OperatorSettings()
SSD = {"key": "etcd.pyetcd.io/disk", "operator": "In", "values": ["ssd"]}


def pod_spec(spec: dict[str, Any] | None = None, settings: OperatorSettings = SETTINGS) -> Any:
    return statefulset(make_cluster(spec), settings)["spec"]["template"]["spec"]


def member(spec: dict[str, Any] | None = None) -> Any:
    containers = pod_spec(spec)["containers"]
    assert len(containers) == 1
    return containers[0]


def placement(mode: str, **extra: Any) -> dict[str, Any]:
    return {"storage": {"placement": {"mode": mode, **extra}}}


def test_workload_shape() -> None:
    spec = statefulset(make_cluster({"replicas": 5}), SETTINGS)["spec"]
    assert spec["replicas"] == 5
    assert spec["serviceName"] == "demo-peer"
    assert spec["podManagementPolicy"] == "Parallel"
    # The operator restarts members itself (reconcile/rollout.py).
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_replicas_override_for_stepwise_scaling() -> None:
    sts = statefulset(make_cluster({"replicas": 5}), SETTINGS, replicas=4)
    assert sts["spec"]["replicas"] == 4


# --- scheduling --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Required", "Preferred", "Off"])
def test_required_anti_affinity_across_nodes_in_every_mode(mode: str) -> None:
    anti = pod_spec(placement(mode))["affinity"]["podAntiAffinity"]
    assert anti == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {"matchLabels": naming.selector_labels("demo")},
                "topologyKey": "kubernetes.io/hostname",
            }
        ]
    }


def test_ssd_required() -> None:
    node = pod_spec(placement("Required"))["affinity"]["nodeAffinity"]
    assert node == {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [SSD]}]
        }
    }


def test_ssd_preferred() -> None:
    node = pod_spec(placement("Preferred"))["affinity"]["nodeAffinity"]
    assert node == {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [SSD]}}
        ]
    }


def test_ssd_off() -> None:
    assert "nodeAffinity" not in pod_spec(placement("Off"))["affinity"]


@pytest.mark.parametrize(
    ("node_label", "settings_label", "expected"),
    [
        (None, None, ("etcd.pyetcd.io/disk", "ssd")),
        (None, "disktype=ssd", ("disktype", "ssd")),
        ("etcd.pyetcd.io/disk=ssd", "disktype=ssd", ("disktype", "ssd")),
        ("example.com/storage=nvme", "disktype=ssd", ("example.com/storage", "nvme")),
        ("local-ssd=", None, ("local-ssd", "")),
    ],
)
def test_ssd_label_from_cluster_or_operator_default(
    node_label: str | None, settings_label: str | None, expected: tuple[str, str]
) -> None:
    extra = {} if node_label is None else {"nodeLabel": node_label}
    settings = (
        SETTINGS if settings_label is None else OperatorSettings(ssd_node_label=settings_label)
    )
    node = pod_spec(placement("Required", **extra), settings)["affinity"]["nodeAffinity"]
    terms = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    key, value = expected
    assert terms == [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]


def test_user_affinity_merged_with_required_ssd() -> None:
    user = copy.deepcopy(USER_AFFINITY)
    affinity = pod_spec({"podTemplate": {"affinity": user}, **placement("Required")})["affinity"]
    assert user == USER_AFFINITY, "the cluster's own affinity was mutated"

    # Node selector terms are ORed: SSD is required within every user term, none is dropped.
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {
                    "key": "topology.kubernetes.io/zone",
                    "operator": "In",
                    "values": ["eu-1a", "eu-1b"],
                },
                SSD,
            ]
        },
        {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}],
            "matchExpressions": [SSD],
        },
    ]
    # The user's preferences, pod affinity and pod anti-affinity terms are all kept.
    assert (
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        == USER_AFFINITY["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    )
    assert affinity["podAffinity"] == USER_AFFINITY["podAffinity"]
    anti = affinity["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"] == [
        *USER_AFFINITY["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        {
            "labelSelector": {"matchLabels": naming.selector_labels("demo")},
            "topologyKey": "kubernetes.io/hostname",
        },
    ]
    assert (
        anti["preferredDuringSchedulingIgnoredDuringExecution"]
        == USER_AFFINITY["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    )


def test_user_affinity_merged_with_preferred_ssd() -> None:
    affinity = pod_spec({"podTemplate": {"affinity": USER_AFFINITY}, **placement("Preferred")})[
        "affinity"
    ]
    node = affinity["nodeAffinity"]
    # The user's hard requirement stays as it was; SSD joins the preferences.
    assert (
        node["requiredDuringSchedulingIgnoredDuringExecution"]
        == USER_AFFINITY["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    )
    assert node["preferredDuringSchedulingIgnoredDuringExecution"] == [
        *USER_AFFINITY["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        {"weight": 100, "preference": {"matchExpressions": [SSD]}},
    ]


def test_user_affinity_kept_as_is_when_placement_off() -> None:
    affinity = pod_spec({"podTemplate": {"affinity": USER_AFFINITY}, **placement("Off")})[
        "affinity"
    ]
    assert affinity["nodeAffinity"] == USER_AFFINITY["nodeAffinity"]
    assert affinity["podAffinity"] == USER_AFFINITY["podAffinity"]


def test_user_required_node_affinity_without_terms_gets_the_ssd_term() -> None:
    # nodeSelectorTerms is required (the CRD's schema is Kubernetes'), but may be empty.
    user: dict[str, Any] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
        }
    }
    affinity = pod_spec({"podTemplate": {"affinity": user}, **placement("Required")})["affinity"]
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [SSD]}]
    }


def test_pod_template_extras_reach_the_pod() -> None:
    sts = statefulset(make_cluster({"podTemplate": POD_TEMPLATE_EXTRAS}), SETTINGS)
    template = sts["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == POD_TEMPLATE_EXTRAS["tolerations"]
    assert pod["topologySpreadConstraints"] == POD_TEMPLATE_EXTRAS["topologySpreadConstraints"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["securityContext"]["runAsUser"] == 1000690000
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["containers"][0]["resources"] == POD_TEMPLATE_EXTRAS["resources"]
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert template["metadata"]["labels"]["team"] == "storage"


def test_no_extras_means_no_empty_fields() -> None:
    sts = statefulset(make_cluster(), SETTINGS)
    pod = sts["spec"]["template"]["spec"]
    for field in (
        "nodeSelector",
        "tolerations",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "priorityClassName",
    ):
        assert field not in pod
    assert "resources" not in pod["containers"][0]
    assert "annotations" not in sts["spec"]["template"]["metadata"]


# --- the member container ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["pyetcd", "etcd"])
def test_readiness_but_no_liveness_probe(engine: str) -> None:
    container = member({"engine": engine})
    assert "livenessProbe" not in container
    assert "startupProbe" not in container  # it would restart members just like a liveness probe
    probe = container["readinessProbe"]
    assert probe["httpGet"]["path"] == "/health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[probe["httpGet"]["port"]] == naming.METRICS_PORT == 2381
    assert "--listen-metrics-urls=http://0.0.0.0:2381" in container["args"]


def test_ports() -> None:
    assert member()["ports"] == [
        {"name": "client", "containerPort": 2379, "protocol": "TCP"},
        {"name": "peer", "containerPort": 2380, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 2381, "protocol": "TCP"},
    ]


def test_env_from_downward_api_and_bootstrap_configmap() -> None:
    env = {e["name"]: e["valueFrom"] for e in member()["env"]}
    assert env == {
        "POD_NAME": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        "ETCD_INITIAL_CLUSTER": {
            "configMapKeyRef": {
                "name": "demo-bootstrap",
                "key": "initial-cluster",
                "optional": False,
            }
        },
        "ETCD_INITIAL_CLUSTER_STATE": {
            "configMapKeyRef": {
                "name": "demo-bootstrap",
                "key": "initial-cluster-state",
                "optional": False,
            }
        },
    }


@pytest.mark.parametrize("engine", ["pyetcd", "etcd"])
def test_env_from_configmap_not_duplicated_as_flags(engine: str) -> None:
    container = member({"engine": engine})
    flag_names = {arg.split("=", 1)[0] for arg in container["args"]}
    etcd_env = [e["name"] for e in container["env"] if e["name"].startswith("ETCD_")]
    assert etcd_env == ["ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"]
    for name in etcd_env:
        assert "--" + name.removeprefix("ETCD_").lower().replace("_", "-") not in flag_names
    assert all(not arg.startswith("--initial-cluster=") for arg in container["args"])


@pytest.mark.parametrize(
    ("engine", "image", "command"),
    [
        ("pyetcd", "ghcr.io/pyetcd/pyetcd:3.5.17", ["pyetcd"]),
        ("etcd", "gcr.io/etcd-development/etcd:v3.5.17", ["/usr/local/bin/etcd"]),
    ],
)
def test_image_and_command_per_engine(engine: str, image: str, command: list[str]) -> None:
    container = member({"engine": engine})
    assert container["image"] == image
    assert container["command"] == command
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_security_context_is_restricted() -> None:
    pod = pod_spec()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["runAsUser"] == 65532
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


# What the kubelet applies: a container's field wins over the pod's.
SHARED = ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")


def effective(pod: dict[str, Any]) -> dict[str, Any]:
    container = pod["containers"][0]["securityContext"]
    return {**pod["securityContext"], **{k: v for k, v in container.items() if k in SHARED}}


def test_no_security_context_means_the_operators() -> None:
    assert pod_spec({"podTemplate": {"securityContext": {}}}) == pod_spec()


@pytest.mark.parametrize(
    "user",
    [
        {"runAsUser": 1000690000, "fsGroup": 1000690000},
        {"runAsGroup": 3000, "supplementalGroups": [4000]},
        {"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/etcd.json"}},
        {"runAsUser": 0, "runAsNonRoot": False},
        {"fsGroupChangePolicy": "Always", "seLinuxOptions": {"level": "s0:c123,c456"}},
    ],
)
def test_user_security_context_wins_field_by_field(user: dict[str, Any]) -> None:
    pod = pod_spec({"podTemplate": {"securityContext": user}})
    applied = effective(pod)
    for key, value in user.items():
        assert applied[key] == value, key
    # The operator's fields the user left alone stay, on the pod and on the container.
    defaults = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for key, value in defaults.items():
        if key not in user:
            assert applied[key] == value, key
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert {k for k in SHARED if k in container} == {k for k in SHARED if k not in user}


def test_user_seccomp_profile_replaces_the_operators_whole() -> None:
    profile = {"type": "Localhost", "localhostProfile": "etcd.json"}
    pod = pod_spec({"podTemplate": {"securityContext": {"seccompProfile": profile}}})
    assert pod["securityContext"]["seccompProfile"] == profile
    assert "seccompProfile" not in pod["containers"][0]["securityContext"]


def test_tolerations_are_rendered_without_unset_fields() -> None:
    pod = pod_spec({"podTemplate": {"tolerations": [{"operator": "Exists"}]}})
    assert pod["tolerations"] == [{"operator": "Exists"}]


def test_image_pull_secrets_and_spread_constraints_are_used_as_given() -> None:
    spread = [
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"etcd.pyetcd.io/cluster": "demo"}},
            "matchLabelKeys": ["controller-revision-hash"],
            "minDomains": 3,
        }
    ]
    spec = {
        "podTemplate": {"topologySpreadConstraints": spread, "imagePullSecrets": [{"name": "a"}]}
    }
    pod = pod_spec(spec)
    assert pod["topologySpreadConstraints"] == spread
    assert pod["imagePullSecrets"] == [{"name": "a"}]
    assert spread[0]["maxSkew"] == 2  # not mutated


def test_only_the_data_volume_and_a_scratch_dir_are_writable() -> None:
    pod = pod_spec()
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {naming.DATA_MOUNT: naming.VOLUME_NAME, "/tmp": "tmp"}
    assert naming.DATA_DIR.startswith(naming.DATA_MOUNT + "/")
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


# --- volumes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "claim_spec", "retention"),
    [
        (
            {},
            {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "4Gi"}}},
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        ),
        (
            {"size": "20Gi", "storageClassName": "local-nvme", "volumeRetention": "Delete"},
            {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "20Gi"}},
                "storageClassName": "local-nvme",
            },
            {"whenDeleted": "Delete", "whenScaled": "Retain"},
        ),
    ],
)
def test_volume_claims_and_retention(
    storage: dict[str, Any], claim_spec: dict[str, Any], retention: dict[str, str]
) -> None:
    spec = statefulset(make_cluster({"storage": storage}), SETTINGS)["spec"]
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == naming.VOLUME_NAME
    assert claim["spec"] == claim_spec
    assert spec["persistentVolumeClaimRetentionPolicy"] == retention


@pytest.mark.parametrize("engine", ["pyetcd", "etcd"])
def test_every_member_pod_starts_with_member_init_from_the_operator_image(engine: str) -> None:
    spec = pod_spec({"engine": engine, "version": "3.5.17"})
    (init,) = spec["initContainers"]
    assert init["name"] == "member-init" and init["command"] == ["etcd-member-init"]
    assert init["image"] == SETTINGS.restore_image
    assert init["args"] == [
        "--name=$(POD_NAME)",
        f"--data-dir={naming.DATA_DIR}",
        "--peer-url=http://$(POD_NAME).demo-peer.prod.svc.cluster.local:2380",
        "--endpoints=http://demo-client.prod.svc.cluster.local:2379",
        "--client-port=2379",
    ]
    member_container = spec["containers"][0]
    # The member's identity, its initial cluster (where the peers are asked) and its volume.
    assert init["env"][: len(member_container["env"])] == member_container["env"]
    assert init["volumeMounts"] == member_container["volumeMounts"]
    assert init["securityContext"] == member_container["securityContext"]
    force = init["env"][-1]
    assert force["name"] == "ETCD_OPERATOR_FORCE_NEW_CLUSTER"
    # Optional: the key exists only during a quorum-loss recovery.
    assert force["valueFrom"]["configMapKeyRef"] == {
        "name": "demo-bootstrap",
        "key": "force-new-cluster",
        "optional": True,
    }
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_member_init_gets_roots_credentials_from_the_root_secret_never_literally() -> None:
    for auth, secret in (({}, "demo-root-auth"), ({"rootSecretName": "mine"}, "mine")):
        spec = pod_spec({"version": "3.5.17", "auth": auth})
        (init,) = spec["initContainers"]
        env = {e["name"]: e for e in init["env"]}
        for name, key in (("ETCDCTL_USER", "username"), ("ETCDCTL_PASSWORD", "password")):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": secret,
                "key": key,
                "optional": True,
            }
        # Only member-init asks etcd: the member container does not carry root's password.
        member_env = {e["name"] for e in spec["containers"][0]["env"]}
        assert "ETCDCTL_PASSWORD" not in member_env
    plain = pod_spec({"version": "3.5.17"})
    assert "ETCDCTL_PASSWORD" not in {e["name"] for e in plain["initContainers"][0]["env"]}
