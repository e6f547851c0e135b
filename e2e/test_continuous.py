"""Continuous backup and point-in-time restore, end to end: a cluster with
``spec.backup.continuous`` on the built control plane, its writes recorded by the operator into
the S3 server of the backup scenarios while a writer runs, and new clusters restored from a full
backup plus the recorded events with ``spec.bootstrap.backup.pointInTime``.

Checked, in the order a user meets them:

- the recovery point under load: a probe write made while a writer runs is in S3 within the
  segment interval plus an upload (measured and printed with -s);
- a restore to a revision in the middle of the history serves exactly the keys, values and
  versions that a read at that revision showed before the source was compacted;
- a restore to a time (just before "the wrong delete") serves the key space before it;
- continuous backup turned off, writes compacted away, then turned on again: the chain is
  reported broken (status and a Warning event) and a new full backup starts a new chain;
- the cluster deleted and created again under its name with ``pointInTime`` alone comes back
  from the newest backup before the point.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from e2e import test_backups
from e2e.chart import OperatorRelease
from e2e.etcdclusters import CLIENT_POD, client_endpoint
from e2e.kube import Json, Kubectl, PodExec, eventually
from e2e.test_backups import (
    CREDENTIALS,
    S3,
    annotate,
    credentials_secret,
    dev_cluster,
    etcdctl_json,
    events_of,
    phase,
    store_of,
    triggered,
)
from e2e.test_operator import start_client, wait_available

pytestmark = pytest.mark.any_cluster

# The S3 server of the backup scenarios, for this module too (a module-scoped fixture).
s3 = test_backups.s3

SOURCE = "pitr"
INTERVAL_SECONDS = 2
# A chain's segment key: <backup key>.continuous/<after>-<upto>-<start ms>-<end ms>.
SEGMENT = re.compile(r"\.continuous/(\d{19})-(\d{19})-(\d{13})-(\d{13})$")


def sh(pod_exec: PodExec, namespace: str, script: str, timeout: float = 120) -> None:
    got = pod_exec.exec(namespace, CLIENT_POD, ["sh", "-c", script], timeout=timeout)
    assert got.code == 0, (script, got)


def etcdctl(cluster: str, namespace: str) -> str:
    return f"etcdctl {client_endpoint(cluster, namespace)}"


def revision(pod_exec: PodExec, namespace: str, cluster: str) -> int:
    found = etcdctl_json(pod_exec, namespace, cluster, "get", "/")
    assert found is not None, f"etcdctl get on {cluster} failed"
    return int(found["header"]["revision"])


def key_space(
    pod_exec: PodExec, namespace: str, cluster: str, at: int | None = None
) -> dict[str, tuple[str, int]] | None:
    """Every key under /app/ with its value and version (at a revision when given)."""
    rev = [f"--rev={at}"] if at is not None else []
    found = etcdctl_json(pod_exec, namespace, cluster, "get", "/app/", "--prefix", *rev)
    if found is None:
        return None
    return {
        base64.b64decode(kv["key"]).decode(): (
            base64.b64decode(kv.get("value", "")).decode(),
            int(kv.get("version", 0)),
        )
        for kv in found.get("kvs") or []
    }


def recorded_upto(s3: S3, bucket: str, backup_key: str) -> int:
    """How far the chain of ``backup_key`` reaches in S3, from the listing alone."""
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{backup_key}.continuous/")
    ends = [
        int(m.group(2)) for o in listed.get("Contents") or [] if (m := SEGMENT.search(o["Key"]))
    ]
    return max(ends, default=0)


def continuous_status(kubectl: Kubectl, namespace: str) -> Json:
    status = kubectl.get("etcdcluster", SOURCE, namespace).get("status") or {}
    found: Json = (status.get("backup") or {}).get("continuous") or {}
    return found


def writer(pod_exec: PodExec, namespace: str, stop: threading.Event) -> threading.Thread:
    """Puts under /load/ from the client pod until ``stop`` is set (each batch ~2 s)."""
    put = f"{etcdctl(SOURCE, namespace)} put"

    def run() -> None:
        n = 0
        while not stop.is_set():
            batch = "; ".join(f"{put} /load/k{(n + i) % 20} v{n + i} >/dev/null" for i in range(10))
            pod_exec.exec(namespace, CLIENT_POD, ["sh", "-c", batch], timeout=60)
            n += 10

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def restored_cluster(namespace: str, name: str, backup: str, point: Json) -> Json:
    bootstrap = {"backup": {"name": backup, "pointInTime": point}}
    return dev_cluster(namespace, name, bootstrap=bootstrap)


@pytest.mark.one_storage
@pytest.mark.timeout(720)
def test_continuous_backup_restores_to_a_revision_and_a_time_and_reports_a_broken_chain(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    start_client(kubectl, namespace)
    continuous = {"segmentInterval": f"{INTERVAL_SECONDS}s"}
    backup_spec = {"store": store_of(s3, bucket), "continuous": continuous}
    kubectl.apply(dev_cluster(namespace, SOURCE, backup=backup_spec))
    wait_available(kubectl, namespace, SOURCE, 1)
    client = etcdctl(SOURCE, namespace)
    sh(pod_exec, namespace, "; ".join(f"{client} put /app/base{i} b{i}" for i in range(5)))

    # The full backup the chain extends.
    annotate(kubectl, namespace, SOURCE, "full")

    def full_backup() -> Json | None:
        asked = triggered(kubectl, namespace, SOURCE, "annotation")
        return asked[0] if asked and phase(asked[0]) == "Succeeded" else None

    full = eventually("the full backup to succeed", full_backup, timeout=120, interval=2)
    backup_name = full["metadata"]["name"]
    backup_key = full["status"]["location"].removeprefix(f"s3://{bucket}/")
    eventually(
        "status.backup.continuous to name the full backup",
        lambda: continuous_status(kubectl, namespace).get("backup") == backup_name,
        timeout=150,
        interval=2,
    )

    # Recovery point under load: probe writes while a writer runs.
    stop = threading.Event()
    load = writer(pod_exec, namespace, stop)
    lags: list[float] = []
    try:
        for i in range(3):
            sh(pod_exec, namespace, f"{client} put /app/probe{i} p{i} >/dev/null")
            acked = time.monotonic()
            probe_rev = revision(pod_exec, namespace, SOURCE)  # at or after the probe's

            def in_s3(r: int = probe_rev) -> bool:
                return recorded_upto(s3, bucket, backup_key) >= r

            eventually(f"probe {i} in S3", in_s3, timeout=60, interval=0.2)
            lags.append(time.monotonic() - acked)
    finally:
        stop.set()
        load.join(timeout=90)
    print(f"recovery point under load: worst {max(lags):.2f} s of {lags}, interval 2 s")
    assert max(lags) <= INTERVAL_SECONDS + 8, lags

    # A history: puts, overwrites, deletes; a read at the middle revision before compaction.
    sh(pod_exec, namespace, "; ".join(f"{client} put /app/k{i} v{i}" for i in range(20)))
    middle = revision(pod_exec, namespace, SOURCE)
    sh(pod_exec, namespace, "; ".join(
        [f"{client} put /app/k{i} w{i}" for i in range(0, 20, 2)]
        + [f"{client} del /app/k{i}" for i in range(1, 20, 4)]
    ))  # fmt: skip
    before_delete = revision(pod_exec, namespace, SOURCE)
    at_middle = key_space(pod_exec, namespace, SOURCE, middle)
    before = key_space(pod_exec, namespace, SOURCE, before_delete)
    assert at_middle and before and at_middle != before
    eventually(
        "the history in S3",
        lambda: recorded_upto(s3, bucket, backup_key) >= before_delete,
        timeout=60,
        interval=0.2,
    )
    # Everything up to here had reached the recorder: this moment is "just before".
    just_before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sh(pod_exec, namespace, f"{client} del /app/ --prefix")  # the wrong delete
    deleted = revision(pod_exec, namespace, SOURCE)
    eventually(
        "the delete in S3",
        lambda: recorded_upto(s3, bucket, backup_key) >= deleted,
        timeout=60,
        interval=0.2,
    )
    sh(pod_exec, namespace, f"{client} compact {deleted}")

    # Restores to a revision and to a time, side by side.
    restores: dict[str, tuple[Json, dict[str, tuple[str, int]]]] = {
        "pitr-rev": ({"revision": middle}, at_middle),
        "pitr-time": ({"time": just_before}, before),
    }
    for name, (point, _) in restores.items():
        kubectl.apply(restored_cluster(namespace, name, backup_name, point))
    for name, (point, expected) in restores.items():
        wait_available(kubectl, namespace, name, 1)

        def serves(n: str = name) -> dict[str, tuple[str, int]] | None:
            return key_space(pod_exec, namespace, n)

        got = eventually(f"{name} to serve", serves, timeout=60)
        assert got == expected, (name, point, got, expected)
        restored_from = kubectl.get("etcdcluster", name, namespace)["status"]["restoredFrom"]
        assert restored_from.get("toRevision") == point.get("revision"), restored_from
        assert restored_from.get("toTime") == point.get("time"), restored_from
        kubectl.run("delete", "etcdcluster", name, f"--namespace={namespace}", "--wait=false")

    # Off, writes compacted away while nobody records, on again: the chain is broken.
    kubectl.run(
        "patch", "etcdcluster", SOURCE, f"--namespace={namespace}", "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/backup/continuous"}]),
    )  # fmt: skip
    eventually(
        "status.backup.continuous cleared",
        lambda: not continuous_status(kubectl, namespace),
        timeout=60,
        interval=1,
    )
    sh(pod_exec, namespace, f"{client} put /app/unrecorded x; {client} put /app/unrecorded y")
    sh(pod_exec, namespace, f"{client} compact {revision(pod_exec, namespace, SOURCE)}")
    kubectl.run(
        "patch", "etcdcluster", SOURCE, f"--namespace={namespace}", "--type=merge",
        "-p", json.dumps({"spec": {"backup": {"continuous": continuous}}}),
    )  # fmt: skip

    def broken_event() -> Json | None:
        found = [
            e for e in events_of(kubectl, namespace, SOURCE)
            if e.get("reason") == "ContinuousBackupBroken"
        ]  # fmt: skip
        return found[0] if found else None

    event = eventually("a ContinuousBackupBroken event", broken_event, timeout=150, interval=2)
    assert "compacted" in event["message"] and f"{backup_name}-rechain" in event["message"]
    eventually(
        "the new chain to extend the new full backup",
        lambda: continuous_status(kubectl, namespace).get("backup") == f"{backup_name}-rechain",
        timeout=180,
        interval=2,
    )

    def window() -> Json | None:
        found: Json = kubectl.get("etcdcluster", SOURCE, namespace)["status"]["backup"]
        to = (found.get("recoverableTo") or {}).get("revision") or 0
        return found if to >= deleted else None

    # The window runs from the first backup to the new chain's end (a pass writes it).
    found = eventually("the recoverable window past the delete", window, timeout=90, interval=2)
    assert found["recoverableFrom"]["revision"] <= middle, found

    # The damaged cluster deleted and created again with a point alone: the operator picks the
    # newest backup of that name before the point (its backups outlive it).
    kubectl.run("delete", "etcdcluster", SOURCE, f"--namespace={namespace}", "--wait=true")
    point_alone = {"backup": {"pointInTime": {"revision": middle}}}
    kubectl.apply(dev_cluster(namespace, SOURCE, bootstrap=point_alone))
    wait_available(kubectl, namespace, SOURCE, 1)

    def source_serves() -> dict[str, tuple[str, int]] | None:
        return key_space(pod_exec, namespace, SOURCE)

    assert eventually(f"{SOURCE} to serve again", source_serves, timeout=60) == at_middle
    restored_from = kubectl.get("etcdcluster", SOURCE, namespace)["status"]["restoredFrom"]
    assert (restored_from["backup"], restored_from["toRevision"]) == (backup_name, middle)
