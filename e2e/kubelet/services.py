"""Services as pods see them: cluster DNS names and ClusterIPs (the kube-proxy + CoreDNS part).

One :class:`ServiceView` per kubelet process watches Services and EndpointSlices (as
``system:kube-proxy``, the identity the default ``system:node-proxier`` binding serves) and:

- answers DNS (:mod:`e2e.kubelet.dns`) like CoreDNS's kubernetes plugin:
  ``<svc>.<ns>.svc.<domain>`` -> the ClusterIP, or for a headless Service the addresses of its
  ready endpoints (an EndpointSlice marks every endpoint ready when the Service has
  ``publishNotReadyAddresses``); ``<hostname>.<svc>.<ns>.svc.<domain>`` -> that endpoint (the
  StatefulSet pods' stable names); ``a-b-c-d.<ns>.pod.<domain>`` -> ``a.b.c.d``;
- proxies each ClusterIP port in user space: a listener on ``clusterIP:port`` in the cluster
  network namespace forwards every connection to a ready endpoint (``targetPort`` as resolved in
  the slice), and the ``kubernetes`` Service's ClusterIP to the real API server on loopback;
  a connection whose client NetworkPolicy does not admit to the chosen endpoint is closed
  (``admits``, set by :mod:`e2e.kubelet.enforcer`).

A Service annotated ``e2e.pyetcd.io/host-port: "<port>"`` stands for a server of the test harness
on the host's loopback (the S3 server of the backup scenarios and the demo): its ClusterIP ports
forward to ``127.0.0.1:<port>`` on the host, as the ``kubernetes`` Service does to the API
server. In a real cluster the same Service would be a selectorless one in front of an external
endpoint; the API server refuses loopback endpoints, hence the annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from typing import Any

from e2e.kubelet import netns
from e2e.kubelet.api import Api, Json

log = logging.getLogger(__name__)

DNS_SERVICE_IP = "10.96.0.10"
KUBERNETES_SERVICE_IP = "10.96.0.1"
HOST_PORT_ANNOTATION = "e2e.pyetcd.io/host-port"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Key = tuple[str, str]


def _key(obj: Json) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy both ways until both sides are done, then close both."""
    try:
        await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))
    finally:
        for writer in (a[1], b[1]):
            writer.close()


class ServiceView:
    """Services and EndpointSlices, the DNS answers and the ClusterIP proxies derived from them."""

    def __init__(self, api: Api, network: str, apiserver: tuple[str, int], domain: str) -> None:
        self.api = api
        self.network = network
        self.apiserver = apiserver
        self.domain = domain
        self.services: dict[Key, Json] = {}
        self.slices: dict[Key, Json] = {}
        self._listeners: dict[tuple[str, int], asyncio.Server] = {}
        self._synced = asyncio.Event()
        self._slices_synced = asyncio.Event()
        self._changed = asyncio.Event()
        # Each proxied connection's task, held until it ends: the stream protocol lets go of
        # its handler's task once the client's side closes (asyncio's StreamReaderProtocol),
        # and a task nothing holds is collected while pending ("Task was destroyed but it is
        # pending!", some 1,200 per CI run), leaving its upstream connection open and unfinished.
        self._connections: set[asyncio.Task[Any]] = set()
        # (client address, backend address, port) -> whether NetworkPolicy admits the client:
        # the backend sees the connection come from the proxy, so the proxy judges it.
        self.admits: Callable[[str, str, int], bool] = lambda source, host, port: True

    # -- watching ----------------------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.gather(
            self._follow("/api/v1/services", self.services, self._synced),
            self._follow(
                "/apis/discovery.k8s.io/v1/endpointslices", self.slices, self._slices_synced
            ),
            self._reconcile_listeners(),
        )

    async def wait_synced(self) -> None:
        await self._synced.wait()
        await self._slices_synced.wait()

    async def _follow(self, path: str, store: dict[Key, Json], synced: asyncio.Event) -> None:
        async for kind, obj in self.api.watch(path):
            if kind == "SYNC":
                store.clear()
                for item in obj["items"]:
                    store[_key(item)] = item
                synced.set()
            elif kind == "DELETED":
                store.pop(_key(obj), None)
            else:
                store[_key(obj)] = obj
            self._changed.set()

    # -- DNS ---------------------------------------------------------------------------------------

    def endpoints(self, namespace: str, service: str) -> list[Json]:
        """Ready endpoints of a Service, each with the slice's ``ports``, sorted by address."""
        found: list[Json] = []
        for (ns, _), piece in self.slices.items():
            labels = piece["metadata"].get("labels") or {}
            if ns != namespace or labels.get(SERVICE_NAME_LABEL) != service:
                continue
            if piece.get("addressType") != "IPv4":
                continue
            for endpoint in piece.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                found.append({**endpoint, "ports": piece.get("ports") or []})
        return sorted(found, key=lambda e: e["addresses"][0])

    def lookup(self, name: str) -> list[str] | None:
        """A records of ``name`` (lower-case, no trailing dot); None for NXDOMAIN."""
        svc_suffix, pod_suffix = f".svc.{self.domain}", f".pod.{self.domain}"
        if name.endswith(pod_suffix):
            parts = name.removesuffix(pod_suffix).split(".")
            if len(parts) != 2:
                return None
            try:
                return [str(ipaddress.IPv4Address(parts[0].replace("-", ".")))]
            except ValueError:
                return None
        if not name.endswith(svc_suffix):
            return None
        parts = name.removesuffix(svc_suffix).split(".")
        if len(parts) == 2:
            service, namespace = parts
            svc = self.services.get((namespace, service))
            if svc is None:
                return None
            cluster_ip = svc["spec"].get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                return [cluster_ip]
            return [e["addresses"][0] for e in self.endpoints(namespace, service)]
        if len(parts) == 3:
            host, service, namespace = parts
            if (namespace, service) not in self.services:
                return None
            matches = [
                e["addresses"][0]
                for e in self.endpoints(namespace, service)
                if e.get("hostname") == host
            ]
            return matches or None
        return None

    def service_env(self, namespace: str) -> dict[str, str]:
        """Docker-link style variables of the namespace's Services (``enableServiceLinks``)."""
        env: dict[str, str] = {}
        for (ns, name), svc in sorted(self.services.items()):
            cluster_ip = svc["spec"].get("clusterIP")
            if ns != namespace or not cluster_ip or cluster_ip == "None":
                continue
            prefix = name.upper().replace("-", "_")
            ports = svc["spec"].get("ports") or []
            if not ports:
                continue
            env[f"{prefix}_SERVICE_HOST"] = cluster_ip
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            env[f"{prefix}_PORT"] = f"tcp://{cluster_ip}:{ports[0]['port']}"
            for port in ports:
                proto = port.get("protocol", "TCP")
                base = f"{prefix}_PORT_{port['port']}_{proto}"
                env[base] = f"{proto.lower()}://{cluster_ip}:{port['port']}"
                env[f"{base}_PROTO"] = proto.lower()
                env[f"{base}_PORT"] = str(port["port"])
                env[f"{base}_ADDR"] = cluster_ip
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                        port["port"]
                    )
        return env

    # -- ClusterIP proxy ---------------------------------------------------------------------------

    def _wanted(self) -> dict[tuple[str, int], tuple[Key, dict[str, Any]]]:
        wanted: dict[tuple[str, int], tuple[Key, dict[str, Any]]] = {}
        for key, svc in self.services.items():
            cluster_ip = svc["spec"].get("clusterIP")
            if not cluster_ip or cluster_ip == "None":
                continue
            for port in svc["spec"].get("ports") or []:
                if port.get("protocol", "TCP") == "TCP":
                    wanted[(cluster_ip, int(port["port"]))] = (key, port)
        return wanted

    async def _reconcile_listeners(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            wanted = self._wanted()
            for address in list(self._listeners):
                if address not in wanted:
                    self._listeners.pop(address).close()
            for address, (key, port) in wanted.items():
                if address in self._listeners:
                    continue
                try:
                    self._listeners[address] = await self._listen(address, key, port)
                except OSError as exc:
                    log.warning("cannot proxy %s:%s: %s", *address, exc)

    async def _listen(
        self, address: tuple[str, int], key: Key, port: dict[str, Any]
    ) -> asyncio.Server:
        sock = await netns.socket_in(self.network)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)
            await self._forward(key, port, (reader, writer))

        return await asyncio.start_server(handle, sock=sock)

    async def _forward(
        self,
        key: Key,
        port: dict[str, Any],
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        annotations = (self.services.get(key) or {}).get("metadata", {}).get("annotations") or {}
        host_port = annotations.get(HOST_PORT_ANNOTATION)
        try:
            if key == ("default", "kubernetes"):
                upstream = await asyncio.wait_for(asyncio.open_connection(*self.apiserver), 10)
            elif host_port:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", int(host_port)), 10
                )
            else:
                targets = [
                    (e["addresses"][0], int(p["port"]))
                    for e in self.endpoints(*key)
                    for p in e["ports"]
                    if (p.get("name") or "") == (port.get("name") or "")
                    and p.get("protocol", "TCP") == "TCP"
                ]
                if not targets:
                    client[1].close()
                    return
                host, target_port = random.choice(targets)
                peer = client[1].get_extra_info("peername")
                if peer is not None and not self.admits(peer[0], host, target_port):
                    # Refused as a policy-dropped SYN would be, though sooner: closed.
                    log.info(
                        "proxy %s/%s: NetworkPolicy refuses %s to %s:%s",
                        *key, peer[0], host, target_port,
                    )  # fmt: skip
                    client[1].close()
                    return
                upstream = await netns.open_connection_in(self.network, host, target_port, 10)
        except (OSError, TimeoutError) as exc:
            log.info("proxy %s/%s: %s", *key, exc)
            client[1].close()
            return
        await splice(client, upstream)

    def close(self) -> None:
        for server in self._listeners.values():
            server.close()
        self._listeners.clear()
        with contextlib.suppress(Exception):
            self._changed.set()
