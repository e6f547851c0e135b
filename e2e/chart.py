"""The operator's Helm chart on a cluster: ``helm install`` of ``charts/etcd-operator``, and back.

Shared by the e2e fixtures (on the control plane built here, or on a user's cluster given with
``--kubeconfig``) and by ``make demo``, so that all three install the operator the same way: the
chart's own images, named explicitly (the process kubelet's image table maps exactly these, and
a change of the chart's defaults must not silently change what the tests run), and a short
status interval, because scenarios and the demo wait for the status. ``render`` is ``helm
template`` with the same arguments (what ``e2e/test_rbac.py`` compares the audit log with).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.kube import Kubectl, condition, eventually

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "etcd-operator"
CHART_NAME = "etcd-operator"
OPERATOR_IMAGE = "ghcr.io/pyetcd/etcd-operator"

VALUES = (
    f"image.repository={OPERATOR_IMAGE}",
    "members.pyetcdImage=ghcr.io/pyetcd/pyetcd",
    "members.etcdImage=gcr.io/etcd-development/etcd",
    # Status read every 5 s rather than 30: scenarios and the demo wait for it.
    "members.statusIntervalSeconds=5",
)


class HelmError(RuntimeError):
    """``helm`` failed; the message carries its output."""


@dataclass(frozen=True)
class OperatorRelease:
    """The chart installed by ``helm``: its release name, namespace and Deployment name."""

    release: str
    namespace: str
    deployment: str

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.release}"


def fullname(release: str) -> str:
    """The chart's ``etcd-operator.fullname`` (no overrides): the Deployment's name."""
    return release if CHART_NAME in release else f"{release}-{CHART_NAME}"


def _helm(helm: Path, kubeconfig: Path | None, *args: str, timeout: float) -> str:
    argv = [str(helm), *args, *([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HelmError(f"helm {' '.join(args)}: no answer in {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _sets(values: Sequence[str]) -> list[str]:
    return [f"--set={v}" for v in (*VALUES, *values)]


def render(
    helm: Path, release: str, namespace: str, values: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``helm template``: the objects ``install`` with the same arguments creates (the CRD
    aside), as parsed documents; no cluster involved."""
    out = _helm(
        helm, None, "template", release, str(CHART), f"--namespace={namespace}", *_sets(values),
        timeout=60,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def install(
    helm: Path,
    kubeconfig: Path,
    release: str,
    namespace: str,
    values: Sequence[str] = (),
    *,
    upgrade: bool = False,
) -> OperatorRelease:
    """``helm install`` (or ``upgrade --install``: idempotent) into ``namespace``, created if
    missing; ``values`` are ``key=value`` settings after the defaults above."""
    verb = ["upgrade", "--install"] if upgrade else ["install"]
    _helm(
        helm, kubeconfig, *verb, release, str(CHART),
        f"--namespace={namespace}", "--create-namespace", *_sets(values),
        timeout=180,
    )  # fmt: skip
    return OperatorRelease(release, namespace, fullname(release))


def uninstall(helm: Path, kubeconfig: Path, release: OperatorRelease) -> None:
    """``helm uninstall --wait``; the CRD stays, as Helm never deletes the CRDs it installed."""
    _helm(
        helm, kubeconfig, "uninstall", release.release, f"--namespace={release.namespace}",
        "--wait", "--timeout=90s",
        timeout=150,
    )  # fmt: skip


def releases(helm: Path, kubeconfig: Path) -> list[tuple[str, str]]:
    """Every release on the cluster as (namespace, name)."""
    out = _helm(helm, kubeconfig, "list", "--all-namespaces", "--output=json", timeout=60)
    return sorted((r["namespace"], r["name"]) for r in json.loads(out))


def wait_available(kubectl: Kubectl, release: OperatorRelease, timeout: float = 180) -> str:
    """Wait for the operator Deployment to be Available; the name of its one Ready pod."""

    def ready_pod() -> str | None:
        deployment = kubectl.get("deployment", release.deployment, release.namespace)
        if condition(deployment, "Available") != "True":
            return None
        pods = kubectl.json(
            "get", "pods", f"--namespace={release.namespace}", "-l", release.selector
        )["items"]
        ready = [
            p["metadata"]["name"]
            for p in pods
            if condition(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")
        ]
        return str(ready[0]) if len(ready) == 1 else None

    name: str = eventually(
        f"the operator Deployment {release.namespace}/{release.deployment} Available",
        ready_pod,
        timeout=timeout,
        interval=1,
    )
    return name
