"""All children together: apply order, ownership, common metadata."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import naming
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.children import children
from etcd_operator.components.owner import owner_reference

from tests.unit.operator.components.clusters import UID, example_specs, make_cluster

SETTINGS = OperatorSettings()


def test_apply_order() -> None:
    manifests = children(make_cluster(), SETTINGS, BootstrapState.NEW)
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("ConfigMap", "demo-bootstrap"),  # read by members at container start
        ("Service", "demo-peer"),  # resolves members from their first start
        ("Service", "demo-client"),
        ("PodDisruptionBudget", "demo"),  # guards the pods from birth
        ("StatefulSet", "demo"),
    ]


@pytest.mark.parametrize("spec", [s for _, s in example_specs()][::7])
def test_every_child_is_owned_and_labelled(spec: dict[str, Any]) -> None:
    manifests = children(make_cluster(spec), SETTINGS, BootstrapState.EXISTING)
    for manifest in manifests:
        meta = manifest["metadata"]
        assert meta["namespace"] == "prod"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "etcd.pyetcd.io/v1alpha1",
                "kind": "EtcdCluster",
                "name": "demo",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = meta["labels"]
        assert labels[naming.LABEL_MANAGED_BY] == "etcd-operator"
        assert labels[naming.LABEL_CLUSTER] == "demo"
        assert labels[naming.LABEL_COMPONENT]
    components = [m["metadata"]["labels"][naming.LABEL_COMPONENT] for m in manifests]
    assert len(set(components)) == len(components), "two children share a component label"


def test_replicas_override_reaches_configmap_pdb_and_statefulset() -> None:
    manifests = children(
        make_cluster({"replicas": 3}), SETTINGS, BootstrapState.EXISTING, replicas=4
    )
    configmap, _, _, budget, sts = manifests
    assert configmap["data"]["initial-cluster"].count("=http://") == 4
    assert budget["spec"]["minAvailable"] == 3
    assert sts["spec"]["replicas"] == 4


def test_children_of_a_cluster_without_uid_are_refused() -> None:
    # An owner reference needs the uid: without it the children would outlive the cluster.
    with pytest.raises(ValueError, match="uid"):
        children(make_cluster(uid=None), SETTINGS, BootstrapState.NEW)
    with pytest.raises(ValueError, match="uid"):
        owner_reference(make_cluster(uid=None))


def test_pure_no_state_shared_between_calls_or_with_the_cluster() -> None:
    cluster = make_cluster({"podTemplate": {"labels": {"a": "b"}}})
    before = cluster.model_dump()
    first = children(cluster, SETTINGS, BootstrapState.NEW)
    first[-1]["spec"]["template"]["metadata"]["labels"]["a"] = "mutated"
    assert children(cluster, SETTINGS, BootstrapState.NEW) != first
    assert cluster.model_dump() == before
