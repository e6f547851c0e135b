"""NetworkPolicy enforcement on the cluster network, the part a network plugin plays.

One :class:`PolicyEnforcer` per kubelet process watches NetworkPolicies, Pods and Namespaces
(as ``e2e-network-policy``, bound to the ClusterRole ``ROLE`` that :func:`install` makes, as a
network plugin's service account is) and keeps, on the bridge side of every local pod's veth,
the ``tc`` filters :func:`e2e.kubelet.policy.tc_batch` derives from what the pod admits. Direct
pod-to-pod connections are judged there; connections through a ClusterIP arrive at the pod
from the bridge (the proxy's address, always admitted), so the proxy asks :meth:`admits` with
the client's own address before it connects (see :mod:`e2e.kubelet.services`).

The filters are brought up to date on every change seen and on a short period, which also
catches a pod whose veth was made after the last change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterable

from e2e.kubelet import netns
from e2e.kubelet.api import Api, ApiError, Json
from e2e.kubelet.policy import Pod, World, admits, allowed, tc_batch

log = logging.getLogger(__name__)

USER = "e2e-network-policy"
ROLE = "e2e:network-policy"
SWEEP_SECONDS = 2.0

Key = tuple[str, str]
LocalPods = Callable[[], Iterable[tuple[str, str, str]]]
"""(namespace, name, host-side veth) of every pod this kubelet runs with its network made."""


def rbac() -> list[tuple[str, Json]]:
    """(collection path, object) of the ClusterRole and its binding to ``USER``."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list", "watch"]},
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["networkpolicies"],
                "verbs": ["list", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    base = "/apis/rbac.authorization.k8s.io/v1"
    return [(f"{base}/clusterroles", role), (f"{base}/clusterrolebindings", binding)]


async def install(admin: Api) -> None:
    """The enforcer's permissions (an admin's request; kept if they exist already)."""
    for path, obj in rbac():
        try:
            await admin.request("POST", path, obj)
        except ApiError as exc:
            if exc.status != 409:
                raise


def _key(obj: Json) -> Key:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def run_tc(network: str, lines: list[str]) -> None:
    """Run ``lines`` as one ``tc -batch`` in ``network``; ``-force`` goes on past a line that
    fails (deleting filters that are not there)."""
    result = subprocess.run(
        ["tc", "-n", network, "-force", "-batch", "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and "Cannot find" not in result.stderr:
        log.info("tc in %s: %s", network, result.stderr.strip()[:500])


class PolicyEnforcer:
    """NetworkPolicies, Pods and Namespaces, and the filters derived from them."""

    def __init__(self, api: Api, network: netns.ClusterNetwork, local_pods: LocalPods) -> None:
        self.api = api
        self.network = network
        self.local_pods = local_pods
        self.policies: dict[Key, Json] = {}
        self.pods: dict[Key, Json] = {}
        self.namespaces: dict[Key, Json] = {}
        self._changed = asyncio.Event()
        self._synced = {name: asyncio.Event() for name in ("policies", "pods", "namespaces")}
        self._applied: dict[str, list[str]] = {}  # veth -> the batch last applied

    async def run(self) -> None:
        await asyncio.gather(
            self._follow("/apis/networking.k8s.io/v1/networkpolicies", self.policies, "policies"),
            self._follow("/api/v1/pods", self.pods, "pods"),
            self._follow("/api/v1/namespaces", self.namespaces, "namespaces"),
            self._keep_in_sync(),
        )

    async def wait_synced(self) -> None:
        for event in self._synced.values():
            await event.wait()

    async def _follow(self, path: str, store: dict[Key, Json], name: str) -> None:
        async for kind, obj in self.api.watch(path):
            if kind == "SYNC":
                store.clear()
                for item in obj["items"]:
                    store[_key(item)] = item
                self._synced[name].set()
            elif kind == "DELETED":
                store.pop(_key(obj), None)
            else:
                store[_key(obj)] = obj
            self._changed.set()

    def world(self) -> World:
        return World(
            policies=tuple(self.policies.values()),
            pods=tuple(Pod.from_api(p) for p in self.pods.values()),
            namespaces={
                name: dict(obj["metadata"].get("labels") or {})
                for (_, name), obj in self.namespaces.items()
            },
            node_ips=frozenset({netns.GATEWAY}),
        )

    def admits(self, source_ip: str, destination_ip: str, port: int) -> bool:
        """Whether the pod at ``source_ip`` may connect to ``destination_ip``:``port``; an
        address that is no pod's is not ours to judge."""
        world = self.world()
        destination = world.pod_at(destination_ip)
        return destination is None or admits(world, source_ip, destination, port)

    async def _keep_in_sync(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), SWEEP_SECONDS)
            self._changed.clear()
            if not all(e.is_set() for e in self._synced.values()):
                continue
            try:
                await self.sync()
            except Exception:
                log.exception("network policy sync failed")

    async def sync(self) -> None:
        """Bring every local pod's filters up to date (only those that changed are rewritten)."""
        world = self.world()
        by_key = {(p.namespace, p.name): p for p in world.pods}
        batch: list[str] = []
        seen: set[str] = set()
        for namespace, name, veth in self.local_pods():
            pod = by_key.get((namespace, name))
            if pod is None or not veth:
                continue
            seen.add(veth)
            allows = allowed(world, pod)
            if allows is None:
                if self._applied.pop(veth, None) is not None:
                    batch.extend(tc_batch(veth, None, self.network.blackhole))
                continue
            lines = tc_batch(veth, allows, self.network.blackhole)
            if self._applied.get(veth) != lines:
                batch.extend(lines)
                self._applied[veth] = lines
        for veth in set(self._applied) - seen:  # the pod is gone, and its veth with it
            del self._applied[veth]
        if batch:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, run_tc, self.network.name, batch)
