"""`pyetcdutl analyze` output: an aligned table for people, JSON for programs.

JSON shape, ``schemaVersion`` 1. Fields are only ever added within a schema version; a change
of meaning or a removal bumps it. Keys and prefixes are arbitrary bytes in etcd: ``key`` /
``prefix`` give them as text (UTF-8; a byte that is not UTF-8 appears as ``\\xNN``, so two keys can
look alike) and ``keyBase64`` / ``prefixBase64`` exactly. Lease IDs are int64s, which
exceed a double's precision: ``idHex`` is the hex form etcdctl prints. All sizes are bytes.

.. code-block:: text

    {
      "schemaVersion": 1,
      "source": {
        "path": "backup.db",        # as given on the command line
        "kind": "snapshot",         # "snapshot" (with SHA-256 trailer) | "db" (bare bbolt file)
                                    # | "dataDir"
        "db": "backup.db",          # the bbolt file read (<dir>/member/snap/db for a data dir)
        "sha256": "verified"        # "verified" | "skipped" (--skip-hash-check) | "absent"
      },
      "options": {"separator": "/", "depth": 2, "top": 20},
      "totals": {
        "revision": 1234,                 # current revision
        "compactRevision": 1000,          # meta/finishedCompactRev, 0 if never compacted
        "scheduledCompactRevision": 1000, # meta/scheduledCompactRev; higher: compaction unfinished
        "liveKeys": 10,                   # keys whose latest entry is a put
        "liveBytes": 1234,                # key + value of those puts
        "revisions": 57,                  # entries of the key bucket: history and tombstones too
        "tombstones": 3,
        "storedBytes": 5678,              # revision key + marshalled KeyValue of every entry
        "leases": 2,
        "leasesWithoutKeys": 1,
        "keysWithMissingLease": 0,        # live keys whose KeyValue.lease is not in `lease`
        "dbSize": 20480,                  # the bbolt file (a snapshot's trailer excluded)
        "dbSizeInUse": 16384,             # dbSize minus free pages, as etcd's dbSizeInUse
        "pageSize": 4096
      },
      "prefixes": [                       # by storedBytes, largest first, at most `top`
        {"prefix": "/registry/pods/", "prefixBase64": "...",
         "liveKeys": 4, "liveBytes": 900, "revisions": 30, "storedBytes": 4000}
      ],
      "otherPrefixes": {                  # the rest summed: prefixes + otherPrefixes = totals
        "prefixes": 12, "liveKeys": 6, "liveBytes": 334, "revisions": 27, "storedBytes": 1678
      },
      "biggestKeys": [KEY],               # live keys by valueSize, largest first, at most `top`
      "hotKeys": [KEY],                   # keys with >= 2 revisions, most first, at most `top`
      "leases": [                         # every lease: most liveKeys first, then by id
        {"id": 7587869187458000000, "idHex": "694d7e3c1f0b4a00", "ttl": 60,
         "remainingTtl": 0, "liveKeys": 3, "liveBytes": 120}
      ],
      "missingLeases": [                  # lease IDs named by live keys but not in `lease`
        {"id": 1, "idHex": "1", "liveKeys": 2, "keys": [{"key": "/a", "keyBase64": "L2E="}]}
      ],                                  # (`keys`: at most `top`, smallest first)
      "ages": [                           # live keys by revisions since their modRevision:
        {"minRevisionsAgo": 0, "maxRevisionsAgo": 9, "liveKeys": 4, "liveBytes": 100},
        {"minRevisionsAgo": 10, "maxRevisionsAgo": 99, "liveKeys": 6, "liveBytes": 1134}
      ]                                   # decades up to the oldest live key, gaps included
    }

    KEY = {"key": "/registry/pods/a", "keyBase64": "...", "live": true, "valueSize": 800,
           "createRevision": 5, "modRevision": 1200, "version": 40, "lease": 0,
           "revisions": 40, "storedBytes": 33000}
    # a deleted key (hotKeys only): live false, modRevision = the deletion's revision,
    # valueSize, createRevision, version and lease 0.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from pyetcd.analyze.report import Analysis, KeyInfo, Report, Usage

__all__ = ["SCHEMA_VERSION", "format_json", "format_table", "key_text", "to_json"]

SCHEMA_VERSION = 1
_KEY_WIDTH = 72  # longer keys are cut in the table (JSON has them whole)


def key_text(key: bytes) -> str:
    """A key as text: UTF-8, with bytes that are not UTF-8 as ``\\xNN``."""
    return key.decode("utf-8", "backslashreplace")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _usage(u: Usage) -> dict[str, int]:
    return {
        "liveKeys": u.live_keys,
        "liveBytes": u.live_bytes,
        "revisions": u.revisions,
        "storedBytes": u.stored_bytes,
    }


def _key(k: KeyInfo) -> dict[str, Any]:
    return {
        "key": key_text(k.key),
        "keyBase64": _b64(k.key),
        "live": k.live,
        "valueSize": k.value_size,
        "createRevision": k.create_revision,
        "modRevision": k.mod_revision,
        "version": k.version,
        "lease": k.lease,
        "revisions": k.revisions,
        "storedBytes": k.stored_bytes,
    }


def _hex(lease_id: int) -> str:
    return f"{lease_id & 0xFFFFFFFFFFFFFFFF:x}"  # etcd prints the int64 as uint64 hex


def to_json(report: Report) -> dict[str, Any]:
    """The documented JSON document (see the module docstring) as Python values."""
    a = report.analysis
    return {
        "schemaVersion": SCHEMA_VERSION,
        "source": {
            "path": report.source.path,
            "kind": report.source.kind,
            "db": report.source.db_path,
            "sha256": report.source.sha256,
        },
        "options": {
            "separator": key_text(a.options.separator),
            "depth": a.options.depth,
            "top": a.options.top,
        },
        "totals": {
            "revision": a.revision,
            "compactRevision": a.compact_revision,
            "scheduledCompactRevision": a.scheduled_compact_revision,
            "liveKeys": a.totals.live_keys,
            "liveBytes": a.totals.live_bytes,
            "revisions": a.totals.revisions,
            "tombstones": a.tombstones,
            "storedBytes": a.totals.stored_bytes,
            "leases": len(a.leases),
            "leasesWithoutKeys": len(a.leases_without_keys),
            "keysWithMissingLease": sum(m.live_keys for m in a.missing_leases),
            "dbSize": report.db.size,
            "dbSizeInUse": report.db.size_in_use,
            "pageSize": report.db.page_size,
        },
        "prefixes": [
            {"prefix": key_text(p.prefix), "prefixBase64": _b64(p.prefix), **_usage(p.usage)}
            for p in a.prefixes
        ],
        "otherPrefixes": {"prefixes": a.other.prefixes, **_usage(a.other.usage)},
        "biggestKeys": [_key(k) for k in a.biggest_keys],
        "hotKeys": [_key(k) for k in a.hot_keys],
        "leases": [
            {
                "id": lease.id,
                "idHex": _hex(lease.id),
                "ttl": lease.ttl,
                "remainingTtl": lease.remaining_ttl,
                "liveKeys": lease.live_keys,
                "liveBytes": lease.live_bytes,
            }
            for lease in a.leases
        ],
        "missingLeases": [
            {
                "id": m.id,
                "idHex": _hex(m.id),
                "liveKeys": m.live_keys,
                "keys": [{"key": key_text(k), "keyBase64": _b64(k)} for k in m.keys],
            }
            for m in a.missing_leases
        ],
        "ages": [
            {
                "minRevisionsAgo": band.min_ago,
                "maxRevisionsAgo": band.max_ago,
                "liveKeys": band.live_keys,
                "liveBytes": band.live_bytes,
            }
            for band in a.ages
        ],
    }


def format_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------------
# table


def human_bytes(n: int) -> str:
    """Binary units, as quotas are set (`--quota-backend-bytes` defaults to 2 GiB)."""
    if n < 1024:
        return f"{n} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    value = n / 1024
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.1f} {units[i]}"


def _shown(key: bytes) -> str:
    """A key for the table: printable, cut to a width."""
    if not key:
        return '""'
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in key_text(key))
    return text if len(text) <= _KEY_WIDTH else text[: _KEY_WIDTH - 3] + "..."


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns two spaces apart; the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _n(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _summary(report: Report) -> list[str]:
    a = report.analysis
    src = report.source
    check = {"verified": "sha256 verified", "skipped": "sha256 not checked", "absent": "no sha256"}
    compacted = f"compacted at {a.compact_revision}" if a.compact_revision else "never compacted"
    if a.scheduled_compact_revision > a.compact_revision:
        compacted += f"; compaction at {a.scheduled_compact_revision} not finished"
    t = a.totals
    empty = len(a.leases_without_keys)
    orphans = sum(m.live_keys for m in a.missing_leases)
    kind = {"snapshot": "snapshot", "db": "db file", "dataDir": "data dir"}[src.kind]
    rows = [
        ("source", f"{src.path} ({kind}, {check[src.sha256]})"),
        ("revision", f"{a.revision} ({compacted})"),
        ("live keys", f"{t.live_keys}, {human_bytes(t.live_bytes)} (key + value)"),
        (
            "stored",
            f"{_n(t.revisions, 'revision')} ({_n(a.tombstones, 'tombstone')}), "
            f"{human_bytes(t.stored_bytes)}",
        ),
        (
            "db size",
            f"{human_bytes(report.db.size)}, {human_bytes(report.db.size_in_use)} in use "
            f"(page size {report.db.page_size})",
        ),
        (
            "leases",
            f"{len(a.leases)} ({empty} without keys); "
            f"{_n(orphans, 'key')} naming a lease that does not exist",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return [f"{name.ljust(width)}  {value}" for name, value in rows]


def _prefixes(a: Analysis) -> list[str]:
    sep = key_text(a.options.separator)
    total = a.totals.stored_bytes

    def row(name: str, u: Usage) -> list[str]:
        return [
            name,
            str(u.live_keys),
            human_bytes(u.live_bytes),
            str(u.revisions),
            human_bytes(u.stored_bytes),
            _percent(u.stored_bytes, total),
        ]

    rows = [row(_shown(p.prefix), p.usage) for p in a.prefixes]
    if a.other.prefixes:
        rows.append(row(f"(other: {_n(a.other.prefixes, 'prefix', 'prefixes')})", a.other.usage))
    rows.append(row("(total)", a.totals))
    head = ["PREFIX", "LIVE KEYS", "LIVE BYTES", "REVISIONS", "STORED BYTES", "SHARE"]
    title = (
        f"SPACE BY PREFIX (depth {a.options.depth}, separator {json.dumps(sep)}; by stored bytes)"
    )
    return [title, *_grid(head, rows)]


def _biggest(a: Analysis) -> list[str]:
    head = ["KEY", "VALUE SIZE", "VERSION", "MOD REVISION", "LEASE"]
    rows = [
        [
            _shown(k.key),
            human_bytes(k.value_size),
            str(k.version),
            str(k.mod_revision),
            _hex(k.lease) if k.lease else "-",
        ]
        for k in a.biggest_keys
    ]
    title = "BIGGEST KEYS (value size of the live revision)"
    return [title, *(_grid(head, rows) if rows else ["(no live keys)"])]


def _hot(a: Analysis) -> list[str]:
    head = ["KEY", "REVISIONS", "STORED BYTES", "VERSION", "LIVE"]
    rows = [
        [
            _shown(k.key),
            str(k.revisions),
            human_bytes(k.stored_bytes),
            str(k.version) if k.live else "-",
            "yes" if k.live else "deleted",
        ]
        for k in a.hot_keys
    ]
    title = "HOT KEYS (most stored revisions: history not yet compacted)"
    return [title, *(_grid(head, rows) if rows else ["(no key has more than one revision)"])]


def _leases(a: Analysis) -> list[str]:
    top = a.options.top
    head = ["LEASE", "TTL", "LIVE KEYS", "LIVE BYTES"]
    held = [lease for lease in a.leases if lease.live_keys]
    rows = [
        [_hex(lease.id), f"{lease.ttl}s", str(lease.live_keys), human_bytes(lease.live_bytes)]
        for lease in held[:top]
    ]
    lines = [f"LEASES ({len(a.leases)}; most keys first)"]
    lines += _grid(head, rows) if rows else ["(no lease holds a key)"]
    if len(held) > top:
        lines.append(f"... and {_n(len(held) - top, 'more lease')} with keys")
    empty = a.leases_without_keys
    if empty:
        shown = ", ".join(f"{_hex(lease.id)} ({lease.ttl}s)" for lease in empty[:top])
        more = f", ... and {len(empty) - top} more" if len(empty) > top else ""
        lines.append(f"leases without keys: {len(empty)}: {shown}{more}")
    else:
        lines.append("leases without keys: none")
    for m in a.missing_leases:
        names = ", ".join(_shown(k) for k in m.keys)
        more = f", ... and {m.live_keys - len(m.keys)} more" if m.live_keys > len(m.keys) else ""
        lines.append(
            f"lease {_hex(m.id)} does not exist, named by {_n(m.live_keys, 'key')}: {names}{more}"
        )
    return lines


def _ages(a: Analysis) -> list[str]:
    head = ["REVISIONS AGO", "MOD REVISION", "LIVE KEYS", "LIVE BYTES"]
    rows = []
    for band in a.ages:
        newest = a.revision - band.min_ago
        oldest = max(a.revision - band.max_ago, 1)
        rows.append(
            [
                f"{band.min_ago}-{band.max_ago}",
                f"{oldest}-{newest}",
                str(band.live_keys),
                human_bytes(band.live_bytes),
            ]
        )
    title = "AGE OF LIVE KEYS (in revisions since the last change; etcd stores no wall-clock time)"
    return [title, *(_grid(head, rows) if rows else ["(no live keys)"])]


def format_table(report: Report) -> str:
    a = report.analysis
    sections = [_summary(report), _prefixes(a), _biggest(a), _hot(a), _leases(a), _ages(a)]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"
