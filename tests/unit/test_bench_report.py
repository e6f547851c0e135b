"""The benchmark's tables: the ceiling is a reference row, never one of the compared flavours."""

from __future__ import annotations

from bench.compare import CEILING, Measurement, render_markdown, render_table


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
    assert "of ceiling: pyetcd's ops / the ceiling's" in table


def test_without_the_ceiling_there_is_no_ceiling_column() -> None:
    results = [cell("etcd", 9000, 10), cell("pyetcd", 1800, 40)]
    table = render_table(["etcd", "pyetcd"], results, ["put"], [64])
    assert "of ceiling" not in table
    markdown = render_markdown(["etcd", "pyetcd", CEILING], [*results, cell(CEILING, 1, 1)])
    assert "| put | 64 | 9,000 | 1,800 | 0.20 |" in markdown
