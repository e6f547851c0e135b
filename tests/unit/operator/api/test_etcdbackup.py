"""The EtcdBackup kind: its CRD (valid, structural, within the CEL budget, immutable spec, the
columns `kubectl get etcdbackups` shows) and its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml
from etcd_operator.api import crd as crd_module
from etcd_operator.api.etcdbackup import EtcdBackup, EtcdBackupStatus
from etcd_operator.api.operation import OperationPhase

from tests.unit.operator.api.kube_schema import (
    cel_reference_problems,
    is_transition_rule,
    structural_problems,
    walk,
)

ROOT = Path(__file__).resolve().parents[4]
CRD_FILE = ROOT / "crds" / "etcd.pyetcd.io_etcdbackups.yaml"
KUBERNETES_VERSION = "1.33.0"


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    return loaded


def schema() -> dict[str, Any]:
    found: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return found


def test_the_file_is_what_the_models_make() -> None:
    assert crd_module.custom_resource_definition(crd_module.BACKUP) == crd()


def test_a_valid_structural_crd_within_the_cel_budget() -> None:
    assert kubernetes_validate.validate(crd(), KUBERNETES_VERSION, strict=True)
    assert structural_problems(schema()) == []
    assert cel_reference_problems(schema()) == []


def test_names_columns_and_subresources() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "etcdbackups.etcd.pyetcd.io"
    assert spec["names"]["kind"] == "EtcdBackup" and spec["names"]["plural"] == "etcdbackups"
    assert "categories" not in spec["names"]  # `kubectl delete all --all` leaves backups alone
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == ["Cluster", "Phase", "Revision", "Size", "Age"]


def test_the_spec_is_immutable() -> None:
    rules = schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == ["self == oldSelf"]
    assert all(is_transition_rule(r["rule"]) for r in rules)
    # No other node carries a transition rule (it would not run on creation).
    for path, node in walk(schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert path == "spec" or not is_transition_rule(rule["rule"]), path


def test_the_model_reads_a_backup_as_kubectl_shows_it() -> None:
    backup = EtcdBackup.model_validate(
        {
            "apiVersion": "etcd.pyetcd.io/v1alpha1",
            "kind": "EtcdBackup",
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {
                "clusterName": "example",
                "deletionPolicy": "Delete",
                "store": {"bucket": "backups", "endpoint": "http://s3:9000"},
            },
            "status": {"phase": "Succeeded", "revision": 7, "sizeBytes": 10},
        }
    )
    assert (backup.name, backup.namespace) == ("b", "ns")
    assert backup.spec.deletionPolicy == "Delete"
    assert backup.status == EtcdBackupStatus(
        phase=OperationPhase.SUCCEEDED, revision=7, sizeBytes=10
    )


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"clusterName": "Not_A_Name"},
        {"clusterName": "a", "deletionPolicy": "Keep"},
        {"clusterName": "a", "store": {"bucket": "x"}},  # a bucket name of one letter
    ],
)
def test_the_model_refuses_what_the_crd_refuses(spec: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        EtcdBackup.model_validate({"spec": spec})
