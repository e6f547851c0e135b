"""A small asyncio client of the Kubernetes API: JSON requests and watches over HTTPS (aiohttp).

Each identity (a node, the service proxy, the provisioner) gets its own :class:`Api` with its own
client certificate, so the API server's Node authoriser and NodeRestriction see the requests
exactly as they would see a real kubelet's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

Json = dict[str, Any]
log = logging.getLogger(__name__)


class ApiError(RuntimeError):
    """A request the API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status = status


class Api:
    """One identity's connection to the API server."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self._context = context
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._context, limit=20)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        seconds: float = 30.0,
    ) -> Json:
        session = await self.session()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(method, path, response.status, text)
            result: Json = json.loads(text) if text else {}
            return result

    async def get(self, path: str, params: dict[str, str] | None = None) -> Json:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Json | None:
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_merge(self, path: str, body: Json) -> Json:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def watch(
        self, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[str, Json]]:
        """List, then watch ``path`` forever: yields ("SYNC", list) then (type, object) events.

        On a dropped or expired watch it lists again and yields a fresh "SYNC" with every
        object, so consumers can reconcile from scratch.
        """
        base = dict(params or {})
        while True:
            try:
                listing = await self.get(path, base)
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("list %s failed: %s", path, exc)
                await asyncio.sleep(1.0)
                continue
            version = listing["metadata"].get("resourceVersion", "")
            yield "SYNC", listing
            try:
                async for kind, obj in self._watch_from(path, base, version):
                    yield kind, obj
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.info("watch %s ended: %s", path, exc)
                await asyncio.sleep(0.2)

    async def _watch_from(
        self, path: str, params: dict[str, str], version: str
    ) -> AsyncIterator[tuple[str, Json]]:
        session = await self.session()
        while True:
            query = {
                **params,
                "watch": "1",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "240",
            }
            async with session.get(
                self.server + path,
                params=query,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
            ) as response:
                if response.status >= 400:
                    raise ApiError("WATCH", path, response.status, await response.text())
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise ApiError("WATCH", path, int(obj.get("code", 500)), str(obj))
                    version = obj["metadata"].get("resourceVersion", version)
                    if kind != "BOOKMARK":
                        yield kind, obj
