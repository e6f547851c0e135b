"""etcd's log, as tools read it: zap JSON lines in the --log-outputs file, etcd's lifecycle lines.

A real pyetcd member writes its log with ``--logger zap --log-format json --log-outputs <file>``;
every line must parse, with zap's keys first, and the lines scripts wait for must be there with
etcd's fields. Upstream etcd is started the same way, Debian's 3.4 (``--logger zap``) and the
3.5 build (``make etcd35``), and the lifecycle lines both print are compared key by key: with
3.5 exactly, with 3.4 but for what 3.5 added.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Member, wait_for
from tests.integration.conftest import MemberRegistry, start_or_fail
from tools import etcd35

pytestmark = pytest.mark.integration

ZAP_KEYS = ["level", "ts", "caller", "msg"]
LEVELS = {"debug", "info", "warn", "error", "dpanic", "panic", "fatal"}
# etcd 3.5's time layout (3.4 printed milliseconds: checked separately below).
TS_35 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})$")
TS_34 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})$")
CALLER = re.compile(r"^[\w.-]+(/[\w.-]+)?:\d+$")

INSECURE = "serving client traffic insecurely; this is strongly discouraged!"
PUBLISHED = "published local member to cluster through raft"
# Lines both etcd 3.4 and pyetcd (as etcd 3.5) print over a start and a SIGTERM.
LIFECYCLE = (
    "configuring peer listeners",
    "configuring client listeners",
    "starting an etcd server",
    "now serving peer/client/metrics",
    "serving peer traffic",
    PUBLISHED,
    INSECURE,
    "received signal; shutting down",
    "closing etcd server",
    "closed etcd server",
)

Line = dict[str, Any]


def zap_lines(path: Path) -> list[Line]:
    """Every line of ``path`` as JSON; a line that is not a JSON object fails the test."""
    out: list[Line] = []
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path}:{number} is not JSON ({exc}): {text!r}")
        assert isinstance(line, dict), f"{path}:{number}: {text!r}"
        out.append(line)
    return out


def zap_shaped(line: Line) -> bool:
    """zap's key order: level, ts, [logger,] caller, msg, then the fields."""
    keys = list(line)
    if "logger" in keys:
        if keys.index("logger") != 2:
            return False
        keys.remove("logger")
    return keys[:4] == ZAP_KEYS


def the(lines: list[Line], msg: str) -> Line:
    found = [line for line in lines if line["msg"] == msg]
    assert found, f"no {msg!r} line among {[line['msg'] for line in lines]}"
    return found[0]


def logged(path: Path, msg: str) -> list[Line] | None:
    """The file's lines once one of them has ``msg`` (None before: a wait_for condition)."""
    if not path.exists():
        return None
    text = path.read_text(errors="replace")
    # Only whole lines: the writer may be in the middle of one.
    complete = text[: text.rfind("\n") + 1]
    if f'"msg":"{msg}"' not in complete:
        return None
    return [json.loads(t) for t in complete.splitlines()]


def ready_in(path: Path) -> Callable[[], list[Line] | None]:
    return lambda: logged(path, INSECURE)


def zap_member(members: MemberRegistry, flavour: str, log: Path, *more: str) -> Member:
    flags = ["--logger=zap", f"--log-outputs={log}", *more]
    return members.new("etcd" if flavour == "etcd" else "pyetcd", extra_flags=flags)


def test_pyetcd_writes_zap_json_lines_with_etcd_s_lifecycle_lines(
    members: MemberRegistry, tmp_path: Path
) -> None:
    log = tmp_path / "zap.log"
    member = zap_member(members, "pyetcd", log, "--log-format=json")
    wait_for("the ready line", ready_in(log), 10, member)
    assert member.etcdctl("put", "k", "v").returncode == 0
    member.stop()

    lines = zap_lines(log)
    for line in lines:
        assert zap_shaped(line), line
        assert line["level"] in LEVELS, line
        assert TS_35.match(line["ts"]), line
        assert CALLER.match(line["caller"]), line
    msgs = [line["msg"] for line in lines]
    # The order scripts rely on: published, then ready, then serving.
    assert msgs.index(PUBLISHED) < msgs.index("ready to serve client requests")
    assert msgs.index("ready to serve client requests") < msgs.index(INSECURE)
    assert msgs[-1] == "closed etcd server"

    published = the(lines, PUBLISHED)
    member_id = published["local-member-id"]
    assert re.fullmatch(r"[0-9a-f]{1,16}", member_id)
    assert published["local-member-attributes"] == (
        f"{{Name:{member.name} ClientURLs:[{member.client_url}]}}"
    )
    # ReqTimeout: 5 s + 2 x the 500 ms election timeout of the fixtures.
    assert published["publish-timeout"] == "6s"
    serving = the(lines, INSECURE)
    assert (serving["traffic"], serving["address"]) == ("grpc+http", member.host_port)
    assert the(lines, "serving peer traffic")["address"] == f"127.0.0.1:{member.peer_port}"
    assert the(lines, "now serving peer/client/metrics")["local-member-id"] == member_id
    assert the(lines, "received signal; shutting down")["signal"] == "terminated"
    # The log went to the file only: stdout and stderr carry none of it.
    assert "ready to serve" not in member.log_path.read_text(errors="replace")


def test_console_format_keeps_human_lines_with_the_fields(
    members: MemberRegistry, tmp_path: Path
) -> None:
    log = tmp_path / "console.log"
    member = zap_member(members, "pyetcd", log, "--log-format=console")

    def ready() -> str | None:
        text = log.read_text(errors="replace") if log.exists() else ""
        return text if INSECURE in text else None

    text = wait_for("the ready line", ready, 10, member)
    line = next(t for t in text.splitlines() if INSECURE in t)
    assert not line.startswith("{")
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pyetcd: ", line), line
    assert line.endswith(f'{{"traffic": "grpc+http", "address": "{member.host_port}"}}')


def test_a_log_file_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    member = Member("pyetcd", tmp_path / "m", extra_flags=[f"--log-outputs={tmp_path}/no/x.log"])
    member.start()
    assert member.proc is not None
    assert member.proc.wait(timeout=30) == 1
    text = member.log_path.read_text()
    assert f"pyetcd: --log-outputs: cannot open {tmp_path}/no/x.log" in text


class BuiltEtcd(Member):
    """Upstream etcd from the 3.5 build (``make etcd35``) instead of Debian's 3.4."""

    binary: Path | None = None

    def command(self) -> list[str]:
        argv = super().command()
        if self.binary is not None:
            argv[0] = str(self.binary)
        return argv


def upstream_member(members: MemberRegistry, version: str, log: Path) -> Member:
    flags = ["--logger=zap", f"--log-outputs={log}"]
    member = BuiltEtcd("etcd", members.base / f"etcd-{version}", extra_flags=flags)
    if version == "3.5":
        member.binary = etcd35.cached_binary()
        if member.binary is None:
            pytest.fail(
                f"etcd {etcd35.ETCD35_VERSION} is not built in {etcd35.cache_dir()}; {etcd35.HINT}",
                pytrace=False,
            )
    members.created.append(member)
    start_or_fail(member)
    return member


# What etcd 3.4 does not have of etcd 3.5's lines (pyetcd writes 3.5's).
NEW_IN_35_LINES = {
    "ready to serve client requests",
    "Running: ",
    "Running http and grpc server on single port. This is not recommended for production.",
}
NEW_IN_35_KEYS = {
    INSECURE: {"traffic"},
    "starting an etcd server": {
        "compact-check-time-enabled",
        "compact-check-time-interval",
        "downgrade-check-interval",
    },
}


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_lifecycle_lines_have_upstream_etcd_s_keys(
    members: MemberRegistry, tmp_path: Path, version: str
) -> None:
    etcd_log, our_log = tmp_path / "etcd.log", tmp_path / "pyetcd.log"
    upstream = upstream_member(members, version, etcd_log)
    wait_for("etcd's serving line", ready_in(etcd_log), 10, upstream)
    upstream.stop()
    ours_member = zap_member(members, "pyetcd", our_log)  # JSON is pyetcd's default format
    wait_for("pyetcd's serving line", ready_in(our_log), 10, ours_member)
    ours_member.stop()
    etcd, ours = zap_lines(etcd_log), zap_lines(our_log)
    for line in (*etcd, *ours):
        assert zap_shaped(line), line
    for line in ours:
        assert TS_35.match(line["ts"]), line
    for line in etcd:
        assert (TS_35 if version == "3.5" else TS_34).match(line["ts"]), line

    lifecycle = list(LIFECYCLE)
    if version == "3.5":
        lifecycle += sorted(NEW_IN_35_LINES)
    for msg in lifecycle:
        theirs, mine = set(the(etcd, msg)), set(the(ours, msg))
        if version == "3.4":
            theirs |= NEW_IN_35_KEYS.get(msg, set())
        assert mine == theirs, f"{msg}: only etcd {theirs - mine}, only pyetcd {mine - theirs}"
    # Same values where they do not depend on the implementation.
    for msg, key in (
        (PUBLISHED, "publish-timeout"),
        ("received signal; shutting down", "signal"),
        ("starting an etcd server", "election-timeout"),
        ("starting an etcd server", "heartbeat-interval"),
        ("starting an etcd server", "cors"),
        ("starting an etcd server", "host-whitelist"),
        ("starting an etcd server", "auto-compaction-retention"),
    ):
        assert the(ours, msg)[key] == the(etcd, msg)[key], (msg, key)
    shape = re.compile(r"^\{Name:default ClientURLs:\[http://127\.0\.0\.1:\d+\]\}$")
    for lines in (etcd, ours):
        published = the(lines, PUBLISHED)
        assert shape.match(published["local-member-attributes"])
        member_id = published["local-member-id"]
        assert published["request-path"] == f"/0/members/{member_id}/attributes"
        # Raft's lines come from a logger named "raft" (etcd 3.5) or no name (3.4).
        elected = next(line for line in lines if "elected leader" in line["msg"])
        assert elected["msg"].startswith(f"raft.node: {member_id} elected leader {member_id}")
    if version == "3.5":
        for lines in (etcd, ours):
            elected = next(line for line in lines if "elected leader" in line["msg"])
            assert elected["logger"] == "raft"
