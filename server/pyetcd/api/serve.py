"""Run a member: the server, its gRPC services, the client-port multiplexer and signal handling."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import logging
import os
import platform
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import grpc
import uvloop

from pyetcd import __version__, logutil
from pyetcd.api import auth, cluster, guard, kv, lease, maintenance, watch
from pyetcd.api.cmux import ClientMux
from pyetcd.api.gateway import Gateway
from pyetcd.api.h2.server import H2Server, ServerOptions, method_table
from pyetcd.api.http import HttpEndpoints
from pyetcd.api.identity import Identity
from pyetcd.api.relay.member import Frontends
from pyetcd.api.rpc import Services
from pyetcd.backend.contract import BackendError
from pyetcd.server.auth.tokens import AuthOptionsError
from pyetcd.server.config import ServerConfig
from pyetcd.server.etcdserver import EtcdServer
from pyetcd.server.storage import StorageError
from pyetcd.server.v3_server import V3Server
from pyetcd.snap.snapshotter import SnapError
from pyetcd.transport.selfcert import resolve_auto_tls
from pyetcd.transport.tls import CLIENT_ALPN, ServerTLS, TLSConfigError
from pyetcd.wal import files as wal_files
from pyetcd.wal.errors import WALError

log = logging.getLogger("pyetcd")
GC_THRESHOLDS = (100_000, 50, 1000)
GRPC_OVERHEAD = 512 * 1024  # etcd: max receive = --max-request-bytes + 512 KiB


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 2379


def _address(url: str) -> str:
    """A listener's address as Go's ``net.Listener.Addr().String()`` shows it."""
    host, port = _host_port(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _urls(urls: Sequence[str]) -> list[str]:
    return [str(u) for u in urls]


def _client_listeners(cfg: ServerConfig) -> list[tuple[str, str]]:
    """(URL, traffic) of each client listener, etcd's ``serveCtx``: gRPC and HTTP share the
    client URLs unless --listen-client-http-urls takes the HTTP side."""
    split = bool(cfg.listen_client_http_urls)
    return [(str(u), "grpc" if split else "grpc+http") for u in cfg.listen_client_urls] + [
        (str(u), "http") for u in cfg.listen_client_http_urls
    ]


async def _announce_ready(server: EtcdServer, listeners: Sequence[tuple[str, str]]) -> None:
    """etcd's lines once the member is published (embed/serve.go), one pair per client
    listener: tools and scripts wait for them."""
    await server.published.wait()
    for url, traffic in listeners:
        log.info("ready to serve client requests")
        if url.startswith("https:"):
            msg = "serving client traffic securely"
        else:
            msg = "serving client traffic insecurely; this is strongly discouraged!"
        log.info(msg, extra=logutil.fields(traffic=traffic, address=_address(url)))


def _member_initialized(wal_dir: str) -> bool:
    """Whether the WAL has files; a damaged data dir is the server's to report, not this line's."""
    try:
        return wal_files.exists(wal_dir)
    except OSError:
        return False


def _log_start(cfg: ServerConfig) -> None:
    """etcd's "starting an etcd server" line (embed.print), with the settings pyetcd has."""
    election = cfg.election_ticks * cfg.heartbeat_interval / 1000
    wal_dir = cfg.effective_wal_dir
    # etcd holds a revision retention as a Duration of that many nanoseconds.
    if cfg.auto_compaction_mode == "revision":
        retention = logutil.go_duration(cfg.compaction_retention_revisions / 1e9)
    else:
        retention = logutil.go_duration(cfg.compaction_retention_seconds)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    log.info(
        "starting an etcd server",
        extra=logutil.fields(
            {
                "etcd-version": __version__,
                "git-sha": "pyetcd",
                "go-version": f"{platform.python_implementation()} {platform.python_version()}",
                "go-os": platform.system().lower(),
                "go-arch": arch,
                "max-cpu-set": len(os.sched_getaffinity(0)),
                "max-cpu-available": os.cpu_count() or 1,
                "member-initialized": _member_initialized(wal_dir),
                "name": cfg.name,
                "data-dir": cfg.data_dir,
                "wal-dir": cfg.wal_dir,
                "wal-dir-dedicated": cfg.wal_dir,
                "member-dir": cfg.member_dir,
                "force-new-cluster": cfg.force_new_cluster,
                "heartbeat-interval": logutil.go_duration(cfg.heartbeat_seconds),
                "election-timeout": logutil.go_duration(election),
                "initial-election-tick-advance": cfg.initial_election_tick_advance,
                "snapshot-count": cfg.snapshot_count,
                "max-wals": cfg.max_wals,
                "max-snapshots": cfg.max_snapshots,
                "snapshot-catchup-entries": cfg.snapshot_catchup_entries,
                "initial-advertise-peer-urls": _urls(cfg.initial_advertise_peer_urls),
                "listen-peer-urls": _urls(cfg.listen_peer_urls),
                "advertise-client-urls": _urls(cfg.advertise_client_urls),
                "listen-client-urls": _urls(cfg.listen_client_urls),
                "listen-metrics-urls": _urls(cfg.listen_metrics_urls),
                # pyetcd refuses --cors and --host-whitelist unless left at "*".
                "cors": ["*"],
                "host-whitelist": ["*"],
                "initial-cluster": cfg.initial_cluster_text,
                "initial-cluster-state": cfg.initial_cluster_state,
                "initial-cluster-token": cfg.initial_cluster_token,
                "quota-backend-bytes": cfg.quota_backend_bytes,
                "max-request-bytes": cfg.max_request_bytes,
                "max-concurrent-streams": cfg.max_concurrent_streams,
                "pre-vote": cfg.pre_vote,
                # Corruption checks and discovery are refused unless left at their defaults.
                "initial-corrupt-check": False,
                "corrupt-check-time-interval": "0s",
                "compact-check-time-enabled": False,
                "compact-check-time-interval": "1m0s",
                "auto-compaction-mode": cfg.auto_compaction_mode,
                "auto-compaction-retention": retention,
                "auto-compaction-interval": retention,
                "discovery-url": "",
                "discovery-proxy": "",
                "downgrade-check-interval": "5s",
            }
        ),
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


def _h2_options(cfg: ServerConfig) -> ServerOptions:
    """The limits and keepalive grpcio is given below, for api.h2."""
    return ServerOptions(
        max_receive_message_length=cfg.max_request_bytes + GRPC_OVERHEAD,
        max_concurrent_streams=min(cfg.max_concurrent_streams, 2**31 - 1),
        keepalive_time=cfg.grpc_keepalive_interval,
        keepalive_timeout=cfg.grpc_keepalive_timeout,
        min_ping_interval=cfg.grpc_keepalive_min_time,
    )


def _ms(seconds: float) -> int:
    return min(int(seconds * 1000), 2**31 - 1)


class StartupError(Exception):
    """The member cannot start; the message says why (a file, a port, a setting)."""


async def serve(cfg: ServerConfig) -> None:
    if not cfg.listen_client_http_urls:
        # embed.Config.Validate's warning.
        log.warning(
            "Running http and grpc server on single port. This is not recommended for production."
        )
    # etcd's first lines (embed.StartEtcd), before the listeners and the server.
    log.info(
        "configuring peer listeners",
        extra=logutil.fields({"listen-peer-urls": _urls(cfg.listen_peer_urls)}),
    )
    log.info(
        "configuring client listeners",
        extra=logutil.fields({"listen-client-urls": _urls(cfg.listen_client_urls)}),
    )
    try:
        # Before anything starts: a certificate problem stops the member with the file's name.
        cfg = with_self_certs(cfg)
        urls = (*cfg.listen_client_urls, *cfg.listen_client_http_urls, *cfg.listen_metrics_urls)
        client_tls = _client_tls(cfg, urls)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None
    _log_start(cfg)
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
        # What the member loaded at start (the key index, the lessor, the members) lives as long
        # as it does: the collector's full passes need not walk it again.
        gc.freeze()
    except OSError as exc:
        await server.stop()
        raise StartupError(
            f"cannot listen on {', '.join(cfg.listen_peer_urls)}: {exc.strerror or exc}"
        ) from None
    for url in cfg.listen_peer_urls:
        log.info("serving peer traffic", extra=logutil.fields(address=_address(url)))
    monitor = guard.leader_monitor(server)
    services = Services(server.metrics, guard=guard.for_server(server), monitor=monitor)
    # The request surface (KV, leases, alarms, auth) and the member's own calls (membership,
    # maintenance), as etcd's v3rpc servers are built over etcdserver's interfaces.
    v3 = V3Server(server)
    identity = Identity(v3)
    for module in (kv, lease, watch, auth):
        module.register(services, v3, identity)
    cluster.register(services, server, identity)
    maintenance.register(services, server, v3, identity)
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
    http = HttpEndpoints(v3, gateway)
    mux = ClientMux("\0" + socket_name, http.handle, max_body=2 * cfg.max_request_bytes)
    identity.common_name = mux.common_name
    # --grpc-stack=h2: client connections are served in process by api.h2; grpcio's server
    # then only answers the gateway on its private socket.
    h2 = None
    if cfg.grpc_stack == "h2":
        h2 = H2Server(method_table(services.methods()), _h2_options(cfg))
        mux.h2_factory = h2.protocol
    # With --listen-client-http-urls, gRPC binds the client URLs itself (no mux hop); else the
    # mux shares each client URL between gRPC and HTTP, as etcd does.
    direct = bool(cfg.listen_client_http_urls)
    mux_urls = (*cfg.listen_client_http_urls, *cfg.listen_metrics_urls)
    frontends = None
    if h2 is not None and cfg.experimental_grpc_frontends:
        # The client URLs are bound here and accepted on by the front-end processes; what is
        # not HTTP/2 comes back to the multiplexer (unless HTTP has URLs of its own).
        frontends = Frontends(
            cfg.experimental_grpc_frontends, h2, _h2_options(cfg), None if direct else mux.adopt
        )
        for url in cfg.listen_client_urls:
            host, port = _host_port(url)
            try:
                frontends.listen(host, port)
            except OSError as exc:
                await server.stop()
                raise StartupError(f"cannot listen on {url}: {exc.strerror or exc}") from None
    elif direct:
        for url in cfg.listen_client_urls:
            host, port = _host_port(url)
            if h2 is not None:
                try:
                    await h2.listen(host, port)
                except OSError as exc:
                    await server.stop()
                    raise StartupError(f"cannot listen on {url}: {exc.strerror or exc}") from None
                continue
            try:
                bound = grpc_server.add_insecure_port(f"{host}:{port}")
            except RuntimeError:
                bound = 0
            if bound == 0:
                await server.stop()
                raise StartupError(f"cannot listen on {url}: address in use or not available")
    else:
        mux_urls = (*cfg.listen_client_urls, *mux_urls)
    if frontends is not None:
        # Before grpcio's threads start: forking beside them makes grpcio log a warning.
        try:
            await frontends.start()
        except OSError as exc:
            await server.stop()
            raise StartupError(f"cannot start the gRPC front-ends: {exc}") from None
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
    for url in cfg.listen_metrics_urls:
        log.info("serving metrics", extra=logutil.fields(address=str(url)))
    log.info(
        "now serving peer/client/metrics",
        extra=logutil.fields(
            {
                "local-member-id": f"{server.member_id:x}",
                "initial-advertise-peer-urls": _urls(cfg.initial_advertise_peer_urls),
                "listen-peer-urls": _urls(cfg.listen_peer_urls),
                "advertise-client-urls": _urls(cfg.advertise_client_urls),
                "listen-client-urls": _urls(cfg.listen_client_urls),
                "listen-metrics-urls": _urls(cfg.listen_metrics_urls),
            }
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    monitoring = loop.create_task(monitor.run(), name="leader monitor")
    announcing = loop.create_task(_announce_ready(server, _client_listeners(cfg)), name="ready")
    received: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, received, stop)
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
        # etcd's osutil.HandleInterrupts line.
        sig = received[0] if received else signal.SIGTERM
        log.info("received signal; shutting down", extra=logutil.fields(signal=_go_name(sig)))
    closing = logutil.fields(
        {
            "name": cfg.name,
            "data-dir": cfg.data_dir,
            "advertise-peer-urls": _urls(cfg.initial_advertise_peer_urls),
            "advertise-client-urls": _urls(cfg.advertise_client_urls),
        }
    )
    log.info("closing etcd server", extra=closing)
    monitoring.cancel()
    announcing.cancel()
    if frontends is not None:
        # Their calls under way finish against this member first.
        await frontends.stop()
    mux.close()
    await gateway.close()
    if h2 is not None:
        await h2.stop(1.0)
    await grpc_server.stop(1.0)
    await server.stop()
    log.info("closed etcd server", extra=closing)
    if failed and server.exit_code:
        raise SystemExit(server.exit_code)


def _go_name(sig: signal.Signals) -> str:
    """Go's ``syscall.Signal.String()``: ``terminated``, ``interrupt``."""
    return {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}.get(sig, sig.name)


def _on_signal(sig: signal.Signals, received: list[signal.Signals], stop: asyncio.Event) -> None:
    received.append(sig)
    stop.set()


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
    """Set up logging as --logger/--log-outputs/--log-format/--log-level say, then serve."""
    try:
        logutil.configure(cfg.log_outputs, cfg.log_level, cfg.log_format)
    except OSError as exc:
        # zap's Build fails the same way: the member does not start without its log.
        print(f"pyetcd: --log-outputs: cannot open {exc.filename}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    log.info("Running: ", extra=logutil.fields(args=list(sys.argv)))
    # The cyclic collector at its defaults (a young pass every 700 allocations) cost a put at 64
    # clients 16% of its throughput and 42% of its p99 (bench: same run, alternating); what a
    # request allocates is nearly all freed by reference counting, not by the collector.
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        uvloop.run(serve(cfg))
    except StartupError as exc:
        if not logutil.writes_to_stderr(cfg.log_outputs):
            # The log is elsewhere: it says why the member stopped too.
            log.log(logutil.FATAL, "failed to start", extra=logutil.fields(error=str(exc)))
        # The last line on stderr (a container's termination message) says why, as before.
        print(f"pyetcd: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
