"""The pydantic models of EtcdCluster: their rules, their defaults as the API server applies them,
and the api package's place at the bottom of the operator's layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from etcd_operator.api import v1alpha1
from etcd_operator.api.v1alpha1 import (
    STORAGE_SIZE_PATTERN,
    AutoCompaction,
    Engine,
    EtcdClusterSpec,
    EtcdOptions,
    Phase,
    PlacementMode,
)
from pydantic import ValidationError

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import admit, apply_defaults

SCHEMA = examples.openapi_schema()


@pytest.mark.parametrize("size", ["4Gi", "1.5Gi", "0.5Gi", "500M", "10G", "1Ti", "1024", ".5Gi"])
def test_storage_sizes_accepted(size: str) -> None:
    assert re.match(STORAGE_SIZE_PATTERN, size)


@pytest.mark.parametrize("size", ["0", "0Gi", "0.0Gi", "-1Gi", "+1Gi", "1e9", "100m", "4GB", ""])
def test_storage_sizes_refused(size: str) -> None:
    assert not re.match(STORAGE_SIZE_PATTERN, size)


def test_election_timeout_must_cover_five_heartbeats() -> None:
    EtcdOptions(heartbeatIntervalMs=200, electionTimeoutMs=1000)
    with pytest.raises(ValidationError, match="at least 5 times"):
        EtcdOptions(heartbeatIntervalMs=200, electionTimeoutMs=999)
    with pytest.raises(ValidationError, match="at least 5 times"):
        EtcdOptions(heartbeatIntervalMs=300)  # against the default timeout, as on the server


def test_revision_mode_keeps_a_number_of_revisions() -> None:
    AutoCompaction(mode="revision", retention="1000")
    AutoCompaction(mode="periodic", retention="90m")
    with pytest.raises(ValidationError, match="number of revisions"):
        AutoCompaction(mode="revision", retention="1h")


def test_a_minimal_spec_gets_the_same_defaults_on_both_sides() -> None:
    spec = EtcdClusterSpec(version="3.5.17").model_dump(mode="json", exclude_none=True)
    server = apply_defaults(SCHEMA, {"metadata": {"name": "a"}, "spec": {"version": "3.5.17"}})
    assert server["spec"] == {k: v for k, v in spec.items() if v != {}}
    assert server["spec"]["storage"]["placement"]["nodeLabel"] == v1alpha1.DEFAULT_SSD_LABEL


def test_crd_enums_are_the_python_enums() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    status = SCHEMA["properties"]["status"]["properties"]
    assert spec["engine"]["enum"] == [e.value for e in Engine]
    assert spec["storage"]["properties"]["placement"]["properties"]["mode"]["enum"] == [
        m.value for m in PlacementMode
    ]
    assert status["phase"]["enum"] == [p.value for p in Phase]


def test_status_written_by_the_operator_is_accepted() -> None:
    body = {
        "metadata": {"name": "a"},
        "spec": {"version": "3.5.17"},
        "status": v1alpha1.EtcdClusterStatus(
            phase=Phase.RUNNING,
            conditions=[
                v1alpha1.Condition(
                    type="Available",
                    status="True",
                    reason="QuorumHealthy",
                    lastTransitionTime="2025-01-01T00:00:00Z",
                )
            ],
            members=[v1alpha1.MemberStatus(name="a-0", id="8e9e05c52164694d", leader=True)],
            replicas=1,
            readyReplicas=1,
            selector="app.kubernetes.io/instance=a",
        ).model_dump(mode="json"),
    }
    # Dumped with its None values, as the operator's status merge patch is: the API server
    # drops a null where the schema is not nullable.
    assert body["status"]["members"][0]["version"] is None
    assert admit(SCHEMA, body) == []


def test_api_imports_nothing_else_from_the_operator() -> None:
    # The api package is the bottom layer: components, reconcile and handlers build on it.
    package = Path(v1alpha1.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("etcd_operator"):
                    assert name.startswith("etcd_operator.api"), f"{path.name} imports {name}"
