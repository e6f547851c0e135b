"""The process kubelet: nodes, their pods, cluster DNS, ClusterIPs and the volume provisioner.

:class:`Kubelet` runs in one asyncio loop. At start it creates the cluster network namespace,
issues one client certificate per node (``system:node:<name>``, group ``system:nodes``), one for
the service proxy (``system:kube-proxy``), one for the provisioner (``system:masters``) and one
for NetworkPolicy enforcement (``e2e-network-policy``, :mod:`e2e.kubelet.enforcer`), starts the
DNS responder, the service proxy and the enforcer, installs the StorageClass, registers the nodes,
serves the kubelet API the API server calls for ``kubectl logs/exec`` (:mod:`e2e.kubelet.server`,
HTTPS on loopback, one port for all nodes) and a small control API on loopback
(:mod:`e2e.kubelet.control`) for tests' faults.
Each node watches its own pods (``fieldSelector=spec.nodeName=<node>``) and runs one
:class:`~e2e.kubelet.pods.PodWorker` per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from e2e import pki
from e2e.kubelet import enforcer, netns
from e2e.kubelet.api import Api, Json
from e2e.kubelet.control import ControlServer
from e2e.kubelet.dns import DnsServer
from e2e.kubelet.enforcer import PolicyEnforcer, install
from e2e.kubelet.node import CAPACITY, CONTROL_ANNOTATION, KUBELET_ADDRESS, Node
from e2e.kubelet.pods import PodContext, PodWorker
from e2e.kubelet.provisioner import Provisioner
from e2e.kubelet.server import KubeletServer, tls_context
from e2e.kubelet.services import DNS_SERVICE_IP, ServiceView
from e2e.kubelet.watchdog import LoopWatchdog

log = logging.getLogger(__name__)

# How long each of the kubelet's servers may take to stop at shutdown (see ``serve``).
SERVER_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KubeletConfig:
    server: str
    ca: pki.KeyPair
    workdir: Path
    nodes: tuple[NodeSpec, ...]
    prefix: str
    domain: str = "cluster.local"
    backoff_base: float = 10.0
    # The kubelet API (e2e.kubelet.server): its port (0: any free one) and the users it serves
    # (the API server's kubelet client).
    server_port: int = 0
    apiserver_users: frozenset[str] = frozenset()


class IpPool:
    """Pod addresses of one node: ``10.244.<index>.2`` .. ``.254``."""

    def __init__(self, index: int) -> None:
        self.free = [f"10.244.{index}.{host}" for host in range(2, 255)]
        self.used: set[str] = set()

    def allocate(self) -> str:
        address = self.free.pop(0)
        self.used.add(address)
        return address

    def release(self, address: str) -> None:
        if address in self.used:
            self.used.discard(address)
            self.free.append(address)


class NodeAgent:
    """One node: its heartbeat and its pods."""

    def __init__(self, kubelet: Kubelet, spec: NodeSpec, index: int, api: Api) -> None:
        self.kubelet = kubelet
        annotations = {CONTROL_ANNOTATION: kubelet.control_url} if kubelet.control_url else {}
        self.node = Node(
            spec.name, api, dict(spec.labels), annotations, kubelet_port=kubelet.kubelet_port
        )
        self.api = api
        pool = IpPool(index)
        self.ctx = PodContext(
            node=spec.name,
            api=api,
            network=kubelet.network,
            services=kubelet.services,
            pods_dir=kubelet.config.workdir / "pods",
            domain=kubelet.config.domain,
            allocate_ip=pool.allocate,
            release_ip=pool.release,
            backoff_base=kubelet.config.backoff_base,
            allocatable=dict(CAPACITY),
        )
        self.workers: dict[str, PodWorker] = {}
        self._watch: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.node.name

    async def start(self) -> None:
        self.node.stopped = False
        await self.node.register()
        self._watch = asyncio.create_task(self._pods(), name=f"pods of {self.name}")

    async def stop(self) -> None:
        """Power off: no heartbeats, no pod processes, no reports."""
        self.node.stopped = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        workers = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(*(w.abandon() for w in workers))

    async def _pods(self) -> None:
        params = {"fieldSelector": f"spec.nodeName={self.name}"}
        async for kind, obj in self.api.watch("/api/v1/pods", params):
            if kind == "SYNC":
                present = {p["metadata"]["uid"]: p for p in obj["items"]}
                for uid in list(self.workers):
                    if uid not in present:
                        await self._gone(uid)
                for pod in present.values():
                    self._seen(pod)
            elif kind == "DELETED":
                await self._gone(obj["metadata"]["uid"])
            else:
                self._seen(obj)

    def _seen(self, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        worker = PodWorker(self.ctx, pod)
        self.workers[uid] = worker
        worker.update(pod)  # already being deleted: the worker goes straight to its end
        worker.start()
        assert worker.task is not None

        def forget(_: object, worker: PodWorker = worker) -> None:
            if self.workers.get(uid) is worker:
                del self.workers[uid]

        worker.task.add_done_callback(forget)

    async def _gone(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        if worker is not None:
            await worker.deleted()


class Kubelet:
    """Everything the process kubelet runs."""

    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.network = netns.ClusterNetwork(config.prefix)
        self.services: ServiceView
        self.enforcer: PolicyEnforcer
        self.nodes: dict[str, NodeAgent] = {}
        self._apis: list[Api] = []
        self._dns: DnsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The control API's URL and the kubelet API's port, announced on the Nodes; set before
        # start().
        self.control_url = ""
        self.kubelet_port = 0

    def _api(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Api:
        pair = pki.issue(self.config.ca, name, user, organizations=groups)
        api = Api(self.config.server, self.config.ca.cert, pair.cert, pair.key)
        self._apis.append(api)
        return api

    @property
    def apiserver(self) -> tuple[str, int]:
        host, _, port = self.config.server.removeprefix("https://").rpartition(":")
        return host, int(port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        (self.config.workdir / "pods").mkdir(parents=True, exist_ok=True)
        await loop.run_in_executor(None, self.network.create)
        proxy_api = await loop.run_in_executor(None, self._api, "kube-proxy", "system:kube-proxy")
        self.services = ServiceView(
            proxy_api, self.network.name, self.apiserver, self.config.domain
        )
        self._tasks.append(asyncio.create_task(self.services.run(), name="services"))
        await self._start_dns()
        provisioner_api = await loop.run_in_executor(
            None, self._api, "e2e-provisioner", "e2e-provisioner", ("system:masters",)
        )
        provisioner = Provisioner(provisioner_api, self.config.workdir / "volumes")
        await provisioner.install()
        self._tasks.append(asyncio.create_task(provisioner.run(), name="provisioner"))
        await install(provisioner_api)
        policy_api = await loop.run_in_executor(None, self._api, "network-policy", enforcer.USER)
        self.enforcer = PolicyEnforcer(policy_api, self.network, self._local_pods)
        self.services.admits = self.enforcer.admits
        self._tasks.append(asyncio.create_task(self.enforcer.run(), name="network policy"))
        await self.services.wait_synced()
        await self.enforcer.wait_synced()
        for index, spec in enumerate(self.config.nodes, start=1):
            api = await loop.run_in_executor(
                None,
                self._api,
                f"kubelet-{spec.name}",
                f"system:node:{spec.name}",
                ("system:nodes",),
            )
            agent = NodeAgent(self, spec, index, api)
            self.nodes[spec.name] = agent
            await agent.start()
            self._tasks.append(asyncio.create_task(agent.node.heartbeat(), name=spec.name))

    async def _start_dns(self) -> None:
        udp = await netns.socket_in(self.network.name, socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((DNS_SERVICE_IP, 53))
        udp.setblocking(False)
        tcp = await netns.socket_in(self.network.name)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((DNS_SERVICE_IP, 53))
        tcp.listen(64)
        tcp.setblocking(False)
        self._dns = DnsServer(self.services.lookup)
        await self._dns.start(udp, tcp)

    def _local_pods(self) -> list[tuple[str, str, str]]:
        """(namespace, name, veth) of the pods running here with their network made."""
        return [
            (w.namespace, w.name, w.veth)
            for a in self.nodes.values()
            for w in a.workers.values()
            if w.veth and not w.finished
        ]

    def worker(self, namespace: str, name: str) -> PodWorker:
        for agent in self.nodes.values():
            for worker in agent.workers.values():
                if worker.namespace == namespace and worker.name == name and not worker.finished:
                    return worker
        raise KeyError(f"no pod {namespace}/{name} runs here")

    def pods(self) -> list[Json]:
        return [w.info() for a in self.nodes.values() for w in a.workers.values()]

    async def shutdown(self) -> None:
        """Stop every pod's processes (no API calls), then remove every namespace made."""
        for task in self._tasks:
            task.cancel()
        for agent in self.nodes.values():
            with contextlib.suppress(Exception):
                await agent.stop()
        if self._dns is not None:
            self._dns.close()
        with contextlib.suppress(AttributeError):
            self.services.close()
        try:
            for api in self._apis:
                await api.close()
        finally:
            # Whatever failed above, the namespaces go: the handle reports any left behind.
            self.network.destroy()
            shutil.rmtree(self.config.workdir / "pods", ignore_errors=True)


def valid_prefix(prefix: str) -> str:
    """Names are ``<prefix>v<n>`` for veths: keep room in Linux's 15 characters."""
    if not prefix.isalnum() or len(prefix) > 6:
        raise ValueError("prefix: up to 6 letters or digits")
    return prefix


def serving_certificate(config: KubeletConfig) -> pki.KeyPair:
    """The kubelet API's certificate, for every name the API server may dial it by."""
    hosts = (KUBELET_ADDRESS, "localhost", *(spec.name for spec in config.nodes))
    return pki.issue(
        config.ca, "kubelet-serving", "e2e-kubelet", client=False, server=True, hosts=hosts
    )


async def serve(config: KubeletConfig, control_port: int, state_file: Path) -> None:
    """Run until SIGTERM/SIGINT; write ``state_file`` once everything is up."""
    kubelet = Kubelet(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Every pod's traffic runs on this loop: if it blocks, say where (a stall seen from the
    # scenarios is otherwise a silent minute).
    watchdog = LoopWatchdog(loop)
    watchdog.start()
    control = ControlServer(kubelet)
    serving = await loop.run_in_executor(None, serving_certificate, config)
    server = KubeletServer(
        kubelet, tls_context(serving.cert, serving.key, config.ca.cert), config.apiserver_users
    )
    try:
        # Both servers first: the Nodes announce them (they answer "no such pod" until the nodes
        # run pods).
        url = await control.start(control_port)
        kubelet.control_url = url
        kubelet.kubelet_port = await server.start(config.server_port)
        await kubelet.start()
        state = {
            "control": url,
            "server": f"https://{KUBELET_ADDRESS}:{kubelet.kubelet_port}",
            "prefix": config.prefix,
            "pid": os.getpid(),
        }
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state) + "\n")
        tmp.replace(state_file)
        log.info(
            "kubelet up: nodes %s, control %s, kubelet API %s",
            ", ".join(kubelet.nodes), url, state["server"],
        )  # fmt: skip
        await stop.wait()
    finally:
        # Each server's stop is bounded: a connection that does not end (a kept-alive one of
        # the API server, a follower) must not keep the pods running and the namespaces made
        # until the handle's grace runs out and it kills the kubelet before it cleaned up.
        for what, stop_server in (("kubelet API", server.stop), ("control API", control.stop)):
            try:
                async with asyncio.timeout(SERVER_STOP_SECONDS):
                    await stop_server()
            except TimeoutError:
                log.warning("the %s did not stop within %gs", what, SERVER_STOP_SECONDS)
            except Exception:
                log.exception("stopping the %s failed", what)
        await kubelet.shutdown()
        watchdog.stop()
