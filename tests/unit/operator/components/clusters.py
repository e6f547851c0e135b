"""Example-like EtcdClusters for the component tests, and small manifest helpers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from etcd_operator.api.v1alpha1 import EtcdCluster

NAME = "demo"
NAMESPACE = "prod"
UID = "0f3c8e2a-5b7d-4c1e-9a6f-2d8b4e7c1a90"

USER_AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": "topology.kubernetes.io/zone",
                            "operator": "In",
                            "values": ["eu-1a", "eu-1b"],
                        }
                    ]
                },
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]},
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 10,
                "preference": {
                    "matchExpressions": [{"key": "pool", "operator": "In", "values": ["etcd"]}]
                },
            }
        ],
    },
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {"matchLabels": {"app": "kafka"}},
                "topologyKey": "kubernetes.io/hostname",
            }
        ],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "etcd"}},
                    "topologyKey": "topology.kubernetes.io/zone",
                },
            }
        ],
    },
    "podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 1,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app": "api"}},
                    "topologyKey": "topology.kubernetes.io/zone",
                },
            }
        ]
    },
}

POD_TEMPLATE_EXTRAS: dict[str, Any] = {
    "resources": {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    },
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "etcd", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ],
    "affinity": USER_AFFINITY,
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"etcd.pyetcd.io/cluster": "demo"}},
        }
    ],
    "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
    # An OpenShift-like namespace range: the uid and fsGroup are the namespace's.
    "securityContext": {
        "runAsUser": 1000690000,
        "fsGroup": 1000690000,
        "supplementalGroups": [1000690000],
    },
    "priorityClassName": "system-cluster-critical",
    "labels": {"team": "storage", "app.kubernetes.io/instance": "hijack"},
    "annotations": {"prometheus.io/scrape": "true"},
}


def make_cluster(
    spec: dict[str, Any] | None = None,
    *,
    name: str = NAME,
    namespace: str = NAMESPACE,
    uid: str | None = UID,
) -> EtcdCluster:
    """An EtcdCluster as the API server would hand it over (metadata with a uid)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 1}
    if uid is not None:
        metadata["uid"] = uid
    return EtcdCluster.model_validate(
        {"metadata": metadata, "spec": {"version": "3.5.17", **(spec or {})}}
    )


def example_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, spec): 1/3/5 members x engines x placement modes x podTemplate extras x class."""
    for replicas, engine, mode, extras, storage_class in itertools.product(
        (1, 3, 5),
        ("pyetcd", "etcd"),
        ("Required", "Preferred", "Off"),
        (False, True),
        (None, "ssd"),
    ):
        storage: dict[str, Any] = {"size": "8Gi", "placement": {"mode": mode}}
        if storage_class is not None:
            storage["storageClassName"] = storage_class
            storage["volumeRetention"] = "Delete"
        spec: dict[str, Any] = {"replicas": replicas, "engine": engine, "storage": storage}
        if extras:
            spec["podTemplate"] = POD_TEMPLATE_EXTRAS
            spec["etcd"] = {
                "heartbeatIntervalMs": 200,
                "electionTimeoutMs": 2000,
                "quotaBackendBytes": 4 * 1024**3,
                "autoCompaction": {"mode": "revision", "retention": "10000"},
                "snapshotCount": 50000,
            }
        ident = f"{replicas}-{engine}-{mode}-{'extras' if extras else 'plain'}-{storage_class}"
        yield ident, spec


def by_kind(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an equality-based label selector selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())
