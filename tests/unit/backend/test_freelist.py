"""The hashmap freelist: spans, O(1) exact allocation, merging on release, pending per txid."""

from __future__ import annotations

import random

from pyetcd.backend.freelist import HashmapFreelist


def spans(fl: HashmapFreelist) -> list[tuple[int, int]]:
    return sorted(fl.forward.items())


def test_load_groups_ids_into_spans() -> None:
    fl = HashmapFreelist()
    fl.load([12, 5, 6, 7, 10, 11, 20])
    assert spans(fl) == [(5, 3), (10, 3), (20, 1)]
    assert fl.free_maps == {3: {5, 10}, 1: {20}}
    assert fl.backward == {7: 3, 12: 3, 20: 1}
    assert fl.free_count == 7


def test_allocate_exact_then_split_then_none() -> None:
    fl = HashmapFreelist()
    fl.load([5, 6, 7, 20])
    assert fl.allocate(1) == 20  # exact-size hit
    assert fl.allocate(2) == 5  # splits the 3-span
    assert spans(fl) == [(7, 1)]
    assert fl.allocate(2) == 0
    assert fl.allocate(1) == 7
    assert fl.free_count == 0
    assert fl.free_maps == {} and fl.forward == {} and fl.backward == {}


def test_freed_pages_stay_pending_until_released() -> None:
    fl = HashmapFreelist()
    fl.free(5, 10, 2)
    fl.free(6, 12, 1)
    assert fl.allocate(1) == 0
    assert fl.pending_count() == 3
    fl.release(5)
    assert spans(fl) == [(10, 2)]
    assert fl.pending == {6: [(12, 1)]}
    fl.release(6)
    assert spans(fl) == [(10, 3)]  # merged with its left neighbour
    assert fl.all_ids() == [10, 11, 12]


def test_release_merges_both_neighbours() -> None:
    fl = HashmapFreelist()
    fl.load([3, 4, 8, 9])
    fl.free(1, 5, 3)
    fl.release(1)
    assert spans(fl) == [(3, 7)]
    assert fl.free_maps == {7: {3}}
    assert fl.backward == {9: 7}


def test_random_operations_match_a_set_model() -> None:
    rnd = random.Random(7)
    fl = HashmapFreelist()
    free: set[int] = set(range(2, 200))
    fl.load(sorted(free))
    pending: dict[int, set[int]] = {}
    for txid in range(1, 400):
        n = rnd.randint(1, 4)
        start = fl.allocate(n)
        if start:
            run = set(range(start, start + n))
            assert run <= free
            free -= run
            if rnd.random() < 0.8:
                fl.free(txid, start, n)
                pending.setdefault(txid, set()).update(run)
        if rnd.random() < 0.3:
            upto = txid - rnd.randint(0, 3)
            fl.release(upto)
            for t in [t for t in pending if t <= upto]:
                free |= pending.pop(t)
        assert fl.free_count == len(free)
        assert fl.free_ids() == sorted(free)
        # Spans are maximal: no two free spans touch.
        for s, size in fl.forward.items():
            assert s + size not in fl.forward
