"""Rendering of a known analysis: the JSON document's shape and values (schemaVersion 1, every
field documented in `pyetcd.analyze.render`), keys that are not UTF-8, lease IDs in hex, and
the table's sections and column alignment."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from pyetcd.analyze import Options, Report, analyze, format_json, format_table, render, to_json
from pyetcd.analyze.report import DbFile, Source

from tests.unit.analyze.records import delete, history, lease, put
from tests.unit.analyze.test_core import KEYS, LEASES, LIVE_BYTES, META, POD_A, POD_B

BIG_LEASE = 0x694D7E3C1F0B4A05
ODD_KEY = b"/bin/\xff\x01z"  # not UTF-8, and a control byte
SOURCE = Source(path="snap.db", kind="snapshot", db_path="snap.db", sha256="verified")
DB = DbFile(size=20480, size_in_use=16384, page_size=4096)


def _report(options: Options | None = None) -> Report:
    keys = [*KEYS, put(13, ODD_KEY, b"v", lease=BIG_LEASE), put(14, b"/neg", lease=-2)]
    leases = [*LEASES, lease(BIG_LEASE, 600)]
    return Report(SOURCE, DB, analyze(keys, leases, META, options))


TOP_LEVEL = {
    "schemaVersion",
    "source",
    "options",
    "totals",
    "prefixes",
    "otherPrefixes",
    "biggestKeys",
    "hotKeys",
    "leases",
    "missingLeases",
    "ages",
}
USAGE = {"liveKeys", "liveBytes", "revisions", "storedBytes"}
KEY = {
    "key",
    "keyBase64",
    "live",
    "valueSize",
    "createRevision",
    "modRevision",
    "version",
    "lease",
    "revisions",
    "storedBytes",
}


def test_json_shape() -> None:
    doc = to_json(_report())
    assert set(doc) == TOP_LEVEL
    assert doc["schemaVersion"] == 1
    assert doc["source"] == {
        "path": "snap.db",
        "kind": "snapshot",
        "db": "snap.db",
        "sha256": "verified",
    }
    assert doc["options"] == {"separator": "/", "depth": 2, "top": 20}
    assert set(doc["totals"]) == {
        "revision",
        "compactRevision",
        "scheduledCompactRevision",
        "liveKeys",
        "liveBytes",
        "revisions",
        "tombstones",
        "storedBytes",
        "leases",
        "leasesWithoutKeys",
        "keysWithMissingLease",
        "dbSize",
        "dbSizeInUse",
        "pageSize",
    }
    for p in doc["prefixes"]:
        assert set(p) == {"prefix", "prefixBase64"} | USAGE
    assert set(doc["otherPrefixes"]) == {"prefixes"} | USAGE
    for k in doc["biggestKeys"] + doc["hotKeys"]:
        assert set(k) == KEY
    for entry in doc["leases"]:
        assert set(entry) == {"id", "idHex", "ttl", "remainingTtl", "liveKeys", "liveBytes"}
    for m in doc["missingLeases"]:
        assert set(m) == {"id", "idHex", "liveKeys", "keys"}
        for k in m["keys"]:
            assert set(k) == {"key", "keyBase64"}
    for band in doc["ages"]:
        assert set(band) == {"minRevisionsAgo", "maxRevisionsAgo", "liveKeys", "liveBytes"}


def _names(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {n for v in value.values() for n in _names(v)}
    if isinstance(value, list):
        return {n for v in value for n in _names(v)}
    return set()


def test_every_json_field_is_documented() -> None:
    doc = render.__doc__ or ""
    names = _names(to_json(_report()))
    assert names
    undocumented = sorted(n for n in names if f'"{n}"' not in doc)
    assert undocumented == []


def test_json_values() -> None:
    doc = to_json(_report())
    totals = doc["totals"]
    assert totals["revision"] == 14
    assert (totals["compactRevision"], totals["scheduledCompactRevision"]) == (1, 1)
    assert totals["liveKeys"] == 6
    assert totals["liveBytes"] == LIVE_BYTES + (len(ODD_KEY) + 1) + 4
    assert (totals["revisions"], totals["tombstones"]) == (13, 1)
    assert (totals["leases"], totals["leasesWithoutKeys"], totals["keysWithMissingLease"]) == (
        3,
        1,
        2,
    )
    assert (totals["dbSize"], totals["dbSizeInUse"], totals["pageSize"]) == (20480, 16384, 4096)
    assert doc["prefixes"][0]["prefix"] == "/registry/pods/"
    assert doc["prefixes"][0]["prefixBase64"] == base64.b64encode(b"/registry/pods/").decode()
    assert doc["biggestKeys"][0]["key"] == POD_B.decode()
    assert doc["hotKeys"][0] == {
        "key": POD_A.decode(),
        "keyBase64": base64.b64encode(POD_A).decode(),
        "live": True,
        "valueSize": 10,
        "createRevision": 2,
        "modRevision": 7,
        "version": 6,
        "lease": 0,
        "revisions": 6,
        "storedBytes": doc["hotKeys"][0]["storedBytes"],
    }
    odd = next(
        k for k in doc["biggestKeys"] if k["keyBase64"] == base64.b64encode(ODD_KEY).decode()
    )
    assert odd["key"] == "/bin/\\xff\x01z"
    assert odd["lease"] == BIG_LEASE
    big = next(entry for entry in doc["leases"] if entry["id"] == BIG_LEASE)
    assert (big["idHex"], big["ttl"], big["liveKeys"]) == ("694d7e3c1f0b4a05", 600, 1)
    missing = {m["id"]: m for m in doc["missingLeases"]}
    assert missing[99]["keys"] == [{"key": "/other", "keyBase64": "L290aGVy"}]
    assert missing[-2]["idHex"] == "fffffffffffffffe"  # etcd prints the int64 as uint64
    assert doc["ages"] == [
        {
            "minRevisionsAgo": 0,
            "maxRevisionsAgo": 9,
            "liveKeys": 6,
            "liveBytes": totals["liveBytes"],
        }
    ]


def test_format_json_is_the_document() -> None:
    report = _report()
    text = format_json(report)
    assert text.endswith("}\n")
    assert json.loads(text) == to_json(report)


def test_json_other_prefixes() -> None:
    doc = to_json(_report(Options(top=2)))
    assert len(doc["prefixes"]) == 2
    assert doc["otherPrefixes"]["prefixes"] == 4  # /other, foo, /bin/..., /neg
    for field in USAGE:
        listed = sum(p[field] for p in doc["prefixes"]) + doc["otherPrefixes"][field]
        assert listed == doc["totals"][field], field


def _section(table: str, title: str) -> list[str]:
    for block in table.split("\n\n"):
        lines = block.splitlines()
        if lines[0].startswith(title):
            return lines
    raise AssertionError(f"no section {title!r} in:\n{table}")


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_table_sections_and_alignment() -> None:
    table = format_table(_report(Options(top=2)))
    summary = table.split("\n\n")[0].splitlines()
    assert summary[0] == "source     snap.db (snapshot, sha256 verified)"
    assert summary[1] == "revision   14 (compacted at 1)"
    assert summary[5] == "leases     3 (1 without keys); 2 keys naming a lease that does not exist"
    prefixes = _section(table, "SPACE BY PREFIX (depth 2")
    grid = prefixes[1:]
    assert _cells(grid[0]) == [
        "PREFIX",
        "LIVE KEYS",
        "LIVE BYTES",
        "REVISIONS",
        "STORED BYTES",
        "SHARE",
    ]
    assert _cells(grid[1])[:4] == ["/registry/pods/", "2", "162 B", "7"]
    assert _cells(grid[-2])[0] == "(other: 4 prefixes)"
    assert _cells(grid[-1])[:4] == ["(total)", "6", f"{LIVE_BYTES + 13} B", "13"]
    assert _cells(grid[-1])[-1] == "100.0%"
    assert len({len(line) for line in grid}) == 1  # right-aligned columns end together
    hot = _section(table, "HOT KEYS")
    assert _cells(hot[2])[:2] == [POD_A.decode(), "6"]
    assert _cells(hot[3])[-1] == "deleted"
    ages = _section(table, "AGE OF LIVE KEYS")
    assert "etcd stores no wall-clock time" in ages[0]
    assert _cells(ages[2]) == ["0-9", "5-14", "6", f"{LIVE_BYTES + 13} B"]
    leases = _section(table, "LEASES")
    assert _cells(leases[2])[:3] == ["1", "60s", "1"]
    assert "leases without keys: 1: 2 (30s)" in leases
    assert "lease 63 does not exist, named by 1 key: /other" in leases
    assert len(_section(table, "BIGGEST KEYS")) == 2 + 2  # title, header, top 2
    biggest = "\n".join(_section(format_table(_report()), "BIGGEST KEYS"))
    assert "/bin/\\xff\\x01z" in biggest  # not UTF-8, and a control byte, shown escaped


def test_table_cuts_long_keys_and_says_when_lists_are_empty() -> None:
    long_key = b"/k/" + b"x" * 200
    entries = [put(2, long_key, b"v"), *history(b"/h", 3, 2, b"")]
    table = format_table(Report(SOURCE, DB, analyze(entries[:1])))
    assert "(no key has more than one revision)" in table
    assert "(no lease holds a key)\nleases without keys: none" in table
    line = next(x for x in _section(table, "BIGGEST KEYS") if x.startswith("/k/"))
    assert _cells(line)[0] == long_key.decode()[:69] + "..."
    empty = format_table(Report(SOURCE, DB, analyze([delete(2, b"/gone")])))
    assert "(no live keys)" in _section(empty, "BIGGEST KEYS")
    assert "(no live keys)" in _section(empty, "AGE OF LIVE KEYS")


def test_unfinished_compaction_is_reported() -> None:
    meta = [(b"finishedCompactRev", META[1][1]), (b"scheduledCompactRev", put(9, b"")[0])]
    table = format_table(Report(SOURCE, DB, analyze(KEYS, meta=meta)))
    assert "revision   12 (compacted at 1; compaction at 9 not finished)" in table


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert render.human_bytes(n) == text
