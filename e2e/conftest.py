"""Fixtures of the end-to-end suite: a control plane per storage backend, the kubelet, kubectl.

``--storage`` picks the API server's storage: ``etcd`` (Debian's upstream etcd), ``pyetcd`` (this
project's server), or both (comma-separated; the default). Tests that take ``control_plane`` run
once per backend; pytest brings each plane up once and stops it before starting the next one.

``--kubeconfig=PATH`` (or ``E2E_KUBECONFIG``) runs the scenarios marked ``any_cluster`` (the
operator's, in ``test_operator.py``) against that cluster instead: nothing is built, the chart is
installed into a fresh namespace and uninstalled afterwards, and every other test is deselected.
Three fixtures differ between the modes: ``kubeconfig``, ``pod_exec`` (``kubectl exec``, or the
process kubelet's control API when the process kubelet runs the cluster's nodes) and
``operator_names``; they come from ``e2e.cluster_built`` or ``e2e.cluster_given``, registered as
a plugin at configure time.

Tests marked ``own_control_plane`` start (and stop) a control plane of their own: they run
before all others, while no session plane is up, as only one plane and kubelet run at a time.
Tests marked ``last_on_storage`` run after every other test on their control plane (the session
fixtures, the operator's release among them, still up), to check what those did; ``outcomes``
tells them how each test went.

The Kubernetes binaries are built (or found in the cache) and kubectl/helm unpacked at session
start, outside any test's timeout.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from e2e import chart, cluster_built, cluster_given
from e2e.chart import OperatorRelease
from e2e.cluster_built import OPERATOR_NAMESPACE, OPERATOR_RELEASE
from e2e.controlplane import ControlPlane, Storage
from e2e.k8s.build import ensure_binaries
from e2e.kube import Kubectl, PodExec, eventually
from e2e.kubelet.faults import KubeletHandle
from tools.tools import ensure_tools

__all__ = ["OPERATOR_NAMESPACE", "OPERATOR_RELEASE", "OperatorRelease"]

STORAGES: tuple[Storage, ...] = ("etcd", "pyetcd")
KUBECONFIG_ENV = "E2E_KUBECONFIG"
# nodeid -> "passed", "failed" or "skipped", as each test of the session ends up.
OUTCOMES = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--storage",
        default=",".join(STORAGES),
        help="storage of the API server: etcd, pyetcd or both, comma-separated (default: both)",
    )
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get(KUBECONFIG_ENV, ""),
        help=f"run the operator scenarios against this cluster instead (env {KUBECONFIG_ENV})",
    )


def given_kubeconfig(config: pytest.Config) -> Path | None:
    value = str(config.getoption("--kubeconfig") or "")
    return Path(value).resolve() if value else None


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "any_cluster: a scenario that also runs against a cluster given --kubeconfig"
    )
    config.addinivalue_line(
        "markers", "own_control_plane: starts its own control plane; runs before all others"
    )
    config.addinivalue_line(
        "markers", "last_on_storage: runs after every other test on its control plane"
    )
    config.addinivalue_line(
        "markers",
        "one_storage(storage=None): runs on one plane only, the one named if it is selected, "
        "else the first selected (what it tests does not touch the API server's storage, and it "
        "is slow); naming pyetcd for some spreads the slow scenarios over both planes",
    )
    path = given_kubeconfig(config)
    if path is not None and not path.is_file():
        raise pytest.UsageError(f"--kubeconfig: {path} does not exist")
    mode = cluster_built if path is None else cluster_given
    config.pluginmanager.register(mode, mode.__name__)


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    _storages(session.config)
    if given_kubeconfig(session.config) is None:
        ensure_binaries()
    ensure_tools()


def pytest_report_header(config: pytest.Config) -> str:
    path = given_kubeconfig(config)
    if path is not None:
        return f"e2e cluster: given, kubeconfig {path}"
    return f"e2e storage: {', '.join(_storages(config))}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "control_plane" in metafunc.fixturenames and given_kubeconfig(metafunc.config) is None:
        storages = _storages(metafunc.config)
        one = metafunc.definition.get_closest_marker("one_storage")
        if one is not None:
            named = one.args[0] if one.args else None
            storages = [named] if named in storages else storages[:1]
        metafunc.parametrize(
            "control_plane", storages, ids=storages, indirect=True, scope="session"
        )


@pytest.hookimpl(trylast=True)  # after pytest has grouped the items by control plane
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if given_kubeconfig(config) is not None:
        keep = [i for i in items if i.get_closest_marker("any_cluster")]
        dropped = [i for i in items if not i.get_closest_marker("any_cluster")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        return
    own = [i for i in items if i.get_closest_marker("own_control_plane")]
    items[:] = own + [i for i in items if not i.get_closest_marker("own_control_plane")]
    for item in [i for i in items if i.get_closest_marker("last_on_storage")]:
        # Right after the last other test on the same plane: no plane is started twice.
        items.remove(item)
        storage = storage_of(item)
        same = [n for n, other in enumerate(items) if storage_of(other) == storage]
        items.insert(same[-1] + 1 if same else len(items), item)


def storage_of(item: pytest.Item) -> str | None:
    """The storage of the control plane ``item`` runs on; None for a test without one."""
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("control_plane") if callspec is not None else None
    return str(value) if value is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = item.config.stash.setdefault(OUTCOMES, {})
    if report.failed:  # in setup, call or teardown
        found[item.nodeid] = "failed"
    elif report.when == "call" or report.skipped:
        found.setdefault(item.nodeid, report.outcome)
    return report


def outcomes(config: pytest.Config) -> Mapping[str, str]:
    """How each test of the session that has run so far went, by nodeid."""
    return config.stash.get(OUTCOMES, {})


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
    if handle.leftovers:
        # Why it did not clean up is in its log (it was killed, or a step failed).
        tail = handle.log_path.read_text(errors="replace").splitlines()[-30:]
        raise AssertionError(
            f"the kubelet left network namespaces behind: {handle.leftovers}; "
            "the end of its log:\n" + "\n".join(tail)
        )


@pytest.fixture
def engine(control_plane: ControlPlane) -> str:
    """The engine of an EtcdCluster a scenario runs on both planes: the plane's own storage
    engine. A full run covers both engines, one per plane, in the time of one (the API
    server's storage plays no part in the scenario)."""
    return "etcd" if control_plane.storage == "etcd" else "pyetcd"


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    return ensure_tools().kubectl


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    return ensure_tools().helm


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, kubectl_binary: Path) -> Kubectl:
    assert os.environ["KUBECONFIG"] == str(kubeconfig)
    return Kubectl(kubectl_binary, kubeconfig)


def fresh_namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted afterwards.

    Ready once its ``default`` ServiceAccount exists: the controller-manager makes it a moment
    after the namespace, and the ServiceAccount admission refuses pods until then.

    Its EtcdClusters go first (they carry no finalizer, so this needs no operator), then the
    namespace. On a given cluster the namespace's deletion is waited for (the cluster is left
    as found); here the session's plane is thrown away anyway.
    """
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    eventually(
        f"the default ServiceAccount of {name}",
        lambda: kubectl.exists("serviceaccount", "default", name),
        timeout=60,
    )
    yield name
    kubectl.run(
        "delete", "etcdclusters", "--all", f"--namespace={name}", "--wait=true", "--timeout=120s",
        check=False,  # also where the CRD is not installed
    )  # fmt: skip
    wait = given_kubeconfig(request.config) is not None
    kubectl.run(
        "delete", "namespace", name, f"--wait={str(wait).lower()}", "--timeout=240s",
        "--ignore-not-found",
    )  # fmt: skip


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace for the scenario, deleted afterwards (see ``fresh_namespace``)."""
    yield from fresh_namespace(request, kubectl)


@pytest.fixture
def other_namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A second fresh namespace: somewhere else in the cluster (a client from outside)."""
    yield from fresh_namespace(request, kubectl)


@pytest.fixture(scope="session")
def operator(
    request: pytest.FixtureRequest,
    kubectl: Kubectl,
    pod_exec: PodExec,
    helm_binary: Path,
    operator_names: tuple[str, str],
) -> Iterator[OperatorRelease]:
    """``helm install`` of the chart (see ``e2e.chart``); ``helm uninstall`` afterwards, and its
    namespace deleted (waited for on a given cluster, which is left as it was found).

    Takes ``pod_exec`` for its side effect on a built cluster: the kubelet runs, so the
    operator's pod does.
    """
    release_name, namespace = operator_names
    release = chart.install(helm_binary, kubectl.kubeconfig, release_name, namespace)
    try:
        yield release
    finally:
        try:
            chart.uninstall(helm_binary, kubectl.kubeconfig, release)
        finally:
            given = given_kubeconfig(request.config) is not None
            kubectl.run(
                "delete", "namespace", namespace, f"--wait={str(given).lower()}",
                "--timeout=180s", "--ignore-not-found", check=False,
            )  # fmt: skip
