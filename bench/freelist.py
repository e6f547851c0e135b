"""Freelist cost against the number of free pages: `python -m bench.freelist` (make bench-scale).

The seed's claim: bbolt's array freelist (one sorted list of free page ids) makes allocation and
release cost grow with the number of free pages, so a large, fragmented etcd database slows every
commit, while the hashmap freelist (``pyetcd.backend.freelist``, bbolt's ``hashmap.go``) keeps them
flat. This measures both in the same run, on the same free sets, with 1k, 100k, 1M and 10M free
pages (``--pages``):

* ``allocate 1``: one page; both find one at once.
* ``allocate 8 (miss)``: an 8-page span (a value of ~30 KiB) when the free space is fragmented
  into runs of 1 to 3 pages: no run fits, so bbolt grows the file. The array freelist learns that
  by scanning every id; the hashmap one by looking at its few distinct run sizes.
* ``release 16``: a commit's 16 freed pages becoming allocatable once no reader holds them: the
  array freelist merges them into its sorted list (a copy of all of it); the hashmap one links
  each span to its neighbours.

``ArrayFreelist`` below is the reference, a port of bbolt's ``internal/freelist/array.go`` kept
out of the server: pyetcd never uses it. Pure CPU in this process, one core; the ratio column is
array / hashmap in the same run. Writes ``bench/results/<timestamp>-freelist.json``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from pyetcd.backend.freelist import HashmapFreelist

from bench.compare import write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PAGES = (1_000, 100_000, 1_000_000, 10_000_000)
OPERATIONS = ("allocate 1", "allocate 8 (miss)", "release 16")
MISS_SPAN = 8
RELEASED = 16


class ArrayFreelist:
    """bbolt's array freelist: every free page id in one sorted list, scanned to allocate."""

    __slots__ = ("cache", "ids", "pending")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pending: dict[int, list[int]] = {}
        self.cache: set[int] = set()  # free and pending ids, as bbolt's f.cache

    def load(self, ids: list[int]) -> None:
        self.ids = sorted(set(ids))
        self.pending.clear()
        self.cache = set(self.ids)

    def allocate(self, n: int) -> int:
        """The lowest start of ``n`` contiguous free ids, removed from the list; 0 when none fit."""
        if n <= 0:
            return 0
        ids = self.ids
        initial = previd = 0
        for i, pgid in enumerate(ids):
            if previd == 0 or pgid - previd != 1:
                initial = pgid
            if pgid - initial + 1 == n:
                del ids[i - n + 1 : i + 1]
                for p in range(initial, initial + n):
                    self.cache.discard(p)
                return initial
            previd = pgid
        return 0

    def free(self, txid: int, start: int, span: int) -> None:
        self.pending.setdefault(txid, []).extend(range(start, start + span))
        self.cache.update(range(start, start + span))

    def release(self, upto_txid: int) -> None:
        released: list[int] = []
        for txid in [t for t in self.pending if t <= upto_txid]:
            released.extend(self.pending.pop(txid))
        if released:
            # bbolt's mergepgids: one pass over both sorted lists into a new one.
            released.sort()
            self.ids = sorted(self.ids + released)

    def free_count(self) -> int:
        return len(self.ids)


class Freelist(Protocol):
    def load(self, ids: list[int]) -> None: ...
    def allocate(self, n: int) -> int: ...
    def free(self, txid: int, start: int, span: int) -> None: ...
    def release(self, upto_txid: int) -> None: ...


FREELISTS: dict[str, Callable[[], Freelist]] = {
    "array": ArrayFreelist,
    "hashmap": HashmapFreelist,
}


def fragmented_ids(pages: int, seed: int = 1) -> list[int]:
    """``pages`` free page ids in runs of 1 to 3, each run followed by 1 or 2 pages in use."""
    rng = random.Random(seed)
    ids: list[int] = []
    pgid = 2  # 0 and 1 are the meta pages
    while len(ids) < pages:
        run = min(rng.randint(1, 3), pages - len(ids))
        ids.extend(range(pgid, pgid + run))
        pgid += run + rng.randint(1, 2)
    return ids


@dataclass
class Cell:
    freelist: str
    pages: int
    operation: str
    ops: int
    us_per_op: float


def _timed(budget_s: float, max_ops: int, op: Callable[[], int]) -> tuple[int, float]:
    """Run ``op`` (which returns the ns it spent on the timed part) until the budget is spent."""
    ops = spent = 0
    started = time.perf_counter()
    while ops < max_ops and (ops < 3 or time.perf_counter() - started < budget_s):
        spent += op()
        ops += 1
    return ops, spent / ops / 1000


def measure(name: str, ids: list[int], budget_s: float, max_ops: int) -> list[Cell]:
    freelist = FREELISTS[name]()
    freelist.load(ids)
    txid = 10

    def allocate_one() -> int:
        nonlocal txid
        t0 = time.perf_counter_ns()
        pgid = freelist.allocate(1)
        spent = time.perf_counter_ns() - t0
        if pgid == 0:
            raise RuntimeError(f"{name} freelist found no free page")
        txid += 1
        freelist.free(txid, pgid, 1)
        freelist.release(txid)  # put it back, untimed: the free set keeps its size
        return spent

    def allocate_miss() -> int:
        t0 = time.perf_counter_ns()
        pgid = freelist.allocate(MISS_SPAN)
        spent = time.perf_counter_ns() - t0
        if pgid != 0:
            raise RuntimeError(f"{name} freelist found a {MISS_SPAN}-page run in a fragmented set")
        return spent

    def release() -> int:
        nonlocal txid
        txid += 1
        for _ in range(RELEASED):
            freelist.free(txid, freelist.allocate(1), 1)
        t0 = time.perf_counter_ns()
        freelist.release(txid)
        return time.perf_counter_ns() - t0

    cells = []
    for operation, op in zip(OPERATIONS, (allocate_one, allocate_miss, release), strict=True):
        ops, us = _timed(budget_s, max_ops, op)
        cells.append(Cell(name, len(ids), operation, ops, us))
    return cells


def run(pages: Sequence[int], budget_s: float, max_ops: int) -> list[Cell]:
    cells: list[Cell] = []
    for n in pages:
        ids = fragmented_ids(n)
        for name in FREELISTS:
            gc.collect()
            cells.extend(measure(name, ids, budget_s, max_ops))
            print(f"  {n:,} free pages, {name}: done", flush=True)
    return cells


def render(cells: Sequence[Cell]) -> str:
    by_key = {(c.freelist, c.pages, c.operation): c for c in cells}
    pages = sorted({c.pages for c in cells})
    lines = [
        "| free pages | operation | array µs/op | hashmap µs/op | array / hashmap |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for n in pages:
        for operation in OPERATIONS:
            array = by_key[("array", n, operation)].us_per_op
            hashmap = by_key[("hashmap", n, operation)].us_per_op
            ratio = array / hashmap if hashmap > 0 else float("inf")
            lines.append(f"| {n:,} | {operation} | {array:,.2f} | {hashmap:,.2f} | {ratio:,.1f}x |")
    return "\n".join(lines)


def growth(cells: Sequence[Cell], freelist: str, operation: str) -> float:
    """Cost at the most free pages over cost at the fewest: ~1 is flat."""
    mine = sorted(
        (c for c in cells if (c.freelist, c.operation) == (freelist, operation)),
        key=lambda c: c.pages,
    )
    return mine[-1].us_per_op / mine[0].us_per_op


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.freelist", description=__doc__)
    parser.add_argument(
        "--pages",
        default=",".join(str(p) for p in PAGES),
        help="comma-separated free page counts (default %(default)s)",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, help="seconds per cell (at least 3 ops)"
    )
    parser.add_argument("--max-ops", type=int, default=20_000)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pages = [int(p.replace("_", "")) for p in args.pages.split(",") if p]
    print(f"freelist cost, fragmented free sets of {', '.join(f'{p:,}' for p in pages)} pages")
    cells = run(pages, args.budget, args.max_ops)
    table = render(cells)
    print(table)
    for operation in OPERATIONS:
        print(
            f"{operation}: {pages[-1]:,} vs {pages[0]:,} free pages costs "
            f"array {growth(cells, 'array', operation):,.1f}x, "
            f"hashmap {growth(cells, 'hashmap', operation):,.1f}x"
        )
    write_results(
        args.results_dir,
        "freelist",
        {"python": platform.python_version(), "cells": [asdict(c) for c in cells]},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
