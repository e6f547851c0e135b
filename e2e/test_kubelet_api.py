"""The process kubelet's HTTPS API on its own (no control plane): who it serves, which bytes of a
log it serves, and a ``kubectl exec`` session over SPDY as the API server would drive it.

The server runs in the test's event loop with certificates of a throw-away CA; the pods are
stand-ins with real log files and real local processes. The same paths through the real API
server (``kubectl logs``/``exec``) are ``test_kubectl_logs_tail_follow_previous_and_exec`` in
``test_kubelet.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from e2e import pki
from e2e.kubelet import logs, spdy
from e2e.kubelet.pods import Container, LogRun, PodWorker
from e2e.kubelet.server import KubeletServer, PodLookup, tls_context

APISERVER = "kube-apiserver-kubelet-client"
# SHA-256 of SPDY/3's header dictionary as moby/spdystream (Kubernetes' SPDY) spells it.
SPDY_DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


@dataclass(frozen=True)
class Certs:
    ca: pki.KeyPair
    serving: pki.KeyPair
    apiserver: pki.KeyPair
    stranger: pki.KeyPair  # same CA, another user
    foreign: pki.KeyPair  # another CA


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(directory)
    other = pki.make_ca(directory / "other", "another-ca")
    return Certs(
        ca,
        pki.issue(ca, "serving", "kubelet", client=False, server=True, hosts=("127.0.0.1",)),
        pki.issue(ca, "apiserver", APISERVER, organizations=("system:masters",)),
        pki.issue(ca, "stranger", "system:node:node-a", organizations=("system:nodes",)),
        pki.issue(other, "foreign", APISERVER, organizations=("system:masters",)),
    )


@dataclass
class StubPod:
    """What the server uses of a PodWorker: its directory, containers and exec."""

    name: str
    dir: Path
    containers: dict[str, Container] = field(default_factory=dict)

    def container(self, name: str) -> Container:
        return self.containers[name]

    @contextlib.asynccontextmanager
    async def exec_process(
        self, container_name: str, argv: list[str], *, stdin: bool = False
    ) -> AsyncIterator[asyncio.subprocess.Process]:
        self.container(container_name)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


@dataclass
class StubKubelet:
    pods: dict[tuple[str, str], StubPod] = field(default_factory=dict)

    def worker(self, namespace: str, name: str) -> PodWorker:
        return cast(PodWorker, self.pods[namespace, name])


def client_context(certs: Certs, pair: pki.KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca.cert))
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


async def get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    """One GET; the status and the (de-chunked) body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    if not data:  # TLS 1.3: a refused client certificate closes the connection after the handshake
        raise ConnectionError("closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(head.split()[1]), body


def serve(certs: Certs, kubelet: StubKubelet, scenario: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        tls = tls_context(certs.serving.cert, certs.serving.key, certs.ca.cert)
        server = KubeletServer(cast(PodLookup, kubelet), tls, frozenset({APISERVER}))
        port = await server.start()
        try:
            await scenario(port)
        finally:
            await server.stop()

    asyncio.run(main())


def test_only_the_apiservers_kubelet_client_is_served(certs: Certs) -> None:
    async def scenario(port: int) -> None:
        assert await get(port, "/healthz", client_context(certs, certs.apiserver)) == (200, b"ok\n")
        status, body = await get(port, "/healthz", client_context(certs, None))
        assert (status, body) == (401, b"Unauthorized\n")
        status, body = await get(
            port, "/containerLogs/ns/p/c", client_context(certs, certs.stranger)
        )
        assert status == 403
        assert body.startswith(b"Forbidden (user=system:node:node-a, verb=get, resource=nodes")
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            # A certificate of another CA does not get past the handshake.
            await get(port, "/healthz", client_context(certs, certs.foreign))

    serve(certs, StubKubelet(), scenario)


def test_logs_serve_one_run_tail_limit_previous_and_follow(certs: Certs, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    path = log_dir / "main.log"
    container = Container({"name": "main"}, init=False)
    pod = StubPod("p", tmp_path, {"main": container})
    kubelet = StubKubelet({("ns", "p"): pod})

    def start_run(text: bytes) -> LogRun:
        marker = path.stat().st_size if path.exists() else 0
        line = b"--- start 2026-01-01T00:00:00Z ['x']\n"
        with path.open("ab") as handle:
            handle.write(line + text)
        run = LogRun(marker, marker + len(line))
        container.runs.append(run)
        return run

    async def scenario(port: int) -> None:
        context = client_context(certs, certs.apiserver)

        async def logs_of(query: str = "", name: str = "main") -> tuple[int, bytes]:
            return await get(port, f"/containerLogs/ns/p/{name}{query}", context)

        status, body = await logs_of()
        assert (status, body) == (400, b'container "main" in pod "p" is waiting to start: '
                                       b"ContainerCreating\n")  # fmt: skip
        assert (await logs_of(name="nope"))[0] == 404
        assert (await get(port, "/containerLogs/ns/gone/main", context))[0] == 404

        first = start_run(b"one\ntwo\nthree\n")
        first.process = await asyncio.create_subprocess_exec("true")
        await first.process.wait()
        assert await logs_of() == (200, b"one\ntwo\nthree\n")
        assert (await logs_of("?previous=true"))[0] == 400

        second = start_run(b"four\nfive")  # no newline yet
        second.process = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        assert await logs_of() == (200, b"four\nfive")
        assert await logs_of("?previous=true") == (200, b"one\ntwo\nthree\n")
        assert await logs_of("?previous=true&tailLines=2") == (200, b"two\nthree\n")
        assert await logs_of("?tailLines=1") == (200, b"five")
        assert await logs_of("?tailLines=0") == (200, b"")
        assert await logs_of("?tail=all") == (200, b"four\nfive")
        assert await logs_of("?limitBytes=3") == (200, b"fou")
        assert (await logs_of("?timestamps=true"))[0] == 400
        assert (await logs_of("?sinceSeconds=10"))[0] == 400

        # Follow: what the run writes until it ends, then the response ends (whether the
        # request comes before the writes or after).
        follow = asyncio.ensure_future(logs_of("?follow=true"))
        with path.open("ab") as handle:
            handle.write(b"\nsix\n")
        assert second.process.stdin is not None
        second.process.stdin.close()
        await second.process.wait()
        assert await asyncio.wait_for(follow, 30) == (200, b"four\nfive\nsix\n")

    serve(certs, kubelet, scenario)


class SpdyClient:
    """The API server's side of ``/exec``, as client-go's remote command v4 speaks it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conn = spdy.Connection(reader, writer)
        self.streams: dict[str, int] = {}
        self.received: dict[int, bytes] = {}
        self.closed: set[int] = set()

    @staticmethod
    async def connect(port: int, context: ssl.SSLContext, query: str) -> tuple[int, SpdyClient]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(
            f"POST /exec/ns/p/main?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: v5.channel.k8s.io\r\n"
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split()[1])
        if status == 101:
            assert b"x-stream-protocol-version: v4.channel.k8s.io" in head.lower()
        return status, SpdyClient(reader, writer)

    async def open(self, *kinds: str) -> None:
        """Open the streams one by one, each once the server replied (as client-go does)."""
        for n, kind in enumerate(kinds):
            stream_id = 2 * n + 1
            self.conn.open_stream(stream_id, {"streamType": kind})
            frame = await self.conn.read_frame()
            assert frame is not None and (frame.kind, frame.stream_id) == (
                spdy.SYN_REPLY,
                stream_id,
            )
            self.streams[kind] = stream_id

    async def run(self) -> dict[str, Any]:
        """Read until every stream is closed; then the status on the error stream."""
        self.conn.ping(1)
        # The server closes what it writes to: not stdin, not resize (the client's).
        outputs = {v for k, v in self.streams.items() if k not in ("stdin", "resize")}
        while self.closed != outputs:
            frame = await asyncio.wait_for(self.conn.read_frame(), 30)
            assert frame is not None
            if frame.kind == spdy.PING:
                assert struct.unpack(">I", frame.data) == (1,)
            elif frame.kind == spdy.DATA:
                self.received[frame.stream_id] = self.received.get(frame.stream_id, b"") + (
                    frame.data
                )
                if frame.fin:
                    self.closed.add(frame.stream_id)
        self.conn.writer.close()
        status: dict[str, Any] = json.loads(self.received[self.streams["error"]])
        return status

    def output(self, kind: str) -> bytes:
        return self.received.get(self.streams[kind], b"")


def test_exec_over_spdy_streams_output_stdin_and_the_exit_code(
    certs: Certs, tmp_path: Path
) -> None:
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == SPDY_DICTIONARY_SHA256
    pod = StubPod("p", tmp_path, {"main": Container({"name": "main"}, init=False)})

    async def scenario(port: int) -> None:
        context = client_context(certs, certs.apiserver)
        command = "command=sh&command=-c&command=echo+out%3B+echo+err+>%262%3B+exit+3"
        status, client = await SpdyClient.connect(port, context, f"{command}&output=1&error=1")
        assert status == 101
        await client.open("error", "stdout", "stderr")
        result = await client.run()
        assert (client.output("stdout"), client.output("stderr")) == (b"out\n", b"err\n")
        assert result["status"] == "Failure" and result["reason"] == "NonZeroExitCode"
        assert result["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

        status, client = await SpdyClient.connect(port, context, "command=cat&input=1&output=1")
        await client.open("error", "stdin", "stdout")
        client.conn.data(client.streams["stdin"], b"hello ")
        client.conn.data(client.streams["stdin"], b"world", fin=True)
        assert (await client.run())["status"] == "Success"
        assert client.output("stdout") == b"hello world"

        status, client = await SpdyClient.connect(port, context, "command=no-such-cmd&output=1")
        await client.open("error", "stdout")
        result = await client.run()
        assert result["reason"] == "InternalError" and "no-such-cmd" in result["message"]

        # A TTY (kubectl exec -t) is refused with a status, once the client's streams are open.
        status, client = await SpdyClient.connect(port, context, "command=sh&output=1&tty=1")
        await client.open("error", "stdout", "resize")
        assert "TTY is not supported" in (await client.run())["message"]

        status, _ = await SpdyClient.connect(port, context, "command=true")
        assert status == 400  # none of stdin, stdout, stderr

    serve(certs, StubKubelet({("ns", "p"): pod}), scenario)


def test_log_options_refuse_what_cannot_be_served() -> None:
    assert logs.parse_options({"follow": ["true"], "tailLines": ["5"]}) == logs.LogOptions(
        follow=True, tail_lines=5
    )
    with pytest.raises(logs.LogRequestError):
        logs.parse_options({"tailLines": ["x"]})
    with pytest.raises(logs.LogRequestError):
        logs.parse_options({"stream": ["Stdout"]})
