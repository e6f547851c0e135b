"""How views are printed: kubectl-style tables and key/value blocks, or JSON and YAML. Pure.

Tables follow ``kubectl get``: upper-case headers, columns padded to their widest cell, three
spaces apart; an unknown value is ``-``. Ages are kubectl's short form (``45s``, ``5m``,
``3h``, ``2d``) measured from the ``now`` the caller passes. JSON and YAML carry the views'
fields in camelCase, the way Kubernetes objects spell theirs, with sizes in bytes and times as
RFC 3339.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from etcd_operator.api.times import parse_rfc3339
from etcd_operator.plugin.views import (
    AnalysisRunView,
    BackupRefView,
    BackupView,
    ClusterView,
    ConditionView,
    KeyspaceView,
    WritesView,
)

NONE = "-"
FORMATS = ("table", "json", "yaml")
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines) + "\n"


def text(value: object) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def size(value: int | None) -> str:
    """Bytes, in the binary unit that keeps the number under 1024 (``892.0KiB``)."""
    if value is None:
        return NONE
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(SIZE_UNITS) - 1:
        amount /= 1024
        unit += 1
    return f"{value}B" if unit == 0 else f"{amount:.1f}{SIZE_UNITS[unit]}"


def age(timestamp: str | None, now: datetime) -> str:
    when = parse_rfc3339(timestamp)
    if when is None:
        return NONE
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def moment(timestamp: str | None, now: datetime) -> str:
    """``2026-12-06T12:00:00Z (5m ago)``."""
    return f"{timestamp} ({age(timestamp, now)} ago)" if timestamp else NONE


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def data(value: Any) -> Any:
    """A view (or a list of views) as JSON-able data with camelCase keys."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [data(item) for item in value]
    if isinstance(value, dict):
        return {key: data(item) for key, item in value.items()}
    return value


def dump(value: Any, fmt: str) -> str:
    """``value`` (a view, views or a manifest) as ``json`` or ``yaml``."""
    found = data(value)
    if fmt == "json":
        return json.dumps(found, indent=2) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(found, sort_keys=False, default_flow_style=False))
    raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMATS)})")


def _fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(key) for key, _ in pairs) + 1
    return [f"{(key + ':').ljust(width)} {value}" for key, value in pairs]


def _replicas(view: ClusterView) -> str:
    return (
        f"{text(view.replicas)} desired, {text(view.observed_replicas)} observed, "
        f"{text(view.ready_replicas)} ready"
    )


def _version(view: ClusterView) -> str:
    running = text(view.version)
    extra = []
    if view.spec_version and view.spec_version != view.version:
        extra.append(f"spec {view.spec_version}")
    if view.cluster_version:
        extra.append(f"cluster version {view.cluster_version}")
    return f"{running} ({', '.join(extra)})" if extra else running


def _condition(condition: ConditionView | None) -> str:
    if condition is None:
        return NONE
    said = f"{condition.status} ({condition.reason})" if condition.reason else condition.status
    return f"{said}: {condition.message}" if condition.message else said


def _backup_ref(ref: BackupRefView | None, now: datetime) -> str:
    if ref is None:
        return NONE
    parts = [ref.name]
    if ref.time:
        parts.append(f"at {moment(ref.time, now)}")
    if ref.revision is not None:
        parts.append(f"revision {ref.revision}")
    line = ", ".join(parts)
    return f"{line}: {ref.message}" if ref.message else line


def cluster_text(view: ClusterView, now: datetime) -> str:
    """``kubectl etcd status NAME``: the cluster at a glance."""
    where = f"{view.namespace}/{view.name}" if view.namespace else view.name
    phase = text(view.phase)
    if (
        view.generation is not None
        and view.observed_generation is not None
        and view.observed_generation < view.generation
    ):
        phase += (
            f" (the status describes generation {view.observed_generation}; "
            f"the spec is at {view.generation})"
        )
    pairs = [
        ("Cluster", where),
        ("Phase", phase),
        ("Version", _version(view)),
        ("Replicas", _replicas(view)),
        ("Leader", text(view.leader)),
        ("Cluster ID", text(view.cluster_id)),
    ]
    if view.restored_from:
        pairs.append(("Restored from", view.restored_from))
    out = _fields(pairs)
    out += ["", "Conditions:"]
    if view.conditions:
        rows = [
            [c.type, c.status, text(c.reason), age(c.since, now), text(c.message)]
            for c in view.conditions
        ]
        out.append(table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows).rstrip("\n"))
    else:
        out.append("  none reported yet")
    out += ["", "Members:"]
    if view.members:
        rows = [
            [
                m.name,
                text(m.id),
                m.role,
                text(m.healthy),
                text(m.version),
                size(m.db_size),
                text(m.revision),
            ]
            for m in view.members
        ]
        headers = ["NAME", "ID", "ROLE", "HEALTHY", "VERSION", "DB SIZE", "REVISION"]
        out.append(table(headers, rows).rstrip("\n"))
    else:
        out.append("  none reported yet")
    out += ["", "Backups:"]
    backup = view.backup
    if backup is None:
        out.append("  not configured (spec.backup)")
    else:
        out += [
            "  " + line
            for line in _fields(
                [
                    ("Last success", _backup_ref(backup.last_success, now)),
                    ("Last failure", _backup_ref(backup.last_failure, now)),
                    ("BackupReady", _condition(backup.ready)),
                    ("Schedule", text(backup.schedule)),
                    ("Next scheduled", text(backup.next_scheduled)),
                ]
            )
        ]
    return "\n".join(out) + "\n"


def clusters_table(views: Sequence[ClusterView], now: datetime, all_namespaces: bool) -> str:
    """``kubectl etcd status``: one line per cluster."""
    headers = ["NAME", "PHASE", "VERSION", "READY", "LEADER", "AVAILABLE", "LAST BACKUP", "AGE"]
    rows = []
    for view in views:
        available = view.condition("Available")
        last = view.backup.last_success if view.backup else None
        row = [
            view.name,
            text(view.phase),
            text(view.version),
            f"{text(view.ready_replicas)}/{text(view.replicas)}",
            text(view.leader),
            available.status if available else NONE,
            age(last.time, now) if last and last.time else NONE,
            age(view.created, now),
        ]
        rows.append([text(view.namespace), *row] if all_namespaces else row)
    return table(["NAMESPACE", *headers] if all_namespaces else headers, rows)


def _phase(view: BackupView) -> str:
    return f"{view.phase} ({view.reason})" if view.reason and not view.succeeded else view.phase


def backups_table(views: Sequence[BackupView]) -> str:
    """``kubectl etcd backups NAME``: newest first, as the views come."""
    headers = ["NAME", "PHASE", "REVISION", "SIZE", "STARTED", "COMPLETED", "LOCATION"]
    rows = [
        [
            v.name,
            _phase(v),
            text(v.revision),
            size(v.size_bytes),
            text(v.started),
            text(v.completed),
            text(v.location),
        ]
        for v in views
    ]
    return table(headers, rows)


def backup_text(view: BackupView) -> str:
    """The outcome of ``kubectl etcd backup NAME --wait``."""
    stored = size(view.size_bytes)
    if view.snapshot_size_bytes is not None and view.snapshot_size_bytes != view.size_bytes:
        stored += f" (snapshot {size(view.snapshot_size_bytes)})"
    pairs = [
        ("EtcdBackup", view.name),
        ("Phase", _phase(view)),
        ("Revision", text(view.revision)),
        ("Size", stored),
        ("Location", text(view.location)),
        ("Started", text(view.started)),
        ("Completed", text(view.completed)),
    ]
    if view.message:
        pairs.append(("Message", view.message))
    return "\n".join(_fields(pairs)) + "\n"


def _run(run: AnalysisRunView | None, now: datetime) -> str:
    if run is None:
        return NONE
    said = f"{text(run.phase)} ({run.reason})" if run.reason else text(run.phase)
    parts = [said, f"{text(run.trigger)}"]
    if run.backup:
        parts.append(f"backup {run.backup}")
    when = run.completed or run.started
    if when:
        parts.append(f"at {moment(when, now)}")
    line = ", ".join(parts)
    return f"{line}: {run.message}" if run.message and run.phase != "Succeeded" else line


def keyspace_text(view: KeyspaceView, now: datetime) -> str:
    """``kubectl etcd keyspace NAME``: the last analysis of the newest backup."""
    where = f"{view.namespace}/{view.cluster}" if view.namespace else view.cluster
    backup = text(view.backup)
    if view.revision is not None:
        backup += f" (revision {view.revision})"
    biggest = NONE
    if view.biggest_key is not None:
        biggest = f"{view.biggest_key} ({size(view.biggest_value_size)} value)"
    hottest = NONE
    if view.hottest_key is not None:
        hottest = f"{view.hottest_key} ({text(view.hottest_revisions)} revisions)"
    pairs = [
        ("Cluster", where),
        ("Backup", backup),
        ("Analyzed", moment(view.analyzed, now)),
        ("Live keys", f"{text(view.live_keys)}, {size(view.live_bytes)} (keys and values)"),
        ("DB size", f"{size(view.db_size)}, {size(view.db_size_in_use)} in use"),
        ("Leases without keys", text(view.leases_without_keys)),
        ("Biggest key", biggest),
        ("Hottest key", hottest),
        ("Report", text(view.report)),
        ("Last run", _run(view.last_run, now)),
        ("Next scheduled", text(view.next_scheduled)),
    ]
    out = _fields(pairs)
    out += ["", "Top prefixes (by stored bytes, every revision kept):"]
    if view.prefixes:
        rows = [
            [p.prefix, text(p.live_keys), size(p.live_bytes), size(p.stored_bytes)]
            for p in view.prefixes
        ]
        headers = ["PREFIX", "LIVE KEYS", "LIVE BYTES", "STORED BYTES"]
        out.append(table(headers, rows).rstrip("\n"))
    else:
        out.append("  none")
    out += _writes(view.writes, now)
    return "\n".join(out) + "\n"


def _writes(view: WritesView | None, now: datetime) -> list[str]:
    """The live cluster's last write window (spec.analysis.writes), when there is one."""
    if view is None:
        return []
    window = f"{text(view.window_seconds)}s from {moment(view.sampled, now)}"
    revisions = f"{text(view.from_revision)} to {text(view.to_revision)}"
    hottest = NONE
    if view.hottest_key is not None:
        hottest = f"{view.hottest_key} ({text(view.hottest_writes)} writes)"
    out = ["", "Writes on the live cluster (last window of its sampled watch):"]
    out += _fields(
        [
            ("Window", f"{window}, revisions {revisions}"),
            ("Writes", text(view.writes)),
            ("Hottest key", hottest),
        ]
    )
    if view.prefixes:
        seconds = max(1, view.window_seconds or 1)
        rows = [[prefix, text(n), f"{(n or 0) / seconds:.1f}"] for prefix, n in view.prefixes]
        out.append(table(["PREFIX", "WRITES", "PER SECOND"], rows).rstrip("\n"))
    return out
