"""Run a member: the server, its gRPC services, the client-port multiplexer and signal handling."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import grpc
import uvloop

from pyetcd.api import auth, cluster, guard, kv, lease, maintenance, watch
from pyetcd.api.cmux import ClientMux
from pyetcd.api.gateway import Gateway
from pyetcd.api.http import HttpEndpoints
from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services
from pyetcd.backend.contract import BackendError
from pyetcd.server.auth.tokens import AuthOptionsError
from pyetcd.server.config import ServerConfig
from pyetcd.server.etcdserver import EtcdServer
from pyetcd.server.storage import StorageError
from pyetcd.snap.snapshotter import SnapError
from pyetcd.transport.selfcert import resolve_auto_tls
from pyetcd.transport.tls import CLIENT_ALPN, ServerTLS, TLSConfigError
from pyetcd.wal.errors import WALError

log = logging.getLogger("pyetcd")
GRPC_OVERHEAD = 512 * 1024  # etcd: max receive = --max-request-bytes + 512 KiB


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 2379


async def _announce_ready(server: EtcdServer, urls: Sequence[str]) -> None:
    """etcd's lines once the member is published: tools and scripts wait for them."""
    await server.published.wait()
    log.info("ready to serve client requests")
    for url in urls:
        host, port = _host_port(url)
        if url.startswith("https:"):
            log.info("serving client traffic securely: address %s:%d", host, port)
        else:
            log.info(
                "serving client traffic insecurely; this is strongly discouraged!: address %s:%d",
                host,
                port,
            )


def with_self_certs(cfg: ServerConfig) -> ServerConfig:
    """``cfg`` with the self-signed pairs of --auto-tls and --peer-auto-tls (made on the first
    start under ``<data-dir>/fixtures``, reused after), as etcd's ``ClientSelfCert`` and
    ``PeerSelfCert``: for the hosts of the listen URLs."""
    fixtures = os.path.join(cfg.data_dir, "fixtures")
    client_hosts = [
        _host_port(u)[0] for u in (*cfg.listen_client_urls, *cfg.listen_client_http_urls)
    ]
    peer_hosts = [_host_port(u)[0] for u in cfg.listen_peer_urls]
    validity = cfg.self_signed_cert_validity
    return dataclasses.replace(
        cfg,
        client_tls=resolve_auto_tls(
            cfg.client_tls, os.path.join(fixtures, "client"), client_hosts, validity
        ),
        peer_tls=resolve_auto_tls(
            cfg.peer_tls, os.path.join(fixtures, "peer"), peer_hosts, validity
        ),
    )


def _client_tls(cfg: ServerConfig, urls: Sequence[str]) -> ServerTLS | None:
    """The client side's TLS when any client (or metrics) URL is https; etcd serves plain HTTP
    on an http URL even when certificates are given."""
    if not any(url.startswith("https:") for url in urls):
        return None
    return ServerTLS(cfg.client_tls, cfg.tls_options, alpn=CLIENT_ALPN)


def _ms(seconds: float) -> int:
    return min(int(seconds * 1000), 2**31 - 1)


class StartupError(Exception):
    """The member cannot start; the message says why (a file, a port, a setting)."""


async def serve(cfg: ServerConfig) -> None:
    try:
        # Before anything starts: a certificate problem stops the member with the file's name.
        cfg = with_self_certs(cfg)
        urls = (*cfg.listen_client_urls, *cfg.listen_client_http_urls, *cfg.listen_metrics_urls)
        client_tls = _client_tls(cfg, urls)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None
    try:
        server = EtcdServer(cfg)
    except (
        BackendError,
        WALError,
        SnapError,
        StorageError,
        TLSConfigError,
        AuthOptionsError,
    ) as exc:
        raise StartupError(str(exc)) from None
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise StartupError(
            f"cannot listen on {', '.join(cfg.listen_peer_urls)}: {exc.strerror or exc}"
        ) from None
    monitor = guard.leader_monitor(server)
    services = Services(server.metrics, guard=guard.for_server(server), monitor=monitor)
    identity = Identity(server)
    for module in (kv, lease, cluster, maintenance, watch, auth):
        module.register(services, server, identity)
    grpc_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.max_request_bytes + GRPC_OVERHEAD),
            ("grpc.max_send_message_length", 2**31 - 1),
            # etcd's default is MaxUint32; grpcio takes a signed 32-bit value.
            ("grpc.max_concurrent_streams", min(cfg.max_concurrent_streams, 2**31 - 1)),
            ("grpc.keepalive_permit_without_calls", 1),
            # etcd's --grpc-keepalive-* flags: the least time between a client's pings, and the
            # server's own pings (interval) with the time it waits for their answer (timeout).
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(cfg.grpc_keepalive_min_time)),
            ("grpc.keepalive_time_ms", _ms(cfg.grpc_keepalive_interval)),
            ("grpc.keepalive_timeout_ms", _ms(cfg.grpc_keepalive_timeout)),
        ]
    )
    grpc_server.add_generic_rpc_handlers(services.generic_handlers())
    socket_name = f"pyetcd-{os.getpid()}-{id(server):x}"
    grpc_server.add_insecure_port(f"unix-abstract:{socket_name}")
    # etcd's JSON gateway is a client of the member's own gRPC server, as here.
    gateway = Gateway(f"unix-abstract:{socket_name}")
    http = HttpEndpoints(server, gateway)
    mux = ClientMux("\0" + socket_name, http.handle, max_body=2 * cfg.max_request_bytes)
    identity.common_name = mux.common_name
    # With --listen-client-http-urls, gRPC binds the client URLs itself (no mux hop); else the
    # mux shares each client URL between gRPC and HTTP, as etcd does.
    direct = bool(cfg.listen_client_http_urls)
    mux_urls = (*cfg.listen_client_http_urls, *cfg.listen_metrics_urls)
    if direct:
        for url in cfg.listen_client_urls:
            host, port = _host_port(url)
            try:
                bound = grpc_server.add_insecure_port(f"{host}:{port}")
            except RuntimeError:
                bound = 0
            if bound == 0:
                await server.stop()
                raise StartupError(f"cannot listen on {url}: address in use or not available")
    else:
        mux_urls = (*cfg.listen_client_urls, *mux_urls)
    await grpc_server.start()
    current = ""
    try:
        for url in mux_urls:
            current = str(url)
            host, port = _host_port(url)
            await mux.listen(host, port, client_tls if url.startswith("https:") else None)
    except OSError as exc:
        await grpc_server.stop(0)
        await server.stop()
        raise StartupError(f"cannot listen on {current}: {exc.strerror or exc}") from None
    log.info(
        "pyetcd member %x of cluster %x serving clients on %s",
        server.member_id,
        server.cluster_id,
        ", ".join(cfg.listen_client_urls),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    monitoring = loop.create_task(monitor.run(), name="leader monitor")
    served = list(dict.fromkeys((*cfg.listen_client_urls, *mux_urls)))
    announcing = loop.create_task(_announce_ready(server, served), name="ready")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # What a stuck member is waiting on, without a debugger: kill -USR1 <pid>.
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    assert server.exit_event is not None
    stopped = loop.create_task(stop.wait())
    exiting = loop.create_task(server.exit_event.wait())
    await asyncio.wait({stopped, exiting}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    exiting.cancel()
    failed = server.exit_event.is_set() and not stop.is_set()
    if failed:
        # etcd stops a member that was removed from the cluster, or whose Raft loop broke.
        log.warning("%s; shutting down", server.exit_reason)
    else:
        log.info("received a stop signal; shutting down")
    monitoring.cancel()
    announcing.cancel()
    mux.close()
    await gateway.close()
    await grpc_server.stop(1.0)
    await server.stop()
    if failed and server.exit_code:
        raise SystemExit(server.exit_code)


def dump_tasks() -> None:
    """Log the stack of every task of the running loop."""
    tasks = asyncio.all_tasks()
    out = io.StringIO()
    for task in tasks:
        out.write(f"{task.get_name()} {task.get_coro()!r}\n")
        for frame in task.get_stack(limit=8):
            code = frame.f_code
            out.write(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")
    log.warning("SIGUSR1: %d tasks\n%s", len(tasks), out.getvalue())


def run(cfg: ServerConfig) -> None:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO)
        if cfg.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
        else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        uvloop.run(serve(cfg))
    except StartupError as exc:
        print(f"pyetcd: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
