"""A pass the API server refuses is visible, end to end, and the cluster recovers once fixed.

Some mistakes pass the CRD's schema and only the API server's validation of the StatefulSet
catches them (here a node affinity term ``operator: In`` without ``values``). Every pass then
fails; the cluster must say so, with the API server's own message, instead of showing its old
conditions: Degraded True with reason ``ReconcileFailed``, and one Warning event. Once the user
fixes the spec, the next pass completes and Degraded says so.
"""

from __future__ import annotations

import json

import pytest

from e2e.chart import OperatorRelease
from e2e.kube import Kubectl, eventually
from e2e.test_operator import example, wait_available

pytestmark = pytest.mark.any_cluster


def degraded(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str] | None:
    status = kubectl.get("etcdcluster", name, namespace).get("status") or {}
    for c in status.get("conditions") or []:
        if c["type"] == "Degraded":
            return {k: str(v) for k, v in c.items()}
    return None


# The operator's behaviour here does not depend on the API server's storage: one plane.
@pytest.mark.one_storage
def test_a_refused_pass_is_reported_and_the_fixed_cluster_recovers(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)
    name = manifest["metadata"]["name"]
    # Admitted by the CRD (a node selector requirement's values are optional in the schema), but
    # the API server refuses a StatefulSet whose "In" requirement has no values.
    manifest["spec"]["podTemplate"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]
            }
        }
    }
    kubectl.apply(manifest)

    def failed() -> dict[str, str] | None:
        found = degraded(kubectl, namespace, name)
        return found if found and found["reason"] == "ReconcileFailed" else None

    condition = eventually("Degraded with reason ReconcileFailed", failed, timeout=90)
    assert condition["status"] == "True"
    assert "StatefulSet" in condition["message"] and "values" in condition["message"], condition
    assert "422" in condition["message"], condition  # the API server's answer, as it gave it

    events = kubectl.json(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name},reason=ReconcileFailed",
    )["items"]  # fmt: skip
    assert events and all(e["type"] == "Warning" for e in events)
    # Retried with backoff, but one event per distinct error, not one per try.
    assert len({e["message"] for e in events}) == len(events), [e["message"] for e in events]

    # The user fixes the spec: the next pass completes.
    patch = [{"op": "remove", "path": "/spec/podTemplate/affinity"}]
    kubectl.run(
        "patch", "etcdcluster", name, f"--namespace={namespace}", "--type=json",
        f"--patch={json.dumps(patch)}",
    )  # fmt: skip
    wait_available(kubectl, namespace, name, 1)
    after = degraded(kubectl, namespace, name)
    assert after is not None and after["status"] == "False", after
