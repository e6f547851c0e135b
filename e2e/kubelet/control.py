"""The kubelet's control API for tests, on loopback: pod listing, exec and fault injection.

``GET /pods`` lists what runs (pids, addresses, namespaces, volume directories);
``POST /exec`` runs a command inside a pod; ``POST /faults/...`` injects the faults of
:mod:`e2e.kubelet.faults`. JSON in, JSON out. Never exposed beyond 127.0.0.1.

What the server needs from the kubelet is :class:`KubeletView`, defined here, so that this module
does not import :mod:`e2e.kubelet.kubelet` (which starts this server).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from e2e.kubelet.api import Json
from e2e.kubelet.netns import ClusterNetwork
from e2e.kubelet.pods import PodWorker


class NodeSwitch(Protocol):
    """One node as the faults see it: it can be powered off and on."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class KubeletView(Protocol):
    """What the control API reads and drives of the kubelet (:class:`~e2e.kubelet.kubelet.Kubelet`
    satisfies it)."""

    @property
    def nodes(self) -> Mapping[str, NodeSwitch]: ...

    @property
    def network(self) -> ClusterNetwork: ...

    def worker(self, namespace: str, name: str) -> PodWorker: ...

    def pods(self) -> list[Json]: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


class ControlServer:
    def __init__(self, kubelet: KubeletView) -> None:
        self.kubelet = kubelet
        self._runner: web.AppRunner | None = None

    async def start(self, port: int) -> str:
        app = web.Application(middlewares=[self._errors])
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/pods", self._pods),
                web.post("/exec", self._exec),
                web.post("/faults/kill", self._kill),
                web.post("/faults/wipe", self._wipe),
                web.post("/faults/network", self._network),
                web.post("/faults/node", self._node),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        return f"http://127.0.0.1:{bound}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except KeyError as exc:
            return _json({"error": str(exc)}, 404)
        except (ValueError, OSError, TimeoutError) as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        except RuntimeError as exc:  # e.g. exec into a pod whose sandbox is not made yet
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 409)

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"nodes": list(self.kubelet.nodes)})

    async def _pods(self, request: web.Request) -> web.Response:
        return _json(self.kubelet.pods())

    async def _exec(self, request: web.Request) -> web.Response:
        body = await request.json()
        worker = self.kubelet.worker(body["namespace"], body["name"])
        container = body.get("container") or worker.containers[0].name
        code, out, err = await worker.exec(
            container, list(body["argv"]), float(body.get("timeout", 30))
        )
        return _json({"code": code, "stdout": out, "stderr": err})

    async def _kill(self, request: web.Request) -> web.Response:
        body = await request.json()
        worker = self.kubelet.worker(body["namespace"], body["name"])
        container = worker.container(body.get("container") or worker.containers[0].name)
        process = container.process
        if process is None or process.returncode is not None:
            raise ValueError(f"container {container.name} is not running")
        os.killpg(process.pid, signal.Signals[body.get("signal", "SIGKILL")])
        return _json({"pid": process.pid, "restartCount": container.restart_count})

    async def _wipe(self, request: web.Request) -> web.Response:
        body = await request.json()
        worker = self.kubelet.worker(body["namespace"], body["name"])
        directory = worker.volumes[body["volume"]]
        removed = 0
        for entry in list(Path(directory).iterdir()):  # noqa: ASYNC240 - a few entries
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        return _json({"path": str(directory), "removed": removed})

    async def _network(self, request: web.Request) -> web.Response:
        body = await request.json()
        worker = self.kubelet.worker(body["namespace"], body["name"])
        await self.kubelet.network.set_link(worker.veth, bool(body["up"]))
        return _json({"veth": worker.veth, "up": bool(body["up"])})

    async def _node(self, request: web.Request) -> web.Response:
        body = await request.json()
        agent = self.kubelet.nodes[body["node"]]
        if body["up"]:
            await agent.start()
        else:
            await agent.stop()
        return _json({"node": agent.name, "up": bool(body["up"])})
