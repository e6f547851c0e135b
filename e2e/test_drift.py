"""Drift, end to end: what a user changes behind the operator's back is put back, on a real API
server, without losing data and without re-applying what the API server merely normalised.

``kubectl scale statefulset`` down to nothing used to leave the cluster stuck for good (the
fingerprint said nothing had changed); now the next pass scales it back, the member restarts on
its own volume and the data written before is still there. A label removed from the client
Service comes back too. Each correction posts one ``DriftCorrected`` Warning naming the fields:
the second correction needs a pass after the first, so a pass that kept re-applying the
StatefulSet (a false drift) would show as a second StatefulSet event.
"""

from __future__ import annotations

import pytest

from e2e.chart import OperatorRelease
from e2e.kube import Kubectl, PodExec, eventually
from e2e.test_operator import etcdctl_get, etcdctl_put, example, start_client, wait_available

pytestmark = pytest.mark.any_cluster

MANAGED_BY = "app.kubernetes.io/managed-by"


def drift_events(kubectl: Kubectl, namespace: str, name: str) -> list[str]:
    """The messages of the cluster's DriftCorrected events, oldest first."""
    events = kubectl.json(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name},reason=DriftCorrected",
    )["items"]  # fmt: skip
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [str(e["message"]) for e in events]


def diagnostics(kubectl: Kubectl, operator: OperatorRelease, namespace: str, name: str) -> str:
    """The cluster's events and the operator's log lines about it: what a failed wait shows."""
    events = kubectl.run(
        "get", "events", f"--namespace={namespace}", "--sort-by=.lastTimestamp", check=False
    ).stdout
    logs = kubectl.run(
        "logs", f"deployment/{operator.deployment}", f"--namespace={operator.namespace}",
        "--tail=2000", check=False,
    ).stdout  # fmt: skip
    mine = [line for line in logs.splitlines() if namespace in line]
    return f"events in {namespace}:\n{events}\noperator log lines about it:\n" + "\n".join(
        mine[-60:]
    )


# The operator's behaviour here does not depend on the API server's storage: one plane.
@pytest.mark.one_storage
def test_changes_behind_the_operators_back_are_put_back(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, name, 1)
    start_client(kubectl, namespace)
    eventually(
        "etcdctl put before the drift",
        lambda: etcdctl_put(pod_exec, namespace, name, "survivor", "still-here"),
    )

    # The StatefulSet scaled to nothing by hand: the member's pod goes away.
    kubectl.run("scale", "statefulset", name, "--replicas=0", f"--namespace={namespace}")

    def replicas() -> int:
        return int(kubectl.get("statefulset", name, namespace)["spec"]["replicas"])

    eventually("the operator to scale the StatefulSet back", lambda: replicas() == 1, timeout=90)
    wait_available(kubectl, namespace, name, 1)

    # On its own volume: the key written before the drift is there.
    survivor = eventually(
        "etcdctl get after the drift",
        lambda: etcdctl_get(pod_exec, namespace, name, "survivor"),
    )
    assert survivor == "still-here"

    # A label of ours removed from the client Service comes back.
    service = f"{name}-client"
    kubectl.run("label", "service", service, f"{MANAGED_BY}-", f"--namespace={namespace}")

    def labelled() -> bool:
        labels = kubectl.get("service", service, namespace)["metadata"].get("labels") or {}
        return labels.get(MANAGED_BY) == "etcd-operator"

    eventually("the operator to put the Service's label back", labelled, timeout=60)

    def two_corrections() -> list[str] | None:
        found = drift_events(kubectl, namespace, name)
        return found if len(found) >= 2 else None

    try:
        messages: list[str] = eventually(
            "a DriftCorrected event for each correction", two_corrections, timeout=30
        )
    except AssertionError as err:
        found = drift_events(kubectl, namespace, name)
        raise AssertionError(
            f"{err}; found {found}\n{diagnostics(kubectl, operator, namespace, name)}"
        ) from None
    statefulset = [m for m in messages if m.startswith(f"StatefulSet {name} ")]
    services = [m for m in messages if m.startswith(f"Service {service} ")]
    assert len(statefulset) == 1 and "spec.replicas" in statefulset[0], messages
    assert len(services) == 1 and "metadata.labels" in services[0], messages
    assert len(messages) == 2, messages
