"""Normalise etcdctl / client output so that two servers' answers can be compared exactly.

Two fresh servers legitimately differ in: cluster and member ids, lease ids (time-based), raft
terms and indexes, hash values (they cover lease ids), db sizes, version strings, timings,
ports and temp paths. Everything else (keys, values, versions, counts, flags, error strings,
gRPC codes, exit codes, ordering) must be identical.

What is done, and how the comparison stays meaningful:

* ids (cluster, member, lease; decimal in JSON, ``%016x`` hex in text) are mapped to ``<id1>``,
  ``<id2>``... in order of first appearance within one run, so "the lease in this ``timetolive``
  is the one granted three steps earlier" and "leader == member" are still checked;
* hashes likewise map to ``<hash1>``... (so "hashkv unchanged by defrag" is still checked);
* revisions become relative to the run's base revision (the header revision of the fresh
  server before the first write): ``R+3``; the suite writes revision arguments the same way;
* raft terms/indexes, sizes, versions, timings and remaining lease TTLs become placeholders;
* ports and temp dirs are replaced by ``<client>``, ``<peer>``, ``<dir>``;
* etcdctl's JSON log lines on stderr lose their timestamps and client ids, keep level/msg/error.

This module is imported by ``aetcd_script.py`` in a process that loads aetcd's generated
protobufs, so it must not import ``pyetcd.proto`` at module level (see :func:`decode_protobuf`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

JSON = Any


class Mapper:
    """Stable placeholder per distinct value, numbered by first appearance."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seen: dict[object, str] = {}

    def __call__(self, value: object) -> str:
        if value not in self.seen:
            self.seen[value] = f"<{self.prefix}{len(self.seen) + 1}>"
        return self.seen[value]


@dataclass
class Context:
    """Per-run normalisation state: literal replacements, base revision, id/hash mappers."""

    replacements: list[tuple[str, str]] = field(default_factory=list)
    base_revision: int | None = None
    ids: Mapper = field(default_factory=lambda: Mapper("id"))
    hashes: Mapper = field(default_factory=lambda: Mapper("hash"))

    def add_replacement(self, literal: str, placeholder: str) -> None:
        self.replacements.append((literal, placeholder))
        # longest first, so that "127.0.0.1:1234" does not eat a prefix of "127.0.0.1:12345"
        self.replacements.sort(key=lambda item: -len(item[0]))

    def literal(self, text: str) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text

    def rev(self, value: int | str) -> str | int:
        """A revision relative to the base: ``R+n``; zero and negative values stay as they are."""
        number = int(value)
        if self.base_revision is None or number <= 0:
            return number
        return f"R{number - self.base_revision:+d}"

    def id(self, value: int | str, *, hex_text: bool = False) -> str | int:
        number = int(value, 16) if hex_text and isinstance(value, str) else int(value)
        if number == 0:
            return 0
        return self.ids(number)

    def hash(self, value: int | str, *, hex_text: bool = False) -> str:
        number = int(value, 16) if hex_text and isinstance(value, str) else int(value)
        return self.hashes(number)


# --------------------------------------------------------------------------------------------
# command line helpers

_VALUE_FLAGS = {
    "-w",
    "--write-out",
    "--endpoints",
    "--lease",
    "--rev",
    "--limit",
    "--order",
    "--sort-by",
    "--consistency",
    "--load",
    "--prefix-key",
    "--dial-timeout",
    "--command-timeout",
}


def command_words(args: Sequence[str]) -> tuple[str, ...]:
    """The sub-command words of an etcdctl invocation (``("endpoint", "status")``)."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            if arg in _VALUE_FLAGS:
                skip = True
            continue
        words.append(arg)
    command = tuple(words[:2])
    if command and command[0] in {"get", "put", "del", "txn", "watch", "compaction", "defrag"}:
        return command[:1]
    return command


def write_out(args: Sequence[str]) -> str:
    """The ``-w`` / ``--write-out`` format of an invocation (``simple`` by default)."""
    for i, arg in enumerate(args):
        if arg in {"-w", "--write-out"} and i + 1 < len(args):
            return args[i + 1]
        for prefix in ("-w=", "--write-out="):
            if arg.startswith(prefix):
                return arg[len(prefix) :]
    return "simple"


# --------------------------------------------------------------------------------------------
# value rules shared by JSON, fields and tables

_REV_KEYS = {"revision", "create_revision", "mod_revision", "compact_revision"}
_ID_KEYS = {"cluster_id", "member_id", "leader", "ID", "id", "lease", "memberID"}
_RAFT_TERM_KEYS = {"raft_term", "raftTerm"}
_RAFT_INDEX_KEYS = {"raftIndex", "raftAppliedIndex"}
_SIZE_KEYS = {"dbSize", "dbSizeInUse", "totalSize", "size"}

_VERSION_RE = re.compile(r"\b\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?\b")
_HEX_ID_RE = re.compile(r"\b[0-9a-f]{16}\b")
_TOOK_RE = re.compile(r"took = [0-9.]+[a-zµ]+")
_SIZE_RE = re.compile(r"^\d+(?:\.\d+)? ?(?:B|kB|MB|GB)$")


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None


def normalize_json(ctx: Context, value: JSON, command: tuple[str, ...] = ()) -> JSON:
    """Walk a decoded JSON document and replace the fields that legitimately differ."""
    if isinstance(value, list):
        return [normalize_json(ctx, item, command) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, JSON] = {}
    for key, item in value.items():
        out[key] = _json_field(ctx, key, item, command)
    return out


def _json_field(ctx: Context, key: str, item: JSON, command: tuple[str, ...]) -> JSON:
    if key == "errors" and isinstance(item, list):
        return [_alarm_ids(ctx, e) if isinstance(e, str) else e for e in item]
    if command[:1] == ("lease",) and key in {"keys", "leases"} and isinstance(item, list):
        # etcd keeps a lease's keys and the leases in Go maps: their order is unspecified
        return sorted(normalize_json(ctx, item, command), key=dumps)
    if isinstance(item, dict | list):
        return normalize_json(ctx, item, command)
    if key in _REV_KEYS and _is_int(item):
        return ctx.rev(item)
    if key in _ID_KEYS and _is_int(item):
        return ctx.id(item)
    if key in _RAFT_TERM_KEYS:
        return "<raft_term>"
    if key in _RAFT_INDEX_KEYS:
        return "<raft_index>"
    if key in _SIZE_KEYS:
        return "<size>"
    if key == "hash" and _is_int(item):
        return ctx.hash(item)
    if key == "version" and isinstance(item, str) and _VERSION_RE.fullmatch(item):
        return "<version>"
    if key == "took":
        return "<duration>"
    if key == "errors" and isinstance(item, str):
        return _alarm_ids(ctx, item)
    if key == "ttl" and command[:2] == ("lease", "timetolive") and _is_int(item):
        return "<remaining>" if int(item) > 0 else int(item)
    return item


def dumps(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# columns (tables and comma-separated "simple" lines)

_SIMPLE_COLUMNS: dict[tuple[str, ...], list[str]] = {
    ("endpoint", "status"): [
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
        "RAFT APPLIED INDEX",
        "ERRORS",
    ],
    ("endpoint", "hashkv"): ["ENDPOINT", "HASH"],
    ("snapshot", "status"): ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
    ("member", "list"): ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"],
}


def _cell(ctx: Context, command: tuple[str, ...], column: str, value: str) -> str:
    value = value.strip()
    if not value:
        return value
    if column == "ID":
        return str(ctx.id(value, hex_text=True))
    if column == "HASH":
        return ctx.hash(value, hex_text=command == ("snapshot", "status"))
    if column == "REVISION":
        return str(ctx.rev(value))
    if column in {"VERSION"}:
        return "<version>"
    if column in {"DB SIZE", "TOTAL SIZE", "DB SIZE IN USE"}:
        return "<size>"
    if column == "RAFT TERM":
        return "<raft_term>"
    if column == "TOOK":
        return "<duration>"
    if column in {"ERRORS", "ERROR"}:
        return _alarm_ids(ctx, value)
    if column in {"RAFT INDEX", "RAFT APPLIED INDEX"}:
        return "<raft_index>"
    return value


def normalize_table(ctx: Context, command: tuple[str, ...], text: str) -> str:
    """Re-render an ASCII table without padding (cell widths depend on the cell contents)."""
    header: list[str] | None = None
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("+") or not line.strip():
            continue
        if not line.startswith("|"):
            rows.append(line)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            rows.append(" | ".join(cells))
            continue
        names = header + [""] * (len(cells) - len(header))
        rows.append(
            " | ".join(_cell(ctx, command, n, c) for n, c in zip(names, cells, strict=False))
        )
    return "\n".join(rows) + ("\n" if rows else "")


def _normalize_columns(ctx: Context, command: tuple[str, ...], text: str) -> str:
    columns = _SIMPLE_COLUMNS[command]
    out: list[str] = []
    for line in text.splitlines():
        cells = line.split(", ")
        if len(cells) < 2:
            out.append(line)
            continue
        names = columns + [""] * (len(cells) - len(columns))
        out.append(", ".join(_cell(ctx, command, n, c) for n, c in zip(names, cells, strict=False)))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


# --------------------------------------------------------------------------------------------
# "-w fields"

_FIELD_RE = re.compile(r'^"(?P<name>[A-Za-z]+)" : (?P<value>.*)$')


def _normalize_fields(ctx: Context, command: tuple[str, ...], text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        match = _FIELD_RE.match(line)
        if not match:
            out.append(line)
            continue
        name, value = match["name"], match["value"]
        new: object = value
        if name in {"Revision", "CreateRevision", "ModRevision", "CompactRevision"}:
            new = ctx.rev(value) if _is_int(value) else value
        elif name in {"ClusterID", "MemberID", "Leader", "ID", "Lease"} and _is_int(value):
            new = ctx.id(value)
        elif name == "RaftTerm":
            new = "<raft_term>"
        elif name in {"RaftIndex", "RaftAppliedIndex"}:
            new = "<raft_index>"
        elif name in {"DBSize", "DBSizeInUse", "TotalSize"}:
            new = "<size>"
        elif name == "Hash" and _is_int(value):
            new = ctx.hash(value)
        elif name == "Version" and value.startswith('"'):
            new = '"<version>"'
        elif name == "Errors":
            new = _alarm_ids(ctx, value)
        elif name == "TTL" and command == ("lease", "timetolive") and _is_int(value):
            new = "<remaining>" if int(value) > 0 else value
        out.append(f'"{name}" : {new}')
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


# --------------------------------------------------------------------------------------------
# per-command "simple" output

_REMAINING_RE = re.compile(r"remaining\((\d+)s\)")
_ATTACHED_RE = re.compile(r"attached keys\(\[(.*)\]\)")
_COMPACTED_RE = re.compile(r"compacted revision (\d+)")
_ALARM_RE = re.compile(r"memberID:(\d+)")


def _alarm_ids(ctx: Context, text: str) -> str:
    return _ALARM_RE.sub(lambda m: f"memberID:{ctx.id(m.group(1))}", text)


def _hex_ids(ctx: Context, text: str) -> str:
    return _HEX_ID_RE.sub(lambda m: str(ctx.id(m.group(0), hex_text=True)), text)


def _normalize_simple(ctx: Context, command: tuple[str, ...], text: str) -> str:
    if command in _SIMPLE_COLUMNS:
        return _normalize_columns(ctx, command, text)
    if command[:1] == ("lease",):
        text = _hex_ids(ctx, text)
        text = _REMAINING_RE.sub(
            lambda m: "remaining(<remaining>)" if int(m.group(1)) > 0 else m.group(0), text
        )
        # etcd keeps a lease's keys and the leases in Go maps: their order is unspecified
        text = _ATTACHED_RE.sub(
            lambda m: "attached keys([" + " ".join(sorted(m.group(1).split(" "))) + "])", text
        )
        if command == ("lease", "list") and text.strip():
            head, *ids = text.splitlines()
            text = "\n".join([head, *sorted(ids)]) + "\n"
        return text
    if command == ("compaction",):
        return _COMPACTED_RE.sub(lambda m: f"compacted revision {ctx.rev(m.group(1))}", text)
    if command[:1] == ("alarm",):
        return _alarm_ids(ctx, text)
    return text


# --------------------------------------------------------------------------------------------
# entry points


def normalize_stdout(ctx: Context, args: Sequence[str], text: str) -> str:
    """Normalise the stdout of ``etcdctl *args`` (text formats)."""
    command = command_words(args)
    fmt = write_out(args)
    text = ctx.literal(text)
    if fmt == "json":
        lines = []
        for line in text.splitlines():
            try:
                lines.append(dumps(normalize_json(ctx, json.loads(line), command)))
            except ValueError:
                lines.append(line)
        text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    elif fmt == "table":
        text = normalize_table(ctx, command, text)
    elif fmt == "fields":
        text = _normalize_fields(ctx, command, text)
    else:
        text = _normalize_simple(ctx, command, text)
    return _TOOK_RE.sub("took = <duration>", text)


# "peer": etcdctl 3.5's client names the connection, with its random local port.
_LOG_DROP = {"ts", "target", "took", "caller", "attempt", "peer"}


def normalize_stderr(ctx: Context, text: str) -> str:
    """Normalise stderr: structured log lines keep level, msg and error (with its gRPC code)."""
    out: list[str] = []
    for line in ctx.literal(text).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            out.append(_TOOK_RE.sub("took = <duration>", line))
            continue
        if not isinstance(record, dict):
            out.append(line)
            continue
        kept = {k: v for k, v in record.items() if k not in _LOG_DROP}
        if "size" in kept:
            kept["size"] = "<size>"
        out.append(dumps(kept))
    return "\n".join(out) + ("\n" if out else "")


_PROTOBUF_TYPES: dict[tuple[str, ...], str] = {
    ("get",): "RangeResponse",
    ("put",): "PutResponse",
    ("del",): "DeleteRangeResponse",
    ("txn",): "TxnResponse",
}


def decode_protobuf(command: tuple[str, ...], data: bytes) -> JSON:
    """Decode ``-w protobuf`` output into a JSON-like dict (imports pyetcd's protos lazily)."""
    from google.protobuf import json_format
    from pyetcd.proto.etcdserverpb import rpc_pb2

    name = _PROTOBUF_TYPES.get(command)
    if name is None:
        return {"raw": base64.b64encode(data).decode()}
    message = getattr(rpc_pb2, name)()
    message.ParseFromString(data)
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def normalize_protobuf(ctx: Context, args: Sequence[str], data: bytes) -> str:
    command = command_words(args)
    try:
        decoded = decode_protobuf(command, data)
    except Exception as exc:  # undecodable output is itself a (visible) difference
        return f"<undecodable protobuf: {exc!r}> {base64.b64encode(data).decode()}\n"
    return dumps(normalize_json(ctx, decoded, command)) + "\n"
