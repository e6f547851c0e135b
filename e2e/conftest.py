"""Fixtures of the end-to-end suite: a control plane per storage backend, the kubelet, kubectl.

``--storage`` picks the API server's storage: ``etcd`` (Debian's upstream etcd), ``pyetcd`` (this
project's server), or both (comma-separated; the default). Tests that take ``control_plane`` run
once per backend; pytest brings each plane up once and stops it before starting the next one.

The Kubernetes binaries are built (or found in the cache) and kubectl/helm unpacked at session
start, outside any test's timeout.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.controlplane import ControlPlane, Storage
from e2e.k8s.build import ensure_binaries
from e2e.kube import Kubectl
from e2e.kubelet.faults import KubeletHandle
from tools.tools import ensure_tools

STORAGES: tuple[Storage, ...] = ("etcd", "pyetcd")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--storage",
        default=",".join(STORAGES),
        help="storage of the API server: etcd, pyetcd or both, comma-separated (default: both)",
    )


def _storages(config: pytest.Config) -> list[Storage]:
    chosen: list[Storage] = []
    for item in str(config.getoption("--storage")).split(","):
        name = item.strip()
        if name == "etcd":
            chosen.append("etcd")
        elif name == "pyetcd":
            chosen.append("pyetcd")
        elif name:
            raise pytest.UsageError(f"--storage: unknown storage {name!r} (etcd, pyetcd)")
    return chosen


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    _storages(session.config)
    ensure_binaries()
    ensure_tools()


def pytest_report_header(config: pytest.Config) -> str:
    return f"e2e storage: {', '.join(_storages(config))}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "control_plane" in metafunc.fixturenames:
        storages = _storages(metafunc.config)
        metafunc.parametrize(
            "control_plane", storages, ids=storages, indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    storage: Storage = request.param
    workdir = tmp_path_factory.mktemp(f"controlplane-{storage}")
    plane = ControlPlane(workdir, storage=storage)
    with pytest.MonkeyPatch.context() as patch:
        try:
            plane.start()
            # kubectl and helm subprocesses started by tests inherit this.
            patch.setenv("KUBECONFIG", str(plane.kubeconfig))
            yield plane
        finally:
            plane.stop()


@pytest.fixture(scope="session")
def kubelet(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletHandle]:
    """The process kubelet on the session's control plane: nodes node-a..c (SSD), node-d.

    Stopped at the end of the session (every pod process, every namespace it made), and any
    namespace of its run left behind is deleted and reported as a failure.
    """
    workdir = tmp_path_factory.mktemp(f"kubelet-{control_plane.storage}")
    handle = KubeletHandle(control_plane, workdir)
    try:
        handle.start()
        yield handle
    finally:
        handle.stop()
    assert handle.leftovers == [], "the kubelet left network namespaces behind"


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    return ensure_tools().kubectl


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane, kubectl_binary: Path) -> Kubectl:
    assert os.environ["KUBECONFIG"] == str(control_plane.kubeconfig)
    return Kubectl(kubectl_binary, control_plane.kubeconfig)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (without waiting for the namespace controller)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


OPERATOR_NAMESPACE = "etcd-operator"
OPERATOR_RELEASE = "etcd-operator"
CHART = Path(__file__).resolve().parent.parent / "charts" / "etcd-operator"


@dataclass(frozen=True)
class OperatorRelease:
    """The chart installed by ``helm``: its release name, namespace and Deployment name."""

    release: str
    namespace: str
    deployment: str


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, kubelet: KubeletHandle) -> Iterator[OperatorRelease]:
    """``helm install`` of the chart, its Deployment Available; ``helm uninstall`` afterwards.

    The chart's default images (``ghcr.io/pyetcd/etcd-operator``, ``ghcr.io/pyetcd/pyetcd``,
    ``gcr.io/etcd-development/etcd``) are the ones the kubelet's image table maps; they are
    passed explicitly so that a change of the defaults cannot silently break the suite.
    """
    helm = str(ensure_tools().helm)
    kubeconfig = f"--kubeconfig={kubectl.kubeconfig}"
    subprocess.run(
        [
            helm, "install", OPERATOR_RELEASE, str(CHART), kubeconfig,
            f"--namespace={OPERATOR_NAMESPACE}", "--create-namespace",
            "--set=image.repository=ghcr.io/pyetcd/etcd-operator",
            "--set=members.pyetcdImage=ghcr.io/pyetcd/pyetcd",
            "--set=members.etcdImage=gcr.io/etcd-development/etcd",
            # Status read every 5 s rather than 30: the scenarios wait for it.
            "--set=members.statusIntervalSeconds=5",
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    release = OperatorRelease(OPERATOR_RELEASE, OPERATOR_NAMESPACE, OPERATOR_RELEASE)
    try:
        yield release
    finally:
        subprocess.run(
            [
                helm, "uninstall", OPERATOR_RELEASE, kubeconfig,
                f"--namespace={OPERATOR_NAMESPACE}", "--wait", "--timeout=60s",
            ],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        kubectl.run("delete", "namespace", OPERATOR_NAMESPACE, "--wait=false", check=False)
