"""The e2e fixtures that differ by mode, ``--kubeconfig`` mode: the user's cluster, nothing built.

Registered as a pytest plugin by ``e2e/conftest.py`` when ``--kubeconfig`` (or
``E2E_KUBECONFIG``) is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.kube import Kubectl, KubectlExec, PodExec
from e2e.kubelet.faults import KubeletControl


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = Path(str(request.config.getoption("--kubeconfig"))).resolve()
    with pytest.MonkeyPatch.context() as patch:
        # kubectl and helm subprocesses started by tests inherit this.
        patch.setenv("KUBECONFIG", str(path))
        yield path


@pytest.fixture(scope="session")
def pod_exec(kubectl: Kubectl) -> PodExec:
    """``kubectl exec``; the process kubelet's control API when it runs the cluster's nodes
    (a cluster of ``make demo``, or of another e2e session): one hop shorter than ``kubectl
    exec``, which it serves too."""
    control = KubeletControl.of_cluster(kubectl)
    return control if control is not None else KubectlExec(kubectl)


@pytest.fixture(scope="session")
def operator_names() -> tuple[str, str]:
    """A fresh release and namespace: the chart's cluster-wide RBAC is named after the release,
    so nothing of the user's is overwritten (yet see e2e/README.md: one operator at a time)."""
    name = f"etcd-operator-e2e-{uuid.uuid4().hex[:6]}"
    return name, name
