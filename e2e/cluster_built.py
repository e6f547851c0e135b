"""The e2e fixtures that differ by mode, default mode: the control plane and kubelet built here.

Registered as a pytest plugin by ``e2e/conftest.py`` unless ``--kubeconfig`` is given (then
``e2e.cluster_given`` instead).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.controlplane import ControlPlane
from e2e.kube import PodExec
from e2e.kubelet.faults import KubeletHandle

# The release and namespace of the chart on a control plane built here.
OPERATOR_NAMESPACE = "etcd-operator"
OPERATOR_RELEASE = "etcd-operator"


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def pod_exec(kubelet: KubeletHandle) -> PodExec:
    """The process kubelet's exec through its control API (``kubectl exec`` works too, one hop
    longer); it also makes pods run at all."""
    return kubelet


@pytest.fixture(scope="session")
def operator_names() -> tuple[str, str]:
    return OPERATOR_RELEASE, OPERATOR_NAMESPACE
