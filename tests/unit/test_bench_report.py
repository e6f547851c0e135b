"""The benchmark's tables: the ceiling is a reference row, never one of the compared flavours."""

from __future__ import annotations

import math

from bench.compare import CEILING, CEILING_H2, Measurement, render_markdown, render_table


def cell(flavour: str, ops: float, p99: float) -> Measurement:
    m = Measurement(flavour, "put", 64)
    m.ops_per_s, m.p50_ms, m.p99_ms = ops, p99 / 2, p99
    return m


def test_the_table_compares_the_flavours_and_reports_pyetcd_against_the_ceiling() -> None:
    results = [cell("etcd", 9000, 10), cell("pyetcd", 1800, 40), cell(CEILING, 3000, 20)]
    table = render_table(["etcd", "pyetcd", CEILING], results, ["put"], [64])
    header, _, row = table.splitlines()[:3]
    assert header.split("|")[-1].strip() == "of ceiling"
    columns = [c.strip() for c in row.split("|")]
    # ops ratio and p99 ratio are pyetcd / etcd; of ceiling is pyetcd / the ceiling.
    assert columns[-2].split() == ["0.20", "4.00"]
    assert columns[-1] == "0.60"
    assert "of <ceiling>: pyetcd's ops / that reference's" in table


def test_each_ceiling_gets_its_own_column() -> None:
    results = [
        cell("etcd", 9000, 10),
        cell("pyetcd", 1800, 40),
        cell(CEILING, 3000, 20),
        cell(CEILING_H2, 30000, 2),
    ]
    table = render_table(["etcd", "pyetcd", CEILING, CEILING_H2], results, ["put"], [64])
    header, _, row = table.splitlines()[:3]
    assert [h.strip() for h in header.split("|")[-2:]] == ["of ceiling", "of ceiling-h2"]
    columns = [c.strip() for c in row.split("|")]
    assert columns[-3].split() == ["0.20", "4.00"]  # still pyetcd / etcd, not a ceiling
    assert columns[-2:] == ["0.60", "0.06"]


def test_without_the_ceiling_there_is_no_ceiling_column() -> None:
    results = [cell("etcd", 9000, 10), cell("pyetcd", 1800, 40)]
    table = render_table(["etcd", "pyetcd"], results, ["put"], [64])
    assert "of ceiling" not in table
    markdown = render_markdown(["etcd", "pyetcd", CEILING], [*results, cell(CEILING, 1, 1)])
    assert "| put | 64 | 9,000 | 1,800 | 0.20 |" in markdown


def test_reads_under_writes_report_the_slowdown_and_the_ratio_under_load() -> None:
    from bench.readwrite import Cell, render

    def reads(flavour: str, idle_p99: float, loaded_p99: float) -> Cell:
        idle, loaded = cell(flavour, 4000, idle_p99), cell(flavour, 2000, loaded_p99)
        idle.workload = loaded.workload = "range-l"
        return Cell(flavour, "range-l", 16, idle, loaded, writes_per_s=5000)

    table = render([reads("etcd", 2, 3), reads("pyetcd", 4, 12)])
    rows = [r for r in table.splitlines() if r.startswith("| range-l")]
    assert [r.split("|")[-2].strip() for r in rows] == ["1.50", "3.00"]
    assert "range-l under load, pyetcd / etcd: ops 1.00, p99 4.00" in table


def test_backend_commit_times_come_from_the_histogram_between_two_scrapes() -> None:
    from bench.largedb import COMMIT_METRIC, commit_times

    def scrape(counts: list[int], total: float) -> str:
        bounds = ["0.001", "0.002", "0.004", "+Inf"]
        lines = [
            f'{COMMIT_METRIC}_bucket{{le="{b}"}} {c}' for b, c in zip(bounds, counts, strict=True)
        ]
        return "\n".join(
            [*lines, f"{COMMIT_METRIC}_sum {total}", f"{COMMIT_METRIC}_count {counts[-1]}"]
        )

    # 100 commits between the scrapes: 90 under 1 ms, 9 more under 2 ms, 1 under 4 ms.
    mean, p99 = commit_times(scrape([10, 10, 10, 10], 0.5), scrape([100, 109, 110, 110], 0.6))
    assert round(mean, 3) == 1.0
    assert p99 == 2.0
    assert all(
        math.isnan(v) for v in commit_times(scrape([1, 1, 1, 1], 1), scrape([1, 1, 1, 1], 1))
    )
