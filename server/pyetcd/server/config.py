"""Server configuration: the validated settings of one member, and etcd's flag grammar.

`ServerConfig` is what `pyetcd.server.run` receives; every value in it has been checked the way
etcd checks it (`embed.Config.Validate`, `ServerConfig.VerifyBootstrap`), so the server never
re-validates. The pieces of Go's `flag` package that etcd's command line depends on live here too
(`FlagSet`: `-flag`, `--flag`, `--flag=value`, boolean flags, `ETCD_*` environment variables),
together with the value parsers etcd uses (URLs as `types.NewURLs`, `--initial-cluster` as
`types.NewURLsMap`, Go durations as `time.ParseDuration`), so that `pyetcd.cli` and `pyetcd.utl`
share one grammar. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from pyetcd.logutil import DEFAULT_OUTPUT, JOURNAL_OUTPUT, LogFormat
from pyetcd.transport.tls import TLSConfigError, TLSInfo, TLSOptions

__all__ = [
    "DEFAULT_BACKEND_BATCH_INTERVAL",
    "DEFAULT_BACKEND_BATCH_LIMIT",
    "DEFAULT_QUOTA_BYTES",
    "MAX_ELECTION_MS",
    "MAX_QUOTA_BYTES",
    "URL",
    "ClusterState",
    "CompactionMode",
    "ConfigError",
    "Flag",
    "FlagError",
    "FlagSet",
    "HelpRequested",
    "LogFormat",
    "LogLevel",
    "MetricsLevel",
    "ServerConfig",
    "TLSInfo",
    "TLSOptions",
    "flag_to_env",
    "format_urls",
    "parse_compaction_retention",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_int",
    "parse_initial_cluster",
    "parse_url",
    "parse_urls",
]

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
"""etcd's `DefaultQuotaBytes`: used when `--quota-backend-bytes` is 0."""
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024
"""etcd's `MaxQuotaBytes`: larger quotas are allowed but warned about."""
MAX_ELECTION_MS = 50000
"""etcd's `maxElectionMs`."""
DEFAULT_BACKEND_BATCH_INTERVAL = 0.1
"""Seconds; etcd's `defaultBatchInterval`, used when `--backend-batch-interval` is 0."""
DEFAULT_BACKEND_BATCH_LIMIT = 10000
"""etcd's `defaultBatchLimit`, used when `--backend-batch-limit` is 0."""

ClusterState = Literal["new", "existing"]
CompactionMode = Literal["periodic", "revision"]
LogLevel = Literal["debug", "info", "warn", "error", "panic", "fatal"]
MetricsLevel = Literal["basic", "extensive"]
GrpcStack = Literal["h2", "grpcio"]
MAX_GRPC_FRONTENDS = 64


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag, as etcd's messages do."""


class FlagError(ConfigError):
    """The command line itself is malformed (unknown flag, missing or unparsable value)."""


class HelpRequested(Exception):  # noqa: N818 - a signal, like Go's flag.ErrHelp
    """`-h`/`--help` was given: Go's `flag.ErrHelp`."""


# --------------------------------------------------------------------------------------------
# URLs (etcd's types.NewURLs)


class URL(str):
    """One http(s) URL of a member, as etcd's `types.URLs` holds it (no path, explicit port).

    It is the normalised URL text itself (Go's `url.URL.String()`: lower-case scheme, IPv6 hosts
    in brackets), so it can be used wherever a URL string is expected, with the parsed parts
    alongside.
    """

    scheme: Literal["http", "https"]
    host: str
    """Host name or IP address as written; IPv6 addresses without brackets."""
    port: int

    def __new__(cls, scheme: Literal["http", "https"], host: str, port: int) -> URL:
        shown = f"[{host}]" if ":" in host else host
        self = super().__new__(cls, f"{scheme}://{shown}:{port}")
        self.scheme = scheme
        self.host = host
        self.port = port
        return self

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"

    def __reduce__(self) -> tuple[type[URL], tuple[str, str, int]]:
        return (URL, (self.scheme, self.host, self.port))

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_url(text: str) -> URL:
    """Parse one URL the way `types.NewURLs` does; the error texts are etcd's."""
    raw = text.strip()
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        if sep and scheme in ("unix", "unixs"):
            raise ConfigError(f"unix socket URLs are not supported by pyetcd: {raw}")
        raise ConfigError(f"URL scheme must be http, https, unix, or unixs: {raw}")
    hostport, slash, path = rest.partition("/")
    if slash or "?" in hostport or "#" in hostport:
        if path or slash:
            raise ConfigError(f"URL must not contain a path: {raw}")
        raise ConfigError(f"URL must not contain a query or fragment: {raw}")
    if "@" in hostport:
        raise ConfigError(f"URL must not contain user information: {raw}")
    host, port_text = _split_host_port(hostport, raw)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"URL has an invalid port: {raw}")
    return URL(scheme="https" if scheme == "https" else "http", host=host, port=int(port_text))


def _split_host_port(hostport: str, raw: str) -> tuple[str, str]:
    # net.SplitHostPort: "host:port" or "[v6]:port"; anything else is etcd's "host:port" error.
    bad = ConfigError(f'URL address does not have the form "host:port": {raw}')
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or hostport[end + 1 : end + 2] != ":":
            raise bad
        return hostport[1:end], hostport[end + 2 :]
    host, sep, port = hostport.rpartition(":")
    if not sep or ":" in host:
        raise bad
    return host, port


def parse_urls(text: str, *, allow_empty: bool = False) -> tuple[URL, ...]:
    """A comma-separated URL list (`flags.URLsValue`); order is kept as given."""
    if text.strip() == "":
        if allow_empty:
            return ()
        raise ConfigError("no valid URLs given")
    return tuple(parse_url(part) for part in text.split(","))


def format_urls(urls: Iterable[URL]) -> str:
    return ",".join(str(u) for u in urls)


def parse_initial_cluster(text: str) -> MappingProxyType[str, tuple[URL, ...]]:
    """`types.NewURLsMap`: `name=url,name=url`; a repeated name adds a URL to that member.

    Names keep their first-appearance order. etcd sorts each member's URLs (`NewURLs` sorts), so
    the tuples are sorted by their string form, as member IDs and the stored member JSON use them.
    """
    grouped: dict[str, list[URL]] = {}
    for item in text.split(","):
        if item == "":
            continue
        name, _, value = item.partition("=")
        grouped.setdefault(name, []).append(parse_url(value))
    return MappingProxyType({name: tuple(sorted(urls, key=str)) for name, urls in grouped.items()})


# --------------------------------------------------------------------------------------------
# Go scalar grammars (strconv, time.ParseDuration)

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    """`strconv.ParseBool`."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError("parse error")


_DURATION_UNITS: Mapping[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts both micro signs
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_DURATION_UNIT = re.compile(r"[^0-9.]*")


def parse_go_duration(text: str) -> float:
    """`time.ParseDuration`, in seconds: `300ms`, `1.5h`, `1h30m`, `-2s`, `0`."""
    orig = text
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if s == "":
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        number = _DURATION_NUMBER.match(s)
        assert number is not None  # the pattern matches the empty string
        whole, frac = number.group(1), number.group(2)
        if whole == "" and not frac:
            raise ValueError(f'time: invalid duration "{orig}"')
        s = s[number.end() :]
        unit_match = _DURATION_UNIT.match(s)
        assert unit_match is not None
        unit = unit_match.group(0)
        if unit == "":
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        s = s[len(unit) :]
        total += float(f"{whole or '0'}.{frac or '0'}") * _DURATION_UNITS[unit]
    return -total if negative else total


def parse_go_int(text: str, *, bits: int, signed: bool) -> int:
    # strconv.ParseInt/ParseUint with base 0 (what Go's flag package uses): 0x.., 0o.., 0b..,
    # a leading 0 for octal, and '_' separators; the flag package's errors are "parse error" and
    # "value out of range".
    s = text
    sign = 1
    if signed and s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    try:
        if re.fullmatch(r"0[0-7_]+", s):
            value = int(s.replace("_", ""), 8)
        else:
            value = int(s, 0)
    except ValueError:
        raise ValueError("parse error") from None
    if s[:1] in ("-", "+") or " " in s:
        raise ValueError("parse error")
    value *= sign
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError("value out of range")
    return value


def parse_compaction_retention(mode: str, retention: str) -> float | int:
    """etcd's `parseCompactionRetention`.

    Periodic mode: a bare non-negative integer is hours, anything else a Go duration; the result
    is in seconds. Revision mode: a non-negative integer count of revisions. 0 disables.
    """
    if re.fullmatch(r"\+?[0-9]+", retention):
        count = int(retention)
        return count if mode == "revision" else float(count * 3600)
    if mode == "revision":
        # etcd would read a duration here as a count of nanoseconds: refuse the trap instead.
        raise ConfigError(
            f"invalid --auto-compaction-retention {retention!r}: "
            "revision mode expects a non-negative integer number of revisions"
        )
    try:
        seconds = parse_go_duration(retention)
    except ValueError as err:
        raise ConfigError(f"error parsing CompactionRetention: {err}") from None
    if seconds < 0:
        raise ConfigError(
            f"invalid --auto-compaction-retention {retention!r}: must not be negative"
        )
    return seconds


# --------------------------------------------------------------------------------------------
# Go's flag package, as etcd uses it


def flag_to_env(prefix: str, name: str) -> str:
    """`flags.FlagToEnv`: `ETCD` + `initial-cluster` -> `ETCD_INITIAL_CLUSTER`."""
    return prefix + "_" + name.upper().replace("-", "_")


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line flag: its Go type decides the grammar, `parse` checks the value."""

    name: str
    default: str
    """The default as text, run through `parse` like a given value (etcd prints it in help)."""
    usage: str
    parse: Callable[[str], object]
    """Raises ValueError/ConfigError with the reason Go's flag package would print."""
    is_bool: bool = False
    group: str = ""
    unsupported: str = ""
    """Why pyetcd does not implement the flag (empty: it does). Such a flag is accepted at its
    default only: any other value is refused at start (``refused``), never accepted and
    ignored."""
    from_env: bool = True
    """Whether `<PREFIX>_<NAME>` may set it (not for `--version`: images export ETCD_VERSION)."""


@dataclass(slots=True)
class ParsedFlags:
    """What `FlagSet.parse` found: parsed values for every flag, and which were set where."""

    values: dict[str, object]
    set_on_command_line: set[str]
    set_from_env: set[str]
    args: list[str]
    warnings: list[str]

    def is_set(self, name: str) -> bool:
        return name in self.set_on_command_line or name in self.set_from_env


class FlagSet:
    """Go `flag.FlagSet` semantics plus etcd's `flags.SetFlagsFromEnv`.

    Accepts `-name v`, `--name v`, `-name=v`, `--name=v`; a boolean flag takes no separate
    argument (`--x` is true, `--x=false` false); parsing stops at the first non-flag argument or
    after `--`; a repeated flag keeps its last value.
    """

    def __init__(self, program: str, flags: Sequence[Flag], env_prefix: str = "ETCD") -> None:
        self.program = program
        self.env_prefix = env_prefix
        self.flags: dict[str, Flag] = {}
        for f in flags:
            if f.name in self.flags:
                raise ValueError(f"flag redefined: {f.name}")
            self.flags[f.name] = f

    def parse(
        self, argv: Sequence[str], environ: Mapping[str, str], *, non_flag_env: Iterable[str] = ()
    ) -> ParsedFlags:
        values: dict[str, object] = {}
        for f in self.flags.values():
            values[f.name] = f.parse(f.default)
        on_cli: set[str] = set()
        args = list(argv)
        i = 0
        while i < len(args):
            arg = args[i]
            if len(arg) < 2 or arg[0] != "-":
                break
            num_minuses = 2 if arg.startswith("--") else 1
            if arg == "--":
                i += 1
                break
            name = arg[num_minuses:]
            if name == "" or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
            i += 1
            name, has_value, value = name.partition("=")
            if name in ("h", "help") and name not in self.flags:
                raise HelpRequested
            flag = self.flags.get(name)
            if flag is None:
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.is_bool and not has_value:
                value = "true"
            elif not has_value:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args[i]
                i += 1
            try:
                values[name] = flag.parse(value)
            except ValueError as err:
                if flag.is_bool:
                    raise FlagError(f'invalid boolean value "{value}" for -{name}: {err}') from None
                raise FlagError(f'invalid value "{value}" for flag -{name}: {err}') from None
            on_cli.add(name)
        rest = args[i:]

        warnings: list[str] = []
        from_env: set[str] = set()
        used_keys: set[str] = set()
        for name, flag in self.flags.items():
            if not flag.from_env:
                continue
            key = flag_to_env(self.env_prefix, name)
            # Known even when empty (etcd would call an empty one "unrecognized"; it is not).
            used_keys.add(key)
            raw = environ.get(key, "")
            if raw == "":
                continue
            if name in on_cli:
                # etcd 3.4/3.5 refuse to start here (pkg/flags verifyEnv): whoever set both must
                # learn which one they meant rather than have one silently ignored.
                raise FlagError(
                    f'conflicting environment variable "{key}" is shadowed'
                    " by corresponding command-line flag"
                    " (either unset environment variable or disable flag)"
                )
            try:
                values[name] = flag.parse(raw)
            except ValueError as err:
                raise FlagError(f'invalid value "{raw}" for {key}: {err}') from None
            from_env.add(name)
        known_other = set(non_flag_env) | {
            flag_to_env(self.env_prefix, f.name) for f in self.flags.values() if not f.from_env
        }
        for key, raw in sorted(environ.items()):
            if (
                key.startswith(self.env_prefix + "_")
                and key not in used_keys
                and key not in known_other
            ):
                warnings.append(f"unrecognized environment variable {key}={raw}")
        return ParsedFlags(values, on_cli, from_env, rest, warnings)

    def refused(self, parsed: ParsedFlags) -> list[str]:
        """One message per unsupported flag that was given a value other than its default."""
        found = []
        for name, f in self.flags.items():
            if f.unsupported and parsed.is_set(name) and parsed.values[name] != f.parse(f.default):
                found.append(
                    f"--{name} is not supported by pyetcd ({f.unsupported}): leave it at its "
                    f"default ('{f.default}') rather than have it ignored"
                )
        return found

    def usage_lines(self) -> list[str]:
        """etcd's help layout: `--name 'default'` then the indented usage text."""
        lines: list[str] = []
        group = None
        for f in self.flags.values():
            if f.group != group:
                group = f.group
                lines.extend(["", f"{group}:"])
            default = f.default
            lines.append(f"  --{f.name} '{default}'")
            usage = f.usage + (
                f" [pyetcd: only the default; {f.unsupported}]" if f.unsupported else ""
            )
            lines.extend(f"    {line}" for line in usage.splitlines())
        return lines


# --------------------------------------------------------------------------------------------
# The validated configuration


def _cluster_default() -> MappingProxyType[str, tuple[URL, ...]]:
    return MappingProxyType({"default": (URL("http", "localhost", 2380),)})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every setting one member needs, already validated (see `validate`).

    Durations are seconds (float), except `heartbeat_interval` and `election_timeout`, which keep
    etcd's milliseconds as given on the command line.
    """

    name: str = "default"
    data_dir: str = "default.etcd"
    wal_dir: str = ""
    """Dedicated WAL directory; empty means `<data_dir>/member/wal`."""

    listen_client_urls: tuple[URL, ...] = (URL("http", "localhost", 2379),)
    advertise_client_urls: tuple[URL, ...] = (URL("http", "localhost", 2379),)
    listen_peer_urls: tuple[URL, ...] = (URL("http", "localhost", 2380),)
    initial_advertise_peer_urls: tuple[URL, ...] = (URL("http", "localhost", 2380),)
    listen_metrics_urls: tuple[URL, ...] = ()
    # etcd 3.5: when set, the HTTP endpoints move here and gRPC owns the client URLs alone.
    listen_client_http_urls: tuple[URL, ...] = ()

    initial_cluster: Mapping[str, tuple[URL, ...]] = field(default_factory=_cluster_default)
    """name -> sorted peer URLs, in the order the names were given."""
    initial_cluster_state: ClusterState = "new"
    initial_cluster_token: str = "etcd-cluster"
    force_new_cluster: bool = False
    strict_reconfig_check: bool = True
    pre_vote: bool = True
    initial_election_tick_advance: bool = True

    snapshot_count: int = 100000
    snapshot_catchup_entries: int = 5000
    """Raft log entries kept after a snapshot for slow followers (etcd's
    `--experimental-snapshot-catchup-entries`); a follower further behind gets a snapshot."""
    max_snapshots: int = 5
    max_wals: int = 5
    heartbeat_interval: int = 100
    """Milliseconds (etcd's TickMs)."""
    election_timeout: int = 1000
    """Milliseconds (etcd's ElectionMs)."""

    quota_backend_bytes: int = DEFAULT_QUOTA_BYTES
    """Effective quota: 0 on the command line becomes the 2 GiB default; negative disables it."""
    backend_batch_interval: float = DEFAULT_BACKEND_BATCH_INTERVAL
    backend_batch_limit: int = DEFAULT_BACKEND_BATCH_LIMIT
    unsafe_no_fsync: bool = False
    """etcd's `--unsafe-no-fsync`: skip fsync of the WAL and backend (tests only; data loss)."""

    max_txn_ops: int = 128
    max_request_bytes: int = 1572864
    max_concurrent_streams: int = (1 << 32) - 1
    grpc_stack: GrpcStack = "h2"
    """What serves gRPC: pyetcd's HTTP/2 stack (``api.h2``) or grpcio's asyncio server."""
    experimental_grpc_frontends: int = 0
    """Processes that serve the client URLs' HTTP/2 and relay calls to the member
    (``api.relay``); 0: the member serves them itself."""
    grpc_keepalive_min_time: float = 5.0
    grpc_keepalive_interval: float = 7200.0
    grpc_keepalive_timeout: float = 20.0

    auto_compaction_mode: CompactionMode = "periodic"
    auto_compaction_retention: str = "0"
    """As given; see `compaction_retention_seconds` / `compaction_retention_revisions`."""
    compaction_retention_seconds: float = 0.0
    """Periodic mode: retention window in seconds (0 disables auto compaction)."""
    compaction_retention_revisions: int = 0
    """Revision mode: revisions to keep (0 disables auto compaction)."""
    experimental_compaction_batch_limit: int = 1000

    experimental_watch_progress_notify_interval: float = 600.0
    experimental_enable_lease_checkpoint: bool = False

    auth_token: str = "simple"
    bcrypt_cost: int = 10
    auth_token_ttl: int = 300

    client_tls: TLSInfo = field(default_factory=TLSInfo)
    peer_tls: TLSInfo = field(default_factory=TLSInfo)
    tls_options: TLSOptions = field(default_factory=TLSOptions)
    self_signed_cert_validity: int = 1
    """Years of the --auto-tls / --peer-auto-tls certificates."""

    logger: str = "zap"
    """``--logger``: etcd 3.5 has only zap."""
    log_outputs: tuple[str, ...] = (DEFAULT_OUTPUT,)
    """``--log-outputs``: ``default`` (stderr), ``stderr``, ``stdout`` or file paths."""
    log_format: LogFormat = "json"
    """``--log-format``: zap's JSON lines (etcd's default) or pyetcd's console lines."""
    log_level: LogLevel = "info"
    metrics: MetricsLevel = "basic"

    # ----------------------------------------------------------------------------- derived

    @property
    def member_dir(self) -> str:
        return f"{self.data_dir}/member"

    @property
    def snap_dir(self) -> str:
        return f"{self.data_dir}/member/snap"

    @property
    def backend_path(self) -> str:
        """etcd's bbolt file: `<data-dir>/member/snap/db`."""
        return f"{self.data_dir}/member/snap/db"

    @property
    def effective_wal_dir(self) -> str:
        return self.wal_dir or f"{self.data_dir}/member/wal"

    @property
    def election_ticks(self) -> int:
        """etcd's `ElectionTicks = ElectionMs / TickMs` (integer division)."""
        return self.election_timeout // self.heartbeat_interval

    @property
    def heartbeat_seconds(self) -> float:
        return self.heartbeat_interval / 1000.0

    @property
    def election_timeout_seconds(self) -> float:
        return self.election_timeout / 1000.0

    @property
    def min_lease_ttl(self) -> int:
        """etcd: `ceil(((3 * ElectionTicks) / 2) * TickMs)` in seconds (integer tick division)."""
        min_ms = (3 * self.election_ticks) // 2 * self.heartbeat_interval
        return math.ceil(min_ms / 1000)

    @property
    def quota_enabled(self) -> bool:
        return self.quota_backend_bytes > 0

    @property
    def max_recv_bytes(self) -> int:
        """gRPC maximum receive size: `--max-request-bytes` + 512 KiB (etcd's grpcOverheadBytes)."""
        return self.max_request_bytes + 512 * 1024

    @property
    def initial_peer_urls(self) -> tuple[URL, ...]:
        """This member's own peer URLs from `--initial-cluster` (sorted)."""
        return self.initial_cluster.get(self.name, ())

    def replace(self, **changes: object) -> ServerConfig:
        """A copy with some fields changed, validated again."""
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new

    def __post_init__(self) -> None:
        if not isinstance(self.initial_cluster, MappingProxyType):
            # Keep the frozen config deeply read-only.
            object.__setattr__(
                self, "initial_cluster", MappingProxyType(dict(self.initial_cluster))
            )

    def validate(self) -> None:
        """etcd's checks (`embed.Config.Validate`, `VerifyBootstrap`/`VerifyJoinExisting`)."""
        self._validate_logging()
        self._validate_frontends()
        if self.name == "":
            raise ConfigError("--name must not be empty")
        if self.heartbeat_interval <= 0:
            raise ConfigError("--heartbeat-interval must be greater than 0")
        if 5 * self.heartbeat_interval > self.election_timeout:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout}ms] should be at least as 5 times "
                f"as --heartbeat-interval[{self.heartbeat_interval}ms]"
            )
        if self.election_timeout > MAX_ELECTION_MS:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout}ms] is too long, and should be "
                f"set less than {MAX_ELECTION_MS}ms"
            )
        for flag_name, urls in (
            ("--listen-peer-urls", self.listen_peer_urls),
            ("--listen-client-urls", self.listen_client_urls),
            ("--listen-metrics-urls", self.listen_metrics_urls),
            ("--listen-client-http-urls", self.listen_client_http_urls),
        ):
            for u in urls:
                # embed.checkBindURLs: listeners bind IPs; "localhost" is the one name allowed.
                if u.host != "localhost" and not u.is_ip:
                    raise ConfigError(f"{flag_name}: expected IP in URL for binding ({u})")
        if not self.listen_client_urls:
            raise ConfigError("--listen-client-urls: no valid URLs given")
        if not self.listen_peer_urls:
            raise ConfigError("--listen-peer-urls: no valid URLs given")
        if not self.advertise_client_urls:
            raise ConfigError(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly"
            )
        try:
            self.tls_options.check()
        except TLSConfigError as err:
            raise ConfigError(str(err)) from None
        if self.listen_client_http_urls and any(
            u.scheme == "https" for u in self.listen_client_urls
        ):
            raise ConfigError(
                "--listen-client-urls: https with --listen-client-http-urls (gRPC bound "
                "directly) is not supported by pyetcd yet; leave --listen-client-http-urls "
                "unset to serve gRPC and HTTP over TLS on the client URLs"
            )
        for u in self.listen_client_urls:
            if u.scheme == "https" and self.client_tls.empty and not self.client_tls.auto_tls:
                raise ConfigError(
                    f"TLS key/cert (--cert-file, --key-file) must be provided for client url "
                    f"{u} with HTTPS scheme"
                )
        for u in self.listen_peer_urls:
            if u.scheme == "https" and self.peer_tls.empty and not self.peer_tls.auto_tls:
                raise ConfigError(
                    f"TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for "
                    f"peer url {u} with HTTPS scheme"
                )
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(
                f'invalid value "{self.initial_cluster_state}" for flag -initial-cluster-state'
            )
        if self.auto_compaction_mode not in ("periodic", "revision"):
            raise ConfigError(f'unknown auto-compaction-mode "{self.auto_compaction_mode}"')
        if not 4 <= self.bcrypt_cost <= 31:
            raise ConfigError(f"--bcrypt-cost {self.bcrypt_cost}: valid values are 4 to 31")
        if self.max_request_bytes <= 0:
            raise ConfigError("--max-request-bytes must be greater than 0")
        if self.max_txn_ops <= 0:
            raise ConfigError("--max-txn-ops must be greater than 0")
        if self.experimental_watch_progress_notify_interval < 0:
            raise ConfigError("--experimental-watch-progress-notify-interval must not be negative")
        self._verify_cluster()

    def _validate_frontends(self) -> None:
        n = self.experimental_grpc_frontends
        if n < 0 or n > MAX_GRPC_FRONTENDS:
            raise ConfigError(
                f"--experimental-grpc-frontends must be between 0 and {MAX_GRPC_FRONTENDS}"
            )
        if n and self.grpc_stack != "h2":
            raise ConfigError("--experimental-grpc-frontends needs --grpc-stack=h2")
        if n and any(u.startswith("https") for u in self.listen_client_urls):
            raise ConfigError(
                "--experimental-grpc-frontends does not serve TLS yet: the client URLs must be "
                "http (TLS on the client port is served by the member itself without the flag)"
            )

    def _validate_logging(self) -> None:
        """etcd's ``setupLogging`` checks, with its messages; first, as etcd's ``Validate``."""
        if self.logger == "capnslog":
            raise ConfigError("--logger=capnslog is removed in v3.5")
        if self.logger != "zap":
            raise ConfigError(f'unknown logger option "{self.logger}"')
        outputs = self.log_outputs
        if len(outputs) > 1 and DEFAULT_OUTPUT in outputs:
            raise ConfigError(f'multi logoutput for "{DEFAULT_OUTPUT}" is not supported yet')
        if JOURNAL_OUTPUT in outputs:
            # etcd writes to journald's socket, else fails with "can't find journal".
            raise ConfigError(
                f"--log-outputs={JOURNAL_OUTPUT} is not supported by pyetcd (no journald "
                "writer): use 'default', 'stderr', 'stdout' or a file path; under systemd, "
                "stderr reaches the journal"
            )
        if "" in outputs:
            raise ConfigError("--log-outputs: an empty output target is not a file path")
        if self.log_format not in ("json", "console"):
            raise ConfigError(
                f"unknown log format: {self.log_format}, supported values json, console"
            )

    def _verify_cluster(self) -> None:
        cluster = self.initial_cluster
        if not cluster:
            raise ConfigError("--initial-cluster: initial cluster unset and no discovery URL found")
        if self.name not in cluster:
            raise ConfigError(
                f'--initial-cluster: couldn\'t find local name "{self.name}" in the initial '
                "cluster configuration"
            )
        seen: dict[str, str] = {}
        for name, urls in cluster.items():
            for u in urls:
                if str(u) in seen:
                    raise ConfigError(
                        f"--initial-cluster: initial cluster {self.initial_cluster_text} has "
                        f"duplicate url {u}"
                    )
                seen[str(u)] = name
        if self.initial_cluster_state == "new":
            # ServerConfig.advertiseMatchesCluster: this member's advertised peer URLs must be
            # exactly its --initial-cluster URLs (etcd also resolves names; pyetcd compares text).
            mine = sorted(str(u) for u in cluster[self.name])
            advertised = sorted(str(u) for u in self.initial_advertise_peer_urls)
            if mine != advertised:
                listed = ",".join(f"{self.name}={u}" for u in mine)
                raise ConfigError(
                    f"--initial-cluster has {listed} but missing from "
                    f"--initial-advertise-peer-urls={format_urls(self.initial_advertise_peer_urls)}"
                    f' ("{",".join(advertised)}" != "{",".join(mine)}")'
                )

    @property
    def initial_cluster_text(self) -> str:
        """`--initial-cluster` in etcd's `URLsMap.String()` form (names sorted)."""
        return ",".join(
            f"{name}={u}"
            for name in sorted(self.initial_cluster)
            for u in self.initial_cluster[name]
        )
