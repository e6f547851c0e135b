"""What the scenarios and the demo read from an EtcdCluster, and the pod they run etcdctl in.

Pure: objects in, answers out, so the operator scenarios and ``make demo`` wait for exactly the
same thing. The client pod uses the upstream etcd image (it carries etcdctl, and any cluster
can pull it); to keep it running, it runs a throw-away etcd on its own loopback.
"""

from __future__ import annotations

import json
from typing import Any

from etcd_operator.components import tls
from etcd_operator.components.naming import LABEL_CLUSTER

from e2e.kube import condition

Json = dict[str, Any]

# The label on every member pod of cluster NAME: ``etcd.pyetcd.io/cluster=NAME``.
MEMBER_LABEL = LABEL_CLUSTER

CLIENT_POD = "etcd-client"
CLIENT_IMAGE = "gcr.io/etcd-development/etcd:v3.5.17"


def available(cluster: Json, replicas: int) -> bool:
    """Available, with ``replicas`` members, all healthy voters (etcd's view: a learner being
    added or replaced counts as not yet there), all pods Ready (``readyReplicas``)."""
    status = cluster.get("status") or {}
    members = status.get("members") or []
    healthy = [m for m in members if m.get("healthy") and not m.get("learner")]
    return (
        condition(cluster, "Available") == "True"
        and status.get("readyReplicas") == replicas
        and len(healthy) == replicas == len(members)
    )


def describe(cluster: Json) -> str:
    """One line for an error message: phase, conditions and members."""
    status = cluster.get("status") or {}
    conditions = {
        c["type"]: f"{c['status']} ({c.get('reason', '')}: {c.get('message', '')})"
        for c in status.get("conditions") or []
    }
    members = [
        f"{m.get('name')}{'' if m.get('healthy') else ' (unhealthy)'}"
        for m in status.get("members") or []
    ]
    return json.dumps(
        {
            "phase": status.get("phase"),
            "readyReplicas": status.get("readyReplicas"),
            "members": members,
            "conditions": conditions,
        }
    )


def running_members(pods: list[Json]) -> list[str]:
    """The names of the Running pods among a cluster's member pods, lowest ordinal first."""

    def ordinal(name: str) -> int:
        suffix = name.rsplit("-", 1)[-1]
        return int(suffix) if suffix.isdigit() else 1 << 30

    names = [
        p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"
    ]
    return sorted(names, key=lambda n: (ordinal(n), n))


def client_endpoint(name: str, namespace: str, *, secure: bool = False) -> str:
    """The etcdctl flag for cluster ``name``'s client Service (https with client TLS)."""
    scheme = "https" if secure else "http"
    return f"--endpoints={scheme}://{name}-client.{namespace}.svc.cluster.local:2379"


# Where a client pod mounts a cluster's client certificate Secret (ca.crt, tls.crt, tls.key).
CLIENT_TLS_DIR = "/tls"


def tls_flags(*, cert: bool = True) -> list[str]:
    """etcdctl's flags for the client certificate mounted at ``CLIENT_TLS_DIR``; without
    ``cert``, only the CA (the server is trusted, the client shows nothing)."""
    flags = [f"--cacert={CLIENT_TLS_DIR}/ca.crt"]
    if cert:
        flags += [f"--cert={CLIENT_TLS_DIR}/tls.crt", f"--key={CLIENT_TLS_DIR}/tls.key"]
    return flags


def member_tls_flags() -> list[str]:
    """etcdctl's flags for the client certificate a member pod of a cluster with client TLS
    mounts (``etcd_operator.components.tls``), for etcdctl run inside a member."""
    return tls.client_flags_at(tls.member_client_dir())


def client_pod(namespace: str, name: str = CLIENT_POD, *, tls_secret: str | None = None) -> Json:
    """A pod to exec etcdctl in (``kubectl exec``, or the process kubelet's exec); with
    ``tls_secret``, that client certificate Secret mounted at ``CLIENT_TLS_DIR``."""
    local = "http://127.0.0.1:2379"
    peer = "http://127.0.0.1:2380"
    volumes: list[Json] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[Json] = [{"name": "scratch", "mountPath": "/scratch"}]
    if tls_secret is not None:
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
        mounts.append({"name": "tls", "mountPath": CLIENT_TLS_DIR, "readOnly": True})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "volumes": volumes,
            "containers": [
                {
                    "name": "etcdctl",
                    "image": CLIENT_IMAGE,
                    "command": [
                        "/usr/local/bin/etcd",
                        "--name=scratch",
                        "--data-dir=/scratch/etcd",
                        f"--listen-client-urls={local}",
                        f"--advertise-client-urls={local}",
                        f"--listen-peer-urls={peer}",
                        f"--initial-advertise-peer-urls={peer}",
                        f"--initial-cluster=scratch={peer}",
                    ],
                    "volumeMounts": mounts,
                }
            ],
        },
    }
