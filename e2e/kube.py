"""Drive the cluster the way users do: the real ``kubectl`` (``.tools/bin``), plus polling helpers.

Everything here works against any kubeconfig, so the scenarios also run against an existing
cluster (``pytest e2e --kubeconfig=PATH``). Running a command inside a pod is :class:`PodExec`:
``kubectl exec`` on a real cluster (:class:`KubectlExec`), the process kubelet's control API
on the e2e control plane (``e2e.kubelet.faults``): one hop, no API server in the way (``kubectl
exec`` works there too, and ``test_kubelet.py`` checks that it does).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Json = dict[str, Any]


@dataclass(frozen=True)
class ExecResult:
    code: int
    stdout: str
    stderr: str


class PodExec(Protocol):
    """Runs a command inside a pod's container, as the pod's image names it."""

    def exec(
        self,
        namespace: str,
        name: str,
        argv: list[str],
        container: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult: ...


def condition(obj: Json, kind: str) -> str | None:
    """The status (``"True"``, ``"False"``, ``"Unknown"``) of condition ``kind``, else None."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return str(item["status"])
    return None


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
        self.result = result


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path
    timeout: float = 60.0

    def run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=self.timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str | dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.run("apply", "-f", "-", *args, input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Any:
        ns = [f"--namespace={namespace}"] if namespace else []
        return self.json("get", kind, name, *ns)

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        ns = [f"--namespace={namespace}"] if namespace else []
        result = self.run("get", kind, name, *ns, "--ignore-not-found", "-o", "name", check=False)
        if result.returncode != 0:
            raise KubectlError(["get", kind, name, *ns], result)
        return bool(result.stdout.strip())


def eventually(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class KubectlExec:
    """:class:`PodExec` through ``kubectl exec`` (a cluster with real kubelets)."""

    kubectl: Kubectl

    def exec(
        self,
        namespace: str,
        name: str,
        argv: list[str],
        container: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        which = [f"--container={container}"] if container else []
        args = ["exec", f"--namespace={namespace}", name, *which, "--", *argv]
        command = [str(self.kubectl.binary), f"--kubeconfig={self.kubectl.kubeconfig}", *args]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"kubectl {' '.join(args)}: no answer in {timeout:.0f}s") from exc
        return ExecResult(result.returncode, result.stdout, result.stderr)
