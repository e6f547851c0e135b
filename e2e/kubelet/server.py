"""The kubelet's HTTPS API, for the API server: ``kubectl logs`` and ``kubectl exec``.

The API server reaches a pod's kubelet at an address of its Node's ``status.addresses`` (the
type first in ``--kubelet-preferred-address-types``) and the port of
``status.daemonEndpoints.kubeletEndpoint``. One server on loopback serves every node of the
process: each Node announces ``InternalIP 127.0.0.1`` and this port, and a pod is found by
namespace and name (the kubelet's paths carry no node), as the pod's kubelet would.

- **TLS**: a serving certificate of the run's CA for ``127.0.0.1``, ``localhost`` and the node
  names; the API server verifies it (``--kubelet-certificate-authority``).
- **Authentication and authorisation**: a client certificate of the same CA, optional at the
  handshake so that a request without one is answered ``401 Unauthorized`` as a kubelet does.
  A kubelet then asks the API server (SubjectAccessReview) whether the user may ``get``/``create``
  ``nodes/proxy``; here exactly the users given may (the API server's kubelet client, read from
  the control plane's certificate), anyone else gets the kubelet's ``403 Forbidden (user=...)``.
- **Routes** (those of ``pkg/kubelet/server/server.go``): ``GET /healthz``;
  ``GET /containerLogs/{namespace}/{pod}/{container}`` (:mod:`e2e.kubelet.logs`: ``tailLines``,
  ``limitBytes``, ``follow``, ``previous``), streamed with chunked encoding;
  ``GET|POST /exec/{namespace}/{pod}[/{uid}]/{container}?command=...&input=1&output=1&error=1``:
  an upgrade to SPDY/3.1 and the remote command protocol v4 (:mod:`e2e.kubelet.spdy`).

HTTP/1.1, one request per connection (``Connection: close``), which Go's client handles; requests
have no body worth reading (a ``Content-Length`` body is read and dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

from e2e.kubelet import logs, spdy
from e2e.kubelet.pods import PodWorker

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 30.0
MAX_BODY = 1 << 20


class PodLookup(Protocol):
    """What the server needs of the kubelet: the pod running here under a namespace and name."""

    def worker(self, namespace: str, name: str) -> PodWorker: ...


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Request:
    method: str
    path: tuple[str, ...]
    query: dict[str, list[str]]
    headers: dict[str, list[str]]  # names lower-case
    user: str | None


def tls_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The server's TLS: its certificate, and client certificates of ``ca`` (optional)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def peer_user(peercert: object) -> str | None:
    """The common name of a verified client certificate (``getpeercert()``), if any."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


async def read_request(reader: asyncio.StreamReader, user: str | None) -> Request:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request header too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _ = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int((headers.get("content-length") or ["0"])[-1] or 0)
    if length > MAX_BODY or "transfer-encoding" in headers:
        raise HttpError(413, "no request body is expected")
    if length:
        await reader.readexactly(length)
    url = urllib.parse.urlsplit(target)
    path = tuple(urllib.parse.unquote(p) for p in url.path.split("/") if p)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    return Request(method.upper(), path, query, headers, user)


def response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> bytes:
    body = (text if text.endswith("\n") else text + "\n").encode()
    head = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **(headers or {}),
    }
    return response_head(status, head) + body


class KubeletServer:
    """The HTTPS server; :meth:`start` returns the port it listens on."""

    def __init__(self, pods: PodLookup, tls: ssl.SSLContext, users: frozenset[str]) -> None:
        self.pods = pods
        self.tls = tls
        self.users = users
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        self._server = await asyncio.start_server(
            self._connection, host, port, ssl=self.tls, ssl_handshake_timeout=HEAD_TIMEOUT
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Followers and exec sessions would keep wait_closed() waiting: end them.
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            request = await read_request(reader, peer_user(writer.get_extra_info("peercert")))
            self._authorise(request)
            log.info("%s /%s by %s", request.method, "/".join(request.path), request.user)
            await self._route(request, reader, writer)
        except HttpError as exc:  # always raised before any byte of a response went out
            writer.write(plain(exc.status, exc.message, exc.headers))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, TimeoutError):
            pass  # the client went away
        except asyncio.CancelledError:
            # stop() ends this connection: end quietly (asyncio logs a handler task that ends
            # cancelled as an error).
            pass
        except Exception:
            log.exception("kubelet server")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5.0)

    def _authorise(self, request: Request) -> None:
        if request.user is None:
            raise HttpError(401, "Unauthorized")
        if request.user not in self.users:
            verb = "get" if request.method == "GET" else "create"
            raise HttpError(
                403,
                f"Forbidden (user={request.user}, verb={verb}, resource=nodes, "
                "subresource(s)=[proxy])",
            )

    async def _route(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        path, method = request.path, request.method
        if path == ("healthz",) and method == "GET":
            writer.write(plain(200, "ok"))
        elif len(path) == 4 and path[0] == "containerLogs" and method == "GET":
            await self._logs(request, reader, writer)
        elif len(path) in (4, 5) and path[0] == "exec" and method in ("GET", "POST"):
            await self._exec(request, reader, writer)
        else:
            raise HttpError(404, "404 page not found")

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        try:
            return self.pods.worker(namespace, pod)
        except KeyError:
            raise HttpError(404, f'pod "{pod}" does not exist') from None

    @staticmethod
    def _check_container(worker: PodWorker, name: str) -> None:
        try:
            worker.container(name)
        except KeyError:
            raise HttpError(404, f'container "{name}" not found in pod "{worker.name}"') from None

    async def _logs(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        _, namespace, pod, name = request.path
        try:
            options = logs.parse_options(request.query)
            worker = self._worker(namespace, pod)
            self._check_container(worker, name)
            segment = logs.select(
                worker.dir / "logs", pod, worker.container(name), options.previous
            )
        except logs.LogRequestError as exc:
            raise HttpError(exc.status, str(exc)) from None
        head = {
            "Content-Type": "text/plain",
            "Transfer-Encoding": "chunked",
            "Connection": "close",
        }
        writer.write(response_head(200, head))

        def gone() -> bool:
            return reader.at_eof() or writer.is_closing()

        async for chunk in logs.read(segment, options, gone):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _exec(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        namespace, pod, name = request.path[1], request.path[2], request.path[-1]
        try:
            options = spdy.ExecOptions.parse(request.query)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        worker = self._worker(namespace, pod)
        self._check_container(worker, name)
        connection = ",".join(request.headers.get("connection", [])).lower()
        upgrade = ",".join(request.headers.get("upgrade", [])).lower()
        if "upgrade" not in connection or "spdy/3.1" not in upgrade:
            raise HttpError(400, "unable to upgrade: missing upgrade headers in request")
        offered = [
            p.strip()
            for value in request.headers.get("x-stream-protocol-version", [])
            for p in value.split(",")
            if p.strip()
        ]
        if not offered:
            raise HttpError(400, "unable to upgrade: X-Stream-Protocol-Version is required")
        if spdy.PROTOCOL_V4 not in offered:
            raise HttpError(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts [{spdy.PROTOCOL_V4}]",
                {"X-Accepted-Stream-Protocol-Versions": spdy.PROTOCOL_V4},
            )
        writer.write(
            response_head(
                101,
                {
                    "Connection": "Upgrade",
                    "Upgrade": "SPDY/3.1",
                    "X-Stream-Protocol-Version": spdy.PROTOCOL_V4,
                },
            )
        )
        await writer.drain()
        session = spdy.ExecSession(spdy.Connection(reader, writer), options)
        argv = list(options.command)
        await session.run(lambda stdin: worker.exec_process(name, argv, stdin=stdin))
