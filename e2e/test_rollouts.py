"""A change of the operator's member settings restarts one cluster at a time, end to end.

Changing a ``members.*`` value of the chart (here the member image pull policy, as ``helm
upgrade --set members.imagePullPolicy=Always`` would, through the operator's environment)
re-renders every cluster's pod template at once. With the default limit
(``rollouts.maxConcurrentClusters: 1``), the StatefulSets must roll one after the other: polled
all along, never two clusters roll at the same time, the ones waiting say so
(``Progressing``, reason ``RolloutQueued``), and in the end every cluster runs the new template
and is Available again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.chart import OperatorRelease
from e2e.chart import wait_available as operator_available
from e2e.kube import Kubectl, condition, eventually
from e2e.test_operator import example, wait_available

pytestmark = pytest.mark.any_cluster

CLUSTERS = ("roll-a", "roll-b", "roll-c")
SETTING = "ETCD_OPERATOR_IMAGE_PULL_POLICY"

Json = dict[str, Any]


def set_pull_policy(kubectl: Kubectl, operator: OperatorRelease, policy: str) -> None:
    kubectl.run(
        "set", "env", f"deployment/{operator.deployment}", f"{SETTING}={policy}",
        f"--namespace={operator.namespace}",
    )  # fmt: skip


def rolling(sts: Json) -> bool:
    """The StatefulSet has a template not every pod runs yet (counted from the pods: under
    OnDelete the controller never moves currentRevision to updateRevision)."""
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    return int(status.get("observedGeneration") or 0) < int(
        sts["metadata"].get("generation") or 0
    ) or int(status.get("updatedReplicas") or 0) < int(spec.get("replicas") or 0)


def pull_policy(sts: Json) -> str:
    return str(sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"])


def settled(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Wait for the cluster's Progressing condition to go back to False."""

    def probe() -> bool:
        cluster = kubectl.get("etcdcluster", name, namespace)
        return condition(cluster, "Progressing") == "False"

    eventually(f"EtcdCluster {name} no longer Progressing", probe, timeout=60, interval=1)


# The operator's behaviour here does not depend on the API server's storage: one plane.
@pytest.mark.one_storage
def test_a_member_setting_change_rolls_one_cluster_at_a_time(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str
) -> None:
    for name in CLUSTERS:
        manifest = example("etcdcluster-dev.yaml", namespace)
        manifest["metadata"]["name"] = name
        manifest["spec"].pop("podTemplate", None)  # its spread constraint names example-dev
        kubectl.apply(manifest)
    for name in CLUSTERS:
        wait_available(kubectl, namespace, name, 1)

    set_pull_policy(kubectl, operator, "Always")
    try:
        operator_available(kubectl, operator)
        most_at_once, queued = 0, set()
        deadline = time.monotonic() + 420
        while True:
            items = kubectl.json("get", "statefulsets", f"--namespace={namespace}", "-o", "json")
            sets = {
                s["metadata"]["name"]: s
                for s in items["items"]
                if s["metadata"]["name"] in CLUSTERS
            }
            now_rolling = [n for n, s in sets.items() if rolling(s)]
            most_at_once = max(most_at_once, len(now_rolling))
            assert len(now_rolling) <= 1, f"clusters rolling at once: {now_rolling}"
            clusters = kubectl.json("get", "etcdclusters", f"--namespace={namespace}")["items"]
            for cluster in clusters:
                for c in (cluster.get("status") or {}).get("conditions") or []:
                    if c["type"] == "Progressing" and c["reason"] == "RolloutQueued":
                        queued.add(cluster["metadata"]["name"])
            done = len(sets) == len(CLUSTERS) and all(
                pull_policy(s) == "Always" and not rolling(s) for s in sets.values()
            )
            if done:
                break
            assert time.monotonic() < deadline, (
                f"not every cluster rolled within the deadline: "
                f"{ {n: (pull_policy(s), rolling(s)) for n, s in sets.items()} }"
            )
            time.sleep(0.5)  # poll interval of a loop with a deadline
        assert most_at_once == 1  # each one did roll
        assert queued, "no cluster ever reported waiting for its turn (RolloutQueued)"
        for name in CLUSTERS:
            wait_available(kubectl, namespace, name, 1)
            # The pass that sees the last pod updated and clears Progressing may come a poll
            # after the StatefulSet's status says so: wait for it, bounded.
            settled(kubectl, namespace, name)
    finally:
        set_pull_policy(kubectl, operator, "IfNotPresent")
        operator_available(kubectl, operator)
