"""The demo's backups: its S3 server (moto, run by the demo's supervisor, ``e2e.demo``) made
reachable from the pods, and the example cluster backing itself up there.

``configure`` creates the bucket, the Service ``s3`` that the process kubelet forwards to the
server on the host's loopback (``e2e.kubelet.services``), the credentials Secret, sets the
example's ``spec.backup`` (hourly, keep 5) and asks for one backup at once through the
``etcd.pyetcd.io/backup`` annotation, then waits for it to succeed. ``hints`` are the lines that
show how to take, list and restore backups, by hand and with ``kubectl etcd``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import botocore.exceptions
from etcd_operator.backup import Credentials, StoreSettings, make_client

from e2e.demo import DemoState
from e2e.kube import Json, Kubectl, eventually
from e2e.kubelet.services import HOST_PORT_ANNOTATION

BUCKET = "etcd-backups"
SECRET = "s3-credentials"
SERVICE_PORT = 80
TRIGGER_LABEL = "etcd.pyetcd.io/backup-trigger"


def endpoint(namespace: str) -> str:
    return f"http://s3.{namespace}.svc.cluster.local:{SERVICE_PORT}"


def backup_spec(namespace: str) -> Json:
    return {
        "store": {
            "bucket": BUCKET,
            "endpoint": endpoint(namespace),
            "forcePathStyle": True,
            "credentialsSecret": SECRET,
        },
        "schedule": "@hourly",
        "retention": {"keepLast": 5},
    }


def _bucket(state: DemoState) -> None:
    store = StoreSettings(
        bucket=BUCKET,
        endpoint=state.s3_url,
        force_path_style=True,
        credentials=Credentials(state.s3_access_key, state.s3_secret_key),
    )
    client: Any = make_client(store)
    try:
        client.create_bucket(Bucket=BUCKET)
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def configure(
    kubectl: Kubectl, state: DemoState, namespace: str, cluster: str, timeout: float
) -> str:
    """Back ``cluster`` up to the demo's S3 server and take one backup now; returns its name."""
    if not state.s3_url:
        raise RuntimeError("the demo's supervisor runs no S3 server: `make demo-down`, then again")
    _bucket(state)
    port = state.s3_url.rsplit(":", 1)[1]
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "s3",
                "namespace": namespace,
                "annotations": {HOST_PORT_ANNOTATION: port},
            },
            "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]},
        }
    )
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": namespace},
            "stringData": {
                "accessKeyId": state.s3_access_key,
                "secretAccessKey": state.s3_secret_key,
            },
        }
    )
    patch = json.dumps({"spec": {"backup": backup_spec(namespace)}})
    kubectl.run("patch", "etcdcluster", cluster, f"--namespace={namespace}", "--type=merge",
                "-p", patch)  # fmt: skip
    request = time.strftime("%Y%m%dT%H%M%S")
    kubectl.run("annotate", "etcdcluster", cluster, f"etcd.pyetcd.io/backup={request}",
                "--overwrite", f"--namespace={namespace}")  # fmt: skip

    def succeeded() -> str | None:
        listed: list[Json] = kubectl.json(
            "get", "etcdbackups", f"--namespace={namespace}", "-l", f"{TRIGGER_LABEL}=annotation"
        )["items"]
        done = [
            b["metadata"]["name"]
            for b in sorted(listed, key=lambda b: b["metadata"]["creationTimestamp"])
            if (b.get("status") or {}).get("phase") == "Succeeded"
        ]
        return done[-1] if done else None

    name: str = eventually(
        "the requested backup to succeed", succeeded, timeout=timeout, interval=2
    )
    return name


def hints(namespace: str, cluster: str, backup: str) -> list[str]:
    ns = "" if namespace == "default" else f" -n {namespace}"
    return [
        "# backups (to the demo's S3 server; docs/backup.md): take one now, list them",
        f"kubectl annotate etcdcluster {cluster}{ns} etcd.pyetcd.io/backup=now --overwrite",
        f"kubectl get etcdbackups{ns} -o wide",
        "# a new cluster from a backup (revisions bumped past the old ones, as etcdutl 3.5 does):",
        f"kubectl apply{ns} -f - <<EOF",
        "apiVersion: etcd.pyetcd.io/v1alpha1",
        "kind: EtcdCluster",
        "metadata: {name: restored}",
        f"spec: {{version: 3.5.17, replicas: 3, bootstrap: {{backup: {{name: {backup}}}}}}}",
        "EOF",
        "# the same with the kubectl plugin: a backup waited for, the list, a restore with the "
        "source's spec",
        f"kubectl etcd backup {cluster}{ns} --wait && kubectl etcd backups {cluster}{ns}",
        f"kubectl etcd restore {cluster}{ns} --from {backup} --into restored-copy --dry-run",
        "# continuous backup: every write in S3 within 10 s, and the window a restore can pick",
        f"kubectl patch etcdcluster {cluster}{ns} --type merge "
        """-p '{"spec":{"backup":{"continuous":{"segmentInterval":"10s"}}}}'""",
        f"kubectl get etcdcluster {cluster}{ns} -o jsonpath="
        "'{.status.backup.recoverableFrom} .. {.status.backup.recoverableTo}{\"\\n\"}'",
        "# then a new cluster at a revision (or --to-time) in that window, from the newest "
        "backup before it:",
        f"kubectl etcd restore {cluster}{ns} --to-revision REVISION --into restored-at --dry-run",
    ]
