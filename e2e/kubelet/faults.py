"""The test side of the kubelet: start/stop the process, exec in pods, inject faults.

:class:`KubeletHandle` starts ``python -m e2e.kubelet`` as a child process (like the control
plane's components: own session, SIGKILL if the parent dies), waits for its state file, and
talks to its control API. Stopping it sends SIGTERM (it stops every pod and removes its
namespaces), then SIGKILL after a grace period; whatever namespace of its prefix is left after
that is deleted here, so nothing outlives a run, also when the kubelet crashed.

:class:`KubeletControl` is the control API alone, for a kubelet started elsewhere (``make demo``,
or the cluster of ``pytest e2e --kubeconfig``): :meth:`KubeletControl.of_cluster` finds it
through the annotation the kubelet puts on its Nodes.

Faults: :meth:`kill` a container's process (it restarts per restartPolicy), :meth:`wipe` a
volume's contents, :meth:`stop_node`/:meth:`start_node` (heartbeats and processes),
:meth:`cut`/:meth:`plug` a pod's network (its veth down/up).
"""

from __future__ import annotations

import json
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.controlplane import ControlPlane, Process, wait_until
from e2e.kube import ExecResult, Kubectl
from e2e.kubelet import netns
from e2e.kubelet.node import CONTROL_ANNOTATION

ROOT = Path(__file__).resolve().parent.parent.parent

__all__ = ["ExecResult", "KubeletControl", "KubeletHandle"]


class KubeletControl:
    """The control API of a running process kubelet (``control``: its base URL)."""

    control: str

    def __init__(self, control: str) -> None:
        self.control = control

    @staticmethod
    def of_cluster(kubectl: Kubectl) -> KubeletControl | None:
        """The process kubelet that runs the cluster's nodes, if that is what runs them."""
        nodes = kubectl.json("get", "nodes")["items"]
        urls = {(n["metadata"].get("annotations") or {}).get(CONTROL_ANNOTATION) for n in nodes}
        if len(urls) != 1 or None in urls:
            return None  # real kubelets (or a mix): use kubectl exec
        (url,) = urls
        return KubeletControl(str(url))

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.control + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"kubelet {path}: {exc.code} {exc.read().decode()}") from exc

    def pods(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/pods")
        return result

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        for pod in self.pods():
            if pod["namespace"] == namespace and pod["name"] == name:
                return pod
        return None

    def exec(
        self,
        namespace: str,
        name: str,
        argv: list[str],
        container: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        """Run ``argv`` (as the pod's image names it) inside the pod."""
        body = {
            "namespace": namespace,
            "name": name,
            "container": container,
            "argv": argv,
            "timeout": timeout,
        }
        reply = self._call("POST", "/exec", body, timeout=timeout + 10)
        return ExecResult(int(reply["code"]), reply["stdout"], reply["stderr"])

    def kill(
        self, namespace: str, name: str, container: str | None = None, signal: str = "SIGKILL"
    ) -> int:
        """Signal a container's processes; returns the pid that was signalled."""
        body = {"namespace": namespace, "name": name, "container": container, "signal": signal}
        return int(self._call("POST", "/faults/kill", body)["pid"])

    def wipe(self, namespace: str, name: str, volume: str) -> Path:
        """Delete everything in a pod's volume (the directory itself stays)."""
        body = {"namespace": namespace, "name": name, "volume": volume}
        return Path(self._call("POST", "/faults/wipe", body)["path"])

    def cut(self, namespace: str, name: str) -> None:
        """Cut a pod off the network (its veth down)."""
        self._call("POST", "/faults/network", {"namespace": namespace, "name": name, "up": False})

    def plug(self, namespace: str, name: str) -> None:
        self._call("POST", "/faults/network", {"namespace": namespace, "name": name, "up": True})

    def stop_node(self, node: str) -> None:
        """Stop a node: no more heartbeats, its pods' processes killed."""
        self._call("POST", "/faults/node", {"node": node, "up": False})

    def start_node(self, node: str) -> None:
        self._call("POST", "/faults/node", {"node": node, "up": True})


@dataclass
class KubeletHandle(KubeletControl):
    """A running process kubelet attached to a control plane."""

    plane: ControlPlane
    workdir: Path
    backoff: float = 1.0
    start_timeout: float = 60.0
    prefix: str = field(default_factory=lambda: "k" + secrets.token_hex(2))
    # ``--nodes`` of ``python -m e2e.kubelet``; None: its default (node-a..c SSD, node-d).
    nodes: str | None = None
    process: Process | None = None
    control: str = ""
    leftovers: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.plane.log_dir / "kubelet.log"

    def start(self) -> KubeletHandle:
        state = self.workdir / "kubelet.json"
        state.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "e2e.kubelet", str(self.plane.workdir), str(self.workdir),
            f"--prefix={self.prefix}", f"--backoff={self.backoff}",
        ]  # fmt: skip
        if self.nodes is not None:
            argv.append(f"--nodes={self.nodes}")
        self.process = Process("kubelet", argv, self.log_path)
        try:
            self.process.start()
            wait_until(
                "the kubelet's state file",
                state.exists,
                self.start_timeout,
                alive=self.process.check_alive,
            )
            self.control = json.loads(state.read_text())["control"]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the kubelet; ``leftovers`` lists the namespaces it failed to remove itself."""
        try:
            if self.process is not None:
                self.process.stop(grace=30.0)
        finally:
            self.leftovers = self.namespaces()
            netns.delete_all(self.prefix)

    def __enter__(self) -> KubeletHandle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def namespaces(self) -> list[str]:
        """Network namespaces of this kubelet that exist now."""
        return netns.list_netns(self.prefix)
