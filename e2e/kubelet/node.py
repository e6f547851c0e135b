"""One Node object: registration, its Lease and its status, renewed like a kubelet does.

The node registers itself with its own credentials (``system:node:<name>`` in ``system:nodes``),
so NodeRestriction allows it to create and update exactly its Node and its Lease in
``kube-node-lease``. Every ``HEARTBEAT`` seconds it renews the Lease and reports the Ready
condition with capacity/allocatable; a stopped node does neither, and the node-lifecycle
controller marks it NotReady/unreachable after its grace period, as for a real node going dark.

The status also tells the API server where the node's kubelet API is (``kubectl logs/exec``):
address ``InternalIP 127.0.0.1`` (first in the control plane's
``--kubelet-preferred-address-types``; a ``Hostname`` address, the node's name, resolves
nowhere) and ``daemonEndpoints.kubeletEndpoint.Port``, the port of :mod:`e2e.kubelet.server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from e2e.kubelet.api import Api, ApiError, Json

log = logging.getLogger(__name__)

HEARTBEAT = 10.0
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.34.0-e2e"
CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
# On every Node of the process kubelet: its control API's URL, so that tests given only a
# kubeconfig (``pytest e2e --kubeconfig``) can exec in pods and inject faults through it.
CONTROL_ANNOTATION = "e2e.pyetcd.io/kubelet-control"
# Where the API server reaches the kubelet API of every node of the process.
KUBELET_ADDRESS = "127.0.0.1"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass
class Node:
    """A registered node and its heartbeat."""

    name: str
    api: Api
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    kubelet_port: int = 0  # the kubelet API's port; 0: none (the API server cannot reach it)
    stopped: bool = False
    uid: str = ""
    _since: str = field(default_factory=now)

    def manifest(self) -> Json:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": dict(self.annotations),
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **self.labels,
                },
            },
        }

    def status(self) -> Json:
        heartbeat = now()

        def condition(kind: str, status: str, reason: str, message: str) -> Json:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": self._since,
            }

        addresses = [{"type": "Hostname", "address": self.name}]
        endpoints: Json = {}
        if self.kubelet_port:
            addresses.insert(0, {"type": "InternalIP", "address": KUBELET_ADDRESS})
            endpoints = {"kubeletEndpoint": {"Port": self.kubelet_port}}
        return {
            "status": {
                "capacity": dict(CAPACITY),
                "allocatable": dict(CAPACITY),
                "addresses": addresses,
                "daemonEndpoints": endpoints,
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                    condition("Ready", "True", "KubeletReady", "e2e process kubelet is posting"),
                ],
                "nodeInfo": {
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "e2e-process://1",
                    "kernelVersion": "",
                    "osImage": "pyetcd e2e",
                    "machineID": self.name,
                    "systemUUID": self.name,
                    "bootID": self._since,
                },
            }
        }

    async def register(self) -> None:
        try:
            created = await self.api.request("POST", "/api/v1/nodes", self.manifest())
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Registered by an earlier run: this run's annotations (its control URL) win.
            created = await self.api.patch_merge(
                f"/api/v1/nodes/{self.name}", {"metadata": {"annotations": self.annotations}}
            )
        self.uid = created["metadata"]["uid"]
        await self.beat()

    async def beat(self) -> None:
        await self.api.patch_merge(f"/api/v1/nodes/{self.name}/status", self.status())
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        try:
            await self.api.patch_merge(path, {"spec": {"renewTime": micro_now()}})
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
                    ],
                },
                "spec": {
                    "holderIdentity": self.name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": micro_now(),
                },
            }
            await self.api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
            )

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            if self.stopped:
                continue
            try:
                await self.beat()
            except Exception as exc:  # keep beating through API hiccups
                log.warning("heartbeat of %s failed: %s", self.name, exc)
