"""``pytest e2e --kubeconfig=PATH``: the operator scenarios on a cluster the suite did not build.

The given cluster is this session's own control plane and process kubelet, handed to a nested
pytest run as nothing but a kubeconfig, so that the option's code path runs for real: the nested
run must build nothing, find the process kubelet through its Nodes' annotation (for exec),
install the chart into a fresh namespace, pass, and leave the cluster as it found it.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from e2e import chart
from e2e.conftest import OPERATOR_NAMESPACE, OPERATOR_RELEASE
from e2e.controlplane import ControlPlane
from e2e.kube import Kubectl, eventually
from e2e.kubelet.faults import KubeletHandle

ROOT = Path(__file__).resolve().parent.parent
# Two scenarios are enough to run the whole path (install, exec, a cluster, uninstall).
SCENARIOS = "helm_install or pyetcd_dev"


def namespaces(kubectl: Kubectl) -> set[str]:
    return {n["metadata"]["name"] for n in kubectl.json("get", "namespaces")["items"]}


@contextmanager
def session_operator_paused(kubectl: Kubectl) -> Iterator[None]:
    """Scale this session's operator (if installed) to zero meanwhile: two operators watching
    every namespace would both reconcile the nested run's clusters."""
    name, ns = chart.fullname(OPERATOR_RELEASE), OPERATOR_NAMESPACE
    if not kubectl.exists("deployment", name, ns):
        yield
        return
    kubectl.run("scale", "deployment", name, f"--namespace={ns}", "--replicas=0")
    selector = f"app.kubernetes.io/instance={OPERATOR_RELEASE}"
    eventually(
        "the session's operator pod to go",
        lambda: not kubectl.json("get", "pods", f"--namespace={ns}", "-l", selector)["items"],
        timeout=90,
    )
    try:
        yield
    finally:
        kubectl.run("scale", "deployment", name, f"--namespace={ns}", "--replicas=1")
        release = chart.OperatorRelease(OPERATOR_RELEASE, ns, name)
        chart.wait_available(kubectl, release)


# The --kubeconfig code path does not depend on the API server's storage: one plane.
@pytest.mark.one_storage
@pytest.mark.timeout(1500)
def test_operator_scenarios_run_against_a_given_kubeconfig(
    control_plane: ControlPlane,
    kubelet: KubeletHandle,
    kubectl: Kubectl,
    helm_binary: Path,
    tmp_path: Path,
) -> None:
    nested = tmp_path / "nested"
    report = tmp_path / "nested.xml"
    with session_operator_paused(kubectl):
        before = namespaces(kubectl)
        releases = chart.releases(helm_binary, control_plane.kubeconfig)
        argv = [
            sys.executable, "-m", "pytest", "e2e", f"--kubeconfig={control_plane.kubeconfig}",
            "-k", SCENARIOS, "-p", "no:cacheprovider", f"--basetemp={nested}",
            f"--junitxml={report}",
        ]  # fmt: skip
        result = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=1400, check=False
        )
        output = result.stdout[-5000:] + result.stderr[-3000:]
        assert result.returncode == 0, output
        assert f"e2e cluster: given, kubeconfig {control_plane.kubeconfig}" in result.stdout
        suite = ET.parse(report).getroot().find("testsuite")
        assert suite is not None
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
        assert counts == {"tests": 2, "failures": 0, "errors": 0, "skipped": 0}, output
        ran = sorted(str(case.get("name")) for case in suite.iter("testcase"))
        assert ran == [
            "test_helm_install_runs_the_operator_in_cluster",
            "test_pyetcd_dev_example_reaches_available",
        ]
        # Nothing was built: no control plane directory, no kubelet directory.
        assert not list(nested.glob("controlplane-*")) and not list(nested.glob("kubelet-*"))
        # Left as found (the nested run waits for its deletions): the release uninstalled, its
        # namespace, the scenarios' namespaces and their clusters gone.
        assert chart.releases(helm_binary, control_plane.kubeconfig) == releases

        left = namespaces(kubectl) - before
        clusters = kubectl.run("get", "etcdclusters", "-A", "-o", "name").stdout.split()
        assert left == set() and clusters == [], (left, clusters)
