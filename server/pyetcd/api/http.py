"""etcd's plain HTTP endpoints on the client port: /health, /livez, /readyz, /version, /metrics,
and the JSON gateway's /v3/ paths (``gateway``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pyetcd import __version__
from pyetcd.api.gateway import Gateway
from pyetcd.panic import panic_on_invariant
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.v3api import CLUSTER_VERSION, HealthSource

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HEALTH_TIMEOUT = 1.0  # etcd gives the health probe's read one second


class HttpEndpoints:
    def __init__(self, server: HealthSource, gateway: Gateway | None = None) -> None:
        self.server = server
        self.gateway = gateway

    async def handle(
        self,
        method: str,
        target: str,
        request_body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, bytes | AsyncIterator[bytes]]:
        url = urlsplit(target)
        path = url.path
        if self.gateway is not None and self.gateway.serves(path):
            return await self.gateway.handle(method, path, request_body, headers or {})
        query = parse_qs(url.query)
        if path not in ("/health", "/livez", "/readyz", "/version", "/metrics"):
            return 404, TEXT, b"404 page not found\n"
        if method != "GET":
            return 405, TEXT, b"Method Not Allowed\n"
        if path == "/version":
            body = {"etcdserver": __version__, "etcdcluster": CLUSTER_VERSION}
            return 200, JSON, json.dumps(body, separators=(",", ":")).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.server.metrics.registry)
        serializable = query.get("serializable", ["false"])[-1] == "true"
        ok, reason = await self._check(query.get("exclude", []), serializable)
        if path == "/health":
            body = {"health": "true" if ok else "false", "reason": reason}
            return (200 if ok else 503), JSON, json.dumps(body, separators=(",", ":")).encode()
        return (200, TEXT, b"ok\n") if ok else (503, TEXT, (reason + "\n").encode())

    async def _check(self, exclude: list[str], serializable: bool) -> tuple[bool, str]:
        excluded = {e.upper() for e in exclude}
        for _, alarm in sorted(self.server.alarms):
            name = rpc_pb2.AlarmType.Name(alarm)  # type: ignore[arg-type]
            if name not in excluded:
                return False, f"ALARM {name}"
        if self.server.lead == 0:
            return False, "RAFT NO LEADER"
        try:
            # etcd 3.5 probes with a keys-only Range of one key, as the client would.
            req = rpc_pb2.RangeRequest(
                key=b"health", keys_only=True, limit=1, serializable=serializable
            )
            await asyncio.wait_for(self.server.range_linearizable(req), HEALTH_TIMEOUT)
        except TimeoutError:
            return False, "RANGE ERROR:context deadline exceeded"
        except Exception as exc:
            if exc in (errors.ErrUserEmpty, errors.ErrPermissionDenied):
                # The probe has no user: with auth on, etcd's checkV3Health counts these
                # refusals as a member that answers (a probe holds no password).
                return True, ""
            panic_on_invariant(exc, "the /health probe")
            return False, f"RANGE ERROR:{exc}"
        return True, ""
