"""bench.freelist: its array freelist behaves as bbolt's, and a run reports every cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import freelist as bench
from bench.freelist import ArrayFreelist, fragmented_ids


def test_the_array_freelist_allocates_as_bbolt_does() -> None:
    # bbolt's TestFreelist_arrayAllocate: the lowest run that fits, cut from the sorted list.
    f = ArrayFreelist()
    f.load([3, 4, 5, 6, 7, 9, 12, 13, 18])
    assert [f.allocate(n) for n in (3, 1, 3, 2, 1, 0, 0)] == [3, 6, 0, 12, 7, 0, 0]
    assert f.ids == [9, 18]
    assert [f.allocate(1), f.allocate(1), f.allocate(1)] == [9, 18, 0]


def test_the_array_freelist_releases_pending_pages_in_order() -> None:
    f = ArrayFreelist()
    f.load([10, 20])
    f.free(100, 12, 3)
    f.free(101, 30, 1)
    f.release(100)
    assert f.ids == [10, 12, 13, 14, 20]
    assert f.pending == {101: [30]}
    assert f.allocate(3) == 12


@pytest.mark.parametrize("pages", [1, 1000, 12_345])
def test_the_fragmented_free_set_has_no_run_a_multi_page_allocation_fits(pages: int) -> None:
    ids = fragmented_ids(pages)
    assert len(ids) == len(set(ids)) == pages
    for name in bench.FREELISTS:
        f = bench.FREELISTS[name]()
        f.load(ids)
        assert f.allocate(bench.MISS_SPAN) == 0, name


def test_a_run_reports_each_operation_for_both_freelists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--pages", "100,1000", "--budget", "0", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for pages in ("100", "1,000"):
        for operation in bench.OPERATIONS:
            assert f"| {pages} | {operation} |" in out
    (written,) = tmp_path.glob("*-freelist.json")
    cells = json.loads(written.read_text())["cells"]
    assert {(c["freelist"], c["pages"]) for c in cells} == {
        (name, n) for name in ("array", "hashmap") for n in (100, 1000)
    }
    assert all(c["ops"] >= 3 and c["us_per_op"] > 0 for c in cells)
