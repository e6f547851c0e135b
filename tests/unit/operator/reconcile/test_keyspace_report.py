"""The operator's reading of ``pyetcdutl analyze --format json``: the document the tool's own
renderer writes (built here from hand-made bucket entries, as the tool's tests build them) parses
into the summary that ``status.keyspace`` records and the prefix series of the metrics; other
schema versions and malformed documents are refused with a message saying why."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from etcd_operator.reconcile.keyspace_report import (
    KEY_TEXT_LIMIT,
    METRIC_PREFIXES,
    ReportError,
    metric_prefixes,
    parse_report,
    shown,
    summarize,
)
from pyetcd.analyze import Options, Report, analyze, format_json
from pyetcd.analyze.report import DbFile, Source

from tests.unit.analyze.records import history, lease, put

BIG = b"/big/data/blob"
HOT = b"/hot/data/counter"
SOURCE = Source(path="snap.db", kind="snapshot", db_path="snap.db", sha256="skipped")
DB = DbFile(size=20480, size_in_use=16384, page_size=4096)


def rendered(options: Options | None = None, *, extra_keys: int = 0) -> str:
    """The JSON the tool prints for: a big value, a key written 30 times, a small registry,
    ``extra_keys`` more prefixes, a lease holding a key and a lease holding none."""
    keys = [
        put(2, BIG, b"x" * 5000),
        *history(HOT, 3, 30, b"n" * 200),
        put(33, b"/registry/pods/a", b"p" * 10, lease=1),
        put(34, b"/registry/pods/b", b"p" * 10),
        *[put(35 + i, f"/p{i:02d}/x/k".encode(), b"v") for i in range(extra_keys)],
    ]
    leases = [lease(1, 60), lease(2, 30)]
    return format_json(Report(SOURCE, DB, analyze(keys, leases, (), options)))


def test_the_tools_report_becomes_the_status_summary() -> None:
    report = parse_report(rendered(Options(top=10)))
    summary = summarize(report)
    assert summary.revision == 32 + 2
    assert summary.live_keys == 4
    assert summary.live_bytes == (14 + 5000) + (17 + 200) + 2 * (16 + 10)
    assert (summary.db_size, summary.db_size_in_use) == (20480, 16384)
    assert summary.leases_without_keys == 1
    assert summary.biggest_key is not None
    assert (summary.biggest_key.key, summary.biggest_key.valueSize) == ("/big/data/blob", 5000)
    assert summary.hottest_key is not None
    assert (summary.hottest_key.key, summary.hottest_key.revisions) == ("/hot/data/counter", 30)
    # By stored bytes: the 30 revisions of the counter outweigh the 5000-byte value.
    assert [p.prefix for p in summary.prefixes] == ["/hot/data/", "/big/data/", "/registry/pods/"]
    hot = summary.prefixes[0]
    assert (hot.liveKeys, hot.liveBytes) == (1, 217) and hot.storedBytes > 30 * 200


def test_status_lists_five_prefixes_and_metrics_at_most_ten() -> None:
    report = parse_report(rendered(Options(top=20), extra_keys=15))
    assert len(report.prefixes) == 18
    assert len(summarize(report).prefixes) == 5
    series = metric_prefixes(report, top=20)
    assert len(series) == METRIC_PREFIXES
    assert series[0][0] == "/hot/data/" and series[0][1] == report.prefixes[0].storedBytes
    top3 = [name for name, _ in metric_prefixes(report, top=3)]
    assert top3 == ["/hot/data/", "/big/data/", "/registry/pods/"]


def test_no_hot_key_when_no_key_has_history() -> None:
    text = format_json(Report(SOURCE, DB, analyze([put(2, b"/a", b"1")], [], ())))
    summary = summarize(parse_report(text))
    assert summary.hottest_key is None
    assert summary.biggest_key is not None and summary.biggest_key.key == "/a"
    assert summary.leases_without_keys == 0


def test_long_keys_are_cut_in_the_status() -> None:
    long_key = "/k/" + "x" * 1000
    assert len(shown(long_key)) == KEY_TEXT_LIMIT and shown(long_key).endswith("…")
    assert shown("/short") == "/short"
    text = format_json(Report(SOURCE, DB, analyze([put(2, long_key.encode(), b"v")], [], ())))
    summary = summarize(parse_report(text))
    assert summary.biggest_key is not None and len(summary.biggest_key.key) == KEY_TEXT_LIMIT


def document() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(rendered())
    return found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schemaVersion=2), "reported schemaVersion 2; this operator reads"),
        (lambda d: d.pop("schemaVersion"), "reported schemaVersion None"),
        (lambda d: d.pop("totals"), "not as schemaVersion 1 documents it: totals: Field required"),
        (lambda d: d["totals"].update(liveKeys=-1), "totals.liveKeys: Input should be greater"),
        (lambda d: d["prefixes"].append({"prefix": 3}), "prefixes.3.prefix: Input should be"),
    ],
)
def test_other_documents_are_refused(change: Any, message: str) -> None:
    doc = copy.deepcopy(document())
    change(doc)
    with pytest.raises(ReportError, match=message.replace(".", r"\.")):
        parse_report(json.dumps(doc))


def test_output_that_is_no_json_is_refused() -> None:
    with pytest.raises(ReportError, match="printed no JSON report"):
        parse_report("Error: cannot analyze x")
    with pytest.raises(ReportError, match="not a report object"):
        parse_report("[1, 2]")


def test_fields_added_within_the_version_are_ignored() -> None:
    doc = document()
    doc["newSection"] = {"anything": 1}
    doc["totals"]["newTotal"] = 5
    assert parse_report(json.dumps(doc)).totals.liveKeys == 4
