"""Value grammars etcd's flags use (URLs, Go durations, retention) and ServerConfig's checks."""

from __future__ import annotations

import dataclasses

import pytest
from pyetcd.server.config import (
    URL,
    ConfigError,
    Flag,
    FlagError,
    FlagSet,
    ServerConfig,
    flag_to_env,
    parse_compaction_retention,
    parse_go_bool,
    parse_go_duration,
    parse_go_int,
    parse_initial_cluster,
    parse_url,
    parse_urls,
)


@pytest.mark.parametrize(
    ("text", "url", "shown"),
    [
        ("http://127.0.0.1:2379", URL("http", "127.0.0.1", 2379), "http://127.0.0.1:2379"),
        (
            " HTTPS://etcd-0.etcd:2380 ",
            URL("https", "etcd-0.etcd", 2380),
            "https://etcd-0.etcd:2380",
        ),
        ("http://[::1]:2379", URL("http", "::1", 2379), "http://[::1]:2379"),
        ("http://localhost:0", URL("http", "localhost", 0), "http://localhost:0"),
    ],
)
def test_parse_url(text: str, url: URL, shown: str) -> None:
    assert parse_url(text) == url
    assert str(url) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:2379", "URL scheme must be http, https, unix, or unixs"),
        ("ftp://a:1", "URL scheme must be http, https, unix, or unixs"),
        ("unix://sock:1", "unix socket URLs are not supported"),
        ("http://a", 'URL address does not have the form "host:port"'),
        ("http://[::1]", 'URL address does not have the form "host:port"'),
        ("http://a:1/", "URL must not contain a path"),
        ("http://a:port", "URL has an invalid port"),
        ("http://a:70000", "URL has an invalid port"),
    ],
)
def test_parse_url_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(text)


def test_url_lists_and_initial_cluster() -> None:
    assert parse_urls("http://a:1,http://b:2") == (URL("http", "a", 1), URL("http", "b", 2))
    assert parse_urls("", allow_empty=True) == ()
    with pytest.raises(ConfigError, match="no valid URLs given"):
        parse_urls("")
    cluster = parse_initial_cluster("b=http://z:2,a=http://y:1,,b=http://x:2")
    assert list(cluster) == ["b", "a"]
    assert cluster["b"] == (URL("http", "x", 2), URL("http", "z", 2))  # sorted, as etcd's NewURLs


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("5s", 5.0),
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("2m3.5s", 123.5),
        ("-2s", -2.0),
        ("+1m", 60.0),
        ("1us", 1e-6),
        ("1µs", 1e-6),
        (".5s", 0.5),
        ("10ns", 1e-8),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("5", 'time: missing unit in duration "5"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("s", 'time: invalid duration "s"'),
        ("1h-5m", 'time: unknown unit "h-" in duration "1h-5m"'),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_go_duration(text)


def test_go_ints_and_bools() -> None:
    assert parse_go_int("0x10", bits=64, signed=False) == 16
    assert parse_go_int("010", bits=64, signed=False) == 8
    assert parse_go_int("-5", bits=64, signed=True) == -5
    for bad, reason in [("-1", "parse error"), ("1.5", "parse error"), ("", "parse error")]:
        with pytest.raises(ValueError, match=reason):
            parse_go_int(bad, bits=64, signed=False)
    with pytest.raises(ValueError, match="value out of range"):
        parse_go_int(str(1 << 32), bits=32, signed=False)
    assert [parse_go_bool(v) for v in ("1", "t", "TRUE", "True", "0", "f", "False")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        parse_go_bool("yes")


@pytest.mark.parametrize(
    ("mode", "text", "value"),
    [
        ("periodic", "0", 0.0),
        ("periodic", "2", 7200.0),
        ("periodic", "90m", 5400.0),
        ("periodic", "1h30m", 5400.0),
        ("revision", "1000", 1000),
        ("revision", "0", 0),
    ],
)
def test_compaction_retention(mode: str, text: str, value: float) -> None:
    assert parse_compaction_retention(mode, text) == value


@pytest.mark.parametrize(
    ("mode", "text"),
    [("periodic", "-1"), ("periodic", "-5m"), ("revision", "5m"), ("revision", "x")],
)
def test_compaction_retention_errors(mode: str, text: str) -> None:
    with pytest.raises(ConfigError):
        parse_compaction_retention(mode, text)


def test_flag_set_stops_at_first_argument_and_after_double_dash() -> None:
    flags = [Flag("a", "0", "", int), Flag("b", "false", "", parse_go_bool, is_bool=True)]
    fs = FlagSet("t", flags, env_prefix="T")
    parsed = fs.parse(["-a", "3", "--b", "rest", "-a", "4"], {})
    assert parsed.values == {"a": 3, "b": True}
    assert parsed.args == ["rest", "-a", "4"]
    parsed = fs.parse(["--", "-a"], {"T_A": "9"})
    assert parsed.values["a"] == 9
    assert parsed.args == ["-a"]
    assert parsed.set_from_env == {"a"}
    with pytest.raises(FlagError, match="flag provided but not defined: -c"):
        fs.parse(["-c"], {})
    assert flag_to_env("ETCD", "initial-cluster-token") == "ETCD_INITIAL_CLUSTER_TOKEN"


def test_server_config_defaults_validate_and_derive() -> None:
    c = ServerConfig()
    c.validate()
    assert c.backend_path == "default.etcd/member/snap/db"
    assert c.effective_wal_dir == "default.etcd/member/wal"
    assert c.election_ticks == 10
    assert c.min_lease_ttl == 2
    assert c.quota_enabled
    assert not dataclasses.replace(c, quota_backend_bytes=-1).quota_enabled
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.initial_cluster["x"] = ()  # type: ignore[index]
    changed = c.replace(snapshot_count=5)
    assert changed.snapshot_count == 5
    with pytest.raises(ConfigError, match="should be at least as 5 times"):
        c.replace(heartbeat_interval=300)


def test_urls_are_their_normalised_text() -> None:
    u = parse_url("HTTP://[::1]:2379")
    assert u == "http://[::1]:2379"
    assert (u.scheme, u.host, u.port, u.hostport, u.is_ip) == (
        "http",
        "::1",
        2379,
        "[::1]:2379",
        True,
    )
    assert ", ".join(parse_urls("http://a:1,http://b:2")) == "http://a:1, http://b:2"
    assert not parse_url("http://etcd-0:1").is_ip
