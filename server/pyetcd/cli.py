"""The `pyetcd` command: etcd's own flags and `ETCD_*` variables, turned into a `ServerConfig`.

Flag names, spellings, defaults and help texts follow `etcd --help` (3.4/3.5), parsed with Go's
`flag` grammar (`-name v`, `--name=v`, ...). `parse_args` is pure; `main` prints, exits, and hands
the configuration to `pyetcd.server.run`. A bad flag or value is one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn, cast

from pyetcd import __version__
from pyetcd.server.config import (
    DEFAULT_BACKEND_BATCH_INTERVAL,
    DEFAULT_BACKEND_BATCH_LIMIT,
    DEFAULT_QUOTA_BYTES,
    URL,
    ClusterState,
    CompactionMode,
    ConfigError,
    Flag,
    FlagError,
    FlagSet,
    GrpcStack,
    HelpRequested,
    LogFormat,
    LogLevel,
    MetricsLevel,
    ServerConfig,
    TLSInfo,
    TLSOptions,
    parse_compaction_retention,
    parse_go_bool,
    parse_go_duration,
    parse_go_int,
    parse_initial_cluster,
    parse_urls,
)

__all__ = ["FLAGS", "VersionRequested", "help_text", "main", "parse_args", "version_text"]

PROGRAM = "pyetcd"
EXIT_USAGE = 2


class VersionRequested(Exception):  # noqa: N818 - a signal, not a failure
    """`--version` was given."""


def _string(value: str) -> str:
    return value


def _uint(value: str) -> int:
    return parse_go_int(value, bits=64, signed=False)


def _uint32(value: str) -> int:
    # etcd prints this default as the Go expression "math.MaxUint32".
    if value == "math.MaxUint32":
        return (1 << 32) - 1
    return parse_go_int(value, bits=32, signed=False)


def _int(value: str) -> int:
    return parse_go_int(value, bits=64, signed=True)


def _duration(value: str) -> float:
    # An empty default (etcd's `--backend-batch-interval ''`) is the zero duration.
    return 0.0 if value == "" else parse_go_duration(value)


def _urls(value: str) -> object:
    return parse_urls(value)


def _urls_optional(value: str) -> object:
    return parse_urls(value, allow_empty=True)


def _one_of(*choices: str) -> Callable[[str], object]:
    def parse(value: str) -> str:
        if value not in choices:
            # etcd's SelectiveStringValue says only "invalid value"; name the choices too.
            raise ValueError("invalid value (valid values: " + ", ".join(choices) + ")")
        return value

    return parse


def _unique_strings(value: str) -> tuple[str, ...]:
    """etcd's ``flags.UniqueStringsValue``: comma-separated, duplicates dropped, sorted."""
    return tuple(sorted(set(value.split(","))))


def _initial_cluster(value: str) -> object:
    return parse_initial_cluster(value)


_M, _C, _S, _A, _P, _L, _X, _U = (
    "Member",
    "Clustering",
    "Security",
    "Auth",
    "Profiling and Monitoring",
    "Logging",
    "Experimental feature",
    "Unsafe feature",
)


def _f(
    name: str,
    default: str,
    usage: str,
    parse: Callable[[str], object] = _string,
    group: str = _M,
    *,
    is_bool: bool = False,
    unsupported: str = "",
) -> Flag:
    return Flag(name, default, usage, parse, is_bool=is_bool, group=group, unsupported=unsupported)


def _b(name: str, default: str, usage: str, group: str, *, unsupported: str = "") -> Flag:
    return Flag(
        name, default, usage, parse_go_bool, is_bool=True, group=group, unsupported=unsupported
    )


FLAGS: tuple[Flag, ...] = (
    _f("name", "default", "Human-readable name for this member."),
    _f("data-dir", "${name}.etcd", "Path to the data directory."),
    _f("wal-dir", "", "Path to the dedicated wal directory."),
    _f(
        "snapshot-count",
        "100000",
        "Number of committed transactions to trigger a snapshot to disk.",
        _uint,
    ),
    _f("heartbeat-interval", "100", "Time (in milliseconds) of a heartbeat interval.", _uint),
    _f(
        "election-timeout",
        "1000",
        "Time (in milliseconds) for an election to timeout. See tuning documentation for details.",
        _uint,
    ),
    _b(
        "initial-election-tick-advance",
        "true",
        "Whether to fast-forward initial election ticks on boot for faster election.",
        _M,
    ),
    _f(
        "listen-peer-urls",
        "http://localhost:2380",
        "List of URLs to listen on for peer traffic.",
        _urls,
    ),
    _f(
        "listen-client-urls",
        "http://localhost:2379",
        "List of URLs to listen on for client traffic.",
        _urls,
    ),
    _f("max-snapshots", "5", "Maximum number of snapshot files to retain (0 is unlimited).", _uint),
    _f("max-wals", "5", "Maximum number of wal files to retain (0 is unlimited).", _uint),
    _f(
        "quota-backend-bytes",
        "0",
        "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).",
        _int,
    ),
    _f(
        "backend-batch-interval",
        "",
        "BackendBatchInterval is the maximum time before commit the backend transaction.",
        _duration,
    ),
    _f(
        "backend-batch-limit",
        "0",
        "BackendBatchLimit is the maximum operations before commit the backend transaction.",
        _int,
    ),
    _f("max-txn-ops", "128", "Maximum number of operations permitted in a transaction.", _uint),
    _f(
        "max-request-bytes",
        "1572864",
        "Maximum client request size in bytes the server will accept.",
        _uint,
    ),
    _f(
        "max-concurrent-streams",
        "math.MaxUint32",
        "Maximum concurrent streams that each client can open at a time.",
        _uint32,
    ),
    _f(
        "grpc-stack",
        "h2",
        "[pyetcd] What serves gRPC on the client URLs: 'h2', pyetcd's own HTTP/2 stack "
        "(api/h2: about ten times the calls a second of grpcio's on one core), or 'grpcio', "
        "grpcio's asyncio server.",
        _one_of("h2", "grpcio"),
    ),
    _f(
        "experimental-grpc-frontends",
        "0",
        "[pyetcd] Processes that accept the client URLs' connections, serve their HTTP/2 and "
        "relay each call to the member, so that more than one core serves clients (api/relay; "
        "http client URLs only). 0: the member serves its clients itself.",
        _int,
    ),
    _f(
        "grpc-keepalive-min-time",
        "5s",
        "Minimum duration interval that a client should wait before pinging server.",
        _duration,
    ),
    _f(
        "grpc-keepalive-interval",
        "2h",
        "Frequency duration of server-to-client ping to check if a connection is alive "
        "(0 to disable).",
        _duration,
    ),
    _f(
        "grpc-keepalive-timeout",
        "20s",
        "Additional duration of wait before closing a non-responsive connection (0 to disable).",
        _duration,
    ),
    # Clustering
    _f(
        "initial-advertise-peer-urls",
        "http://localhost:2380",
        "List of this member's peer URLs to advertise to the rest of the cluster.",
        _urls,
        _C,
    ),
    _f(
        "initial-cluster",
        "default=http://localhost:2380",
        "Initial cluster configuration for bootstrapping.",
        _initial_cluster,
        _C,
    ),
    _f(
        "initial-cluster-state",
        "new",
        "Initial cluster state ('new' or 'existing').",
        _one_of("new", "existing"),
        _C,
    ),
    _f(
        "initial-cluster-token",
        "etcd-cluster",
        "Initial cluster token for the etcd cluster during bootstrap.\n"
        "Specifying this can protect you from unintended cross-cluster interaction when running "
        "multiple clusters.",
        group=_C,
    ),
    _f(
        "advertise-client-urls",
        "http://localhost:2379",
        "List of this member's client URLs to advertise to the public.\n"
        "The client URLs advertised should be accessible to machines that talk to etcd cluster. "
        "etcd client libraries parse these URLs to connect to the cluster.",
        _urls,
        _C,
    ),
    _b(
        "strict-reconfig-check",
        "true",
        "Reject reconfiguration requests that would cause quorum loss.",
        _C,
    ),
    _b("pre-vote", "true", "Enable to run an additional Raft election phase.", _C),
    _f(
        "auto-compaction-retention",
        "0",
        "Auto compaction retention length. 0 means disable auto compaction.",
        group=_C,
    ),
    _f(
        "auto-compaction-mode",
        "periodic",
        "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration "
        "based retention, defaulting to hours if no time unit is provided (e.g. '5m'). "
        "'revision' for revision number based retention.",
        _one_of("periodic", "revision"),
        _C,
    ),
    _b(
        "enable-v2",
        "false",
        "Accept etcd V2 client requests.",
        _C,
        unsupported="the v2 API is not served",
    ),
    # Security
    _f(
        "cert-file",
        "",
        "Path to the client server TLS cert file.",
        group=_S,
    ),
    _f("key-file", "", "Path to the client server TLS key file.", group=_S),
    _b(
        "client-cert-auth",
        "false",
        "Enable client cert authentication.",
        _S,
    ),
    _f(
        "client-crl-file",
        "",
        "Path to the client certificate revocation list file.",
        group=_S,
    ),
    _f(
        "client-cert-allowed-hostname",
        "",
        "Allowed TLS hostname for client cert authentication.",
        group=_S,
    ),
    _f(
        "trusted-ca-file",
        "",
        "Path to the client server TLS trusted CA cert file.",
        group=_S,
    ),
    _b(
        "auto-tls",
        "false",
        "Client TLS using generated certificates.",
        _S,
    ),
    _f(
        "peer-cert-file",
        "",
        "Path to the peer server TLS cert file.",
        group=_S,
    ),
    _f(
        "peer-key-file",
        "",
        "Path to the peer server TLS key file.",
        group=_S,
    ),
    _b(
        "peer-client-cert-auth",
        "false",
        "Enable peer client cert authentication.",
        _S,
    ),
    _f(
        "peer-trusted-ca-file",
        "",
        "Path to the peer server TLS trusted CA file.",
        group=_S,
    ),
    _f(
        "peer-cert-allowed-cn",
        "",
        "Required CN for client certs connecting to the peer endpoint.",
        group=_S,
    ),
    _f(
        "peer-cert-allowed-hostname",
        "",
        "Allowed TLS hostname for inter peer authentication.",
        group=_S,
    ),
    _b(
        "peer-auto-tls",
        "false",
        "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are "
        "not provided.",
        _S,
    ),
    _f(
        "peer-crl-file",
        "",
        "Path to the peer certificate revocation list file.",
        group=_S,
    ),
    _f(
        "cipher-suites",
        "",
        "Comma-separated list of supported TLS cipher suites between client/server and peers "
        "(empty will be auto-populated by Go).",
        group=_S,
    ),
    _f(
        "self-signed-cert-validity",
        "1",
        "The validity period of the client and peer certificates, unit is year",
        _uint,
        _S,
    ),
    _f(
        "tls-min-version",
        "TLS1.2",
        "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.",
        _one_of("TLS1.2", "TLS1.3"),
        _S,
    ),
    _f(
        "tls-max-version",
        "",
        "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty defers "
        "to Go).",
        _one_of("", "TLS1.2", "TLS1.3"),
        _S,
    ),
    _f(
        "cors",
        "*",
        "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, "
        "(empty or * means allow all).",
        group=_S,
        unsupported="the HTTP endpoints answer no cross-origin requests",
    ),
    _f(
        "host-whitelist",
        "*",
        "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * "
        "means allow all).",
        group=_S,
        unsupported="the HTTP endpoints check no Host header",
    ),
    # Auth
    _f(
        "auth-token",
        "simple",
        "Specify a v3 authentication token type and its options ('simple' or 'jwt').",
        group=_A,
    ),
    _f(
        "bcrypt-cost",
        "10",
        "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid "
        "values are between 4 and 31.",
        _int,
        _A,
    ),
    _f("auth-token-ttl", "300", "Time (in seconds) of the auth-token-ttl.", _uint, _A),
    # Profiling and monitoring
    _b(
        "enable-pprof",
        "false",
        'Enable runtime profiling data via HTTP server. Address is at client URL + "/debug/pprof/"',
        _P,
        unsupported="there is no Go profiler to expose",
    ),
    _f(
        "metrics",
        "basic",
        "Set level of detail for exported metrics, specify 'extensive' to include histogram "
        "metrics.",
        _one_of("basic", "extensive"),
        _P,
    ),
    _f(
        "listen-client-http-urls",
        "",
        "List of URLs to listen on for http only client traffic. Enabling this flag removes "
        "http services from --listen-client-urls.",
        _urls_optional,
        _P,
    ),
    _f(
        "listen-metrics-urls",
        "",
        "List of URLs to listen on for the metrics and health endpoints.",
        _urls_optional,
        _P,
    ),
    # Logging
    _f(
        "logger",
        "zap",
        "Currently only supports 'zap' for structured logging.",
        group=_L,
    ),
    _f(
        "log-outputs",
        "default",
        "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, "
        "or list of comma separated output targets. [pyetcd: 'systemd/journal' is refused; "
        "under systemd, stderr reaches the journal]",
        group=_L,
    ),
    _f(
        "log-format",
        "json",
        "Configures log format. Only supports json, console. Default is 'json'. [pyetcd: as "
        "etcd 3.6 has it (etcd 3.5 writes json only); console is pyetcd's human-readable "
        "lines]",
        group=_L,
    ),
    _f(
        "log-level",
        "info",
        "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
        _one_of("debug", "info", "warn", "error", "panic", "fatal"),
        _L,
    ),
    _b(
        "debug",
        "false",
        "Enable debug-level logging for etcd. Use '--log-level=debug' instead.",
        _L,
    ),
    _b(
        "enable-log-rotation",
        "false",
        "Enable log rotation of a single log-outputs file target.",
        _L,
        unsupported="no log rotation; rotate the file outside (logrotate's copytruncate)",
    ),
    _f(
        "log-rotation-config-json",
        '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}',
        "Configures log rotation if enabled with a JSON logger config. Default: "
        "MaxSize=100(MB), MaxAge=0(days,no limit), MaxBackups=0(no limit), "
        "LocalTime=false(UTC), Compress=false(gzip)",
        group=_L,
        unsupported="no log rotation",
    ),
    # Experimental
    _b(
        "experimental-initial-corrupt-check",
        "false",
        "Enable to check data corruption before serving any client/peer traffic.",
        _X,
        unsupported="no corruption check is implemented",
    ),
    _f(
        "experimental-corrupt-check-time",
        "0s",
        "Duration of time between cluster corruption check passes.",
        _duration,
        _X,
        unsupported="no corruption check is implemented",
    ),
    _f(
        "experimental-backend-bbolt-freelist-type",
        "map",
        "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend "
        "uses(array and map are supported types).",
        _one_of("array", "map"),
        _X,
        unsupported="the backend has the map (hashmap) freelist only",
    ),
    _b(
        "experimental-enable-lease-checkpoint",
        "false",
        "ExperimentalEnableLeaseCheckpoint enables primary lessor to persist lease remainingTTL "
        "to prevent indefinite auto-renewal of long lived leases.",
        _X,
    ),
    _f(
        "experimental-compaction-batch-limit",
        "1000",
        "ExperimentalCompactionBatchLimit sets the maximum revisions deleted in each compaction "
        "batch.",
        _int,
        _X,
    ),
    _b(
        "experimental-peer-skip-client-san-verification",
        "false",
        "Skip verification of SAN field in client certificate for peer connections.",
        _X,
    ),
    _f(
        "experimental-watch-progress-notify-interval",
        "10m",
        "Duration of periodical watch progress notification.",
        _duration,
        _X,
    ),
    _f(
        "experimental-snapshot-catchup-entries",
        "5000",
        "Number of entries for a slow follower to catch up after compacting the raft storage "
        "entries.",
        _uint,
        _X,
    ),
    _f(
        "experimental-warning-apply-duration",
        "100ms",
        "Warning is generated if requests take more than this duration.",
        _duration,
        _X,
        unsupported="no slow-apply warning is logged",
    ),
    # Unsafe
    _b("force-new-cluster", "false", "Force to create a new one-member cluster.", _U),
    _b(
        "unsafe-no-fsync",
        "false",
        "Disables fsync, unsafe, will cause data loss.",
        _U,
    ),
    Flag(
        "version",
        "false",
        "Print the version and exit.",
        parse_go_bool,
        is_bool=True,
        group="Version",
        from_env=False,
    ),
)


def _flag_set() -> FlagSet:
    return FlagSet(PROGRAM, FLAGS, env_prefix="ETCD")


def help_text() -> str:
    """The `--help` output, laid out as `etcd --help`."""
    head = [
        "Usage:",
        "",
        f"  {PROGRAM} [flags]",
        "    Start a pyetcd server (an etcd-compatible member).",
        "",
        f"  {PROGRAM} --version",
        "    Show the version of pyetcd.",
        "",
        f"  {PROGRAM} -h | --help",
        "    Show the help information about pyetcd.",
        "",
        "Every flag can also be given as an environment variable: --my-flag is ETCD_MY_FLAG.",
        "A flag on the command line wins over its environment variable.",
    ]
    return "\n".join(head + _flag_set().usage_lines()) + "\n"


def version_text() -> str:
    """`etcd --version` lines, telling the truth about the implementation."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return (
        f"etcd Version: {__version__}\n"
        f"Git SHA: pyetcd\n"
        f"Go Version: pyetcd on {platform.python_implementation()} {platform.python_version()}\n"
        f"Go OS/Arch: {platform.system().lower()}/{arch}\n"
    )


def parse_args(
    argv: Sequence[str],
    environ: Mapping[str, str],
    warn: Callable[[str], None] | None = None,
) -> ServerConfig:
    """Command line + environment -> validated `ServerConfig`.

    Raises `FlagError`/`ConfigError` (the message names the flag), `HelpRequested`, or
    `VersionRequested`. Warnings (shadowed or unrecognized `ETCD_*` variables) go to `warn`.
    """
    parsed = _flag_set().parse(argv, environ)
    if parsed.args:
        raise FlagError(f"'{parsed.args[0]}' is not a valid flag")
    v = parsed.values
    if v["version"]:
        raise VersionRequested
    refused = _flag_set().refused(parsed)
    if refused:
        raise ConfigError("; ".join(refused))
    if warn is not None:
        for message in parsed.warnings:
            warn(message)

    name = cast(str, v["name"])
    data_dir = cast(str, v["data-dir"])
    if data_dir in ("", "${name}.etcd"):
        data_dir = f"{name}.etcd"
    apurls = cast("tuple[URL, ...]", v["initial-advertise-peer-urls"])
    if parsed.is_set("initial-cluster"):
        initial_cluster = v["initial-cluster"]
    else:
        # etcd derives `<name>=<advertised peer URLs>` when --initial-cluster is left unset.
        initial_cluster = parse_initial_cluster(",".join(f"{name}={u}" for u in apurls))
    acurls = cast("tuple[URL, ...]", v["advertise-client-urls"])
    if parsed.is_set("listen-client-urls") and not parsed.is_set("advertise-client-urls"):
        # etcd drops the default advertise URL when the listen URLs were chosen explicitly.
        acurls = ()

    mode = cast(str, v["auto-compaction-mode"])
    retention_text = cast(str, v["auto-compaction-retention"])
    try:
        retention = parse_compaction_retention(mode, retention_text)
    except ConfigError as err:
        raise ConfigError(f"--auto-compaction-retention: {err}") from None

    quota = cast(int, v["quota-backend-bytes"])
    batch_interval = cast(float, v["backend-batch-interval"])
    batch_limit = cast(int, v["backend-batch-limit"])
    if batch_interval < 0:
        raise ConfigError("--backend-batch-interval must not be negative")
    log_level = cast(str, v["log-level"])
    if v["debug"]:
        log_level = "debug"

    config = ServerConfig(
        name=name,
        data_dir=data_dir,
        wal_dir=cast(str, v["wal-dir"]),
        listen_client_urls=cast("tuple[URL, ...]", v["listen-client-urls"]),
        advertise_client_urls=acurls,
        listen_peer_urls=cast("tuple[URL, ...]", v["listen-peer-urls"]),
        initial_advertise_peer_urls=apurls,
        listen_metrics_urls=cast("tuple[URL, ...]", v["listen-metrics-urls"]),
        listen_client_http_urls=cast("tuple[URL, ...]", v["listen-client-http-urls"]),
        initial_cluster=cast("Mapping[str, tuple[URL, ...]]", initial_cluster),
        initial_cluster_state=cast(ClusterState, v["initial-cluster-state"]),
        initial_cluster_token=cast(str, v["initial-cluster-token"]),
        force_new_cluster=cast(bool, v["force-new-cluster"]),
        strict_reconfig_check=cast(bool, v["strict-reconfig-check"]),
        pre_vote=cast(bool, v["pre-vote"]),
        initial_election_tick_advance=cast(bool, v["initial-election-tick-advance"]),
        snapshot_count=cast(int, v["snapshot-count"]),
        max_snapshots=cast(int, v["max-snapshots"]),
        max_wals=cast(int, v["max-wals"]),
        heartbeat_interval=cast(int, v["heartbeat-interval"]),
        election_timeout=cast(int, v["election-timeout"]),
        # etcd: 0 selects the default quota; a negative quota disables the alarm.
        quota_backend_bytes=DEFAULT_QUOTA_BYTES if quota == 0 else quota,
        backend_batch_interval=batch_interval or DEFAULT_BACKEND_BATCH_INTERVAL,
        backend_batch_limit=batch_limit if batch_limit > 0 else DEFAULT_BACKEND_BATCH_LIMIT,
        unsafe_no_fsync=cast(bool, v["unsafe-no-fsync"]),
        max_txn_ops=cast(int, v["max-txn-ops"]),
        max_request_bytes=cast(int, v["max-request-bytes"]),
        max_concurrent_streams=cast(int, v["max-concurrent-streams"]),
        grpc_stack=cast(GrpcStack, v["grpc-stack"]),
        experimental_grpc_frontends=cast(int, v["experimental-grpc-frontends"]),
        grpc_keepalive_min_time=cast(float, v["grpc-keepalive-min-time"]),
        grpc_keepalive_interval=cast(float, v["grpc-keepalive-interval"]),
        grpc_keepalive_timeout=cast(float, v["grpc-keepalive-timeout"]),
        auto_compaction_mode=cast(CompactionMode, mode),
        auto_compaction_retention=retention_text,
        compaction_retention_seconds=float(retention) if mode == "periodic" else 0.0,
        compaction_retention_revisions=int(retention) if mode == "revision" else 0,
        experimental_compaction_batch_limit=cast(int, v["experimental-compaction-batch-limit"]),
        experimental_watch_progress_notify_interval=cast(
            float, v["experimental-watch-progress-notify-interval"]
        ),
        experimental_enable_lease_checkpoint=cast(bool, v["experimental-enable-lease-checkpoint"]),
        snapshot_catchup_entries=cast(int, v["experimental-snapshot-catchup-entries"]),
        auth_token=cast(str, v["auth-token"]),
        bcrypt_cost=cast(int, v["bcrypt-cost"]),
        auth_token_ttl=cast(int, v["auth-token-ttl"]),
        client_tls=TLSInfo(
            cert_file=cast(str, v["cert-file"]),
            key_file=cast(str, v["key-file"]),
            trusted_ca_file=cast(str, v["trusted-ca-file"]),
            client_cert_auth=cast(bool, v["client-cert-auth"]),
            crl_file=cast(str, v["client-crl-file"]),
            auto_tls=cast(bool, v["auto-tls"]),
            allowed_hostname=cast(str, v["client-cert-allowed-hostname"]),
        ),
        peer_tls=TLSInfo(
            cert_file=cast(str, v["peer-cert-file"]),
            key_file=cast(str, v["peer-key-file"]),
            trusted_ca_file=cast(str, v["peer-trusted-ca-file"]),
            client_cert_auth=cast(bool, v["peer-client-cert-auth"]),
            crl_file=cast(str, v["peer-crl-file"]),
            auto_tls=cast(bool, v["peer-auto-tls"]),
            allowed_cn=cast(str, v["peer-cert-allowed-cn"]),
            allowed_hostname=cast(str, v["peer-cert-allowed-hostname"]),
            skip_client_san_verify=cast(bool, v["experimental-peer-skip-client-san-verification"]),
        ),
        self_signed_cert_validity=cast(int, v["self-signed-cert-validity"]),
        tls_options=TLSOptions(
            min_version=cast(str, v["tls-min-version"]),
            max_version=cast(str, v["tls-max-version"]),
            cipher_suites=tuple(
                c for c in cast(str, v["cipher-suites"]).split(",") if c.strip() != ""
            ),
        ),
        logger=cast(str, v["logger"]),
        log_outputs=_unique_strings(cast(str, v["log-outputs"])),
        log_format=cast(LogFormat, v["log-format"]),
        log_level=cast(LogLevel, log_level),
        metrics=cast(MetricsLevel, v["metrics"]),
    )
    config.validate()
    return config


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Entry point of the `pyetcd` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    try:
        config = parse_args(
            args, env, warn=lambda m: print(f"{PROGRAM}: warning: {m}", file=sys.stderr)
        )
    except HelpRequested:
        sys.stdout.write(help_text())
        raise SystemExit(0) from None
    except VersionRequested:
        sys.stdout.write(version_text())
        raise SystemExit(0) from None
    except ConfigError as err:
        _fail(f"{err} (see '{PROGRAM} --help')")

    # Imported here, not at the top: flag parsing must work (and be testable) without loading
    # the server.
    from pyetcd.api.serve import run

    run(config)
