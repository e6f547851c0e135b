"""Every manifest of every example-like cluster against the Kubernetes 1.33 OpenAPI schema.

Strict: an unknown field anywhere fails, as it would under server-side apply's field validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.bootstrap import BootstrapState, bootstrap_configmap
from etcd_operator.components.children import children

from tests.unit.operator.components.clusters import example_specs, make_cluster

KUBERNETES_VERSION = "1.33"
SPECS = list(example_specs())
EXAMPLES = sorted((Path(__file__).parents[4] / "examples").glob("*.yaml"))


def validate(manifest: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        # The library's message embeds the whole sub-schema; keep the reason and the path.
        cause = err.caught
        path = "/".join(str(p) for p in getattr(cause, "absolute_path", []))
        message = getattr(cause, "message", str(cause))
        pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {path}: {message}")


def test_the_matrix_covers_the_brief() -> None:
    ids = [ident for ident, _ in SPECS]
    for part in ("1-", "3-", "5-", "pyetcd", "-etcd-", "Required", "Preferred", "Off", "extras"):
        assert any(part in ident for ident in ids), part
    assert any(ident.endswith("-ssd") for ident in ids)
    assert any(ident.endswith("-None") for ident in ids)


@pytest.mark.parametrize("spec", [s for _, s in SPECS], ids=[i for i, _ in SPECS])
def test_all_children_are_valid(spec: dict[str, Any]) -> None:
    manifests = children(make_cluster(spec), OperatorSettings(), BootstrapState.NEW)
    assert [m["kind"] for m in manifests] == [
        "ConfigMap",
        "Service",
        "Service",
        "PodDisruptionBudget",
        "StatefulSet",
    ]
    for manifest in manifests:
        validate(manifest)


def test_the_repository_examples_are_found() -> None:
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_children_of_the_repository_examples_are_valid(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    # As the API server hands the object to the operator: with a namespace and a uid.
    body["metadata"] = {**body["metadata"], "namespace": "default", "uid": "uid-of-" + path.stem}
    cluster = EtcdCluster.model_validate(body)
    for manifest in children(cluster, OperatorSettings(), BootstrapState.NEW):
        validate(manifest)


@pytest.mark.parametrize("state", list(BootstrapState))
def test_bootstrap_configmap_is_valid_in_each_state(state: BootstrapState) -> None:
    validate(bootstrap_configmap(make_cluster(), OperatorSettings(), state))


def test_the_validator_is_strict() -> None:
    """Guards the test above against passing vacuously: a stray field deep in the pod fails."""
    manifests = children(make_cluster(), OperatorSettings(), BootstrapState.NEW)
    sts = manifests[-1]
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"pth": "/"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSION, strict=True)
