"""bbolt's hashmap freelist: which pages may be reused, and which still wait for readers.

Free pages are kept as spans (runs of contiguous page ids) indexed three ways, as in bbolt's
``internal/freelist/hashmap.go``: ``free_maps`` (span size -> set of start ids) gives O(1)
allocation on an exact-size hit, ``forward`` (start -> size) and ``backward`` (last id -> size)
give O(1) merging of a released span with its neighbours.

Pages freed by a transaction go to ``pending[txid]`` first: the committed state before that
transaction still references them, so they are released (made allocatable) only once that state
is durable and no snapshot reader pinned to it or to an older one is open.
"""

from __future__ import annotations


class HashmapFreelist:
    """Free spans plus the pending (freed but not yet reusable) spans of each txid."""

    __slots__ = ("backward", "forward", "free_count", "free_maps", "pending")

    def __init__(self) -> None:
        self.free_maps: dict[int, set[int]] = {}
        self.forward: dict[int, int] = {}
        self.backward: dict[int, int] = {}
        self.free_count = 0
        self.pending: dict[int, list[tuple[int, int]]] = {}

    # -- spans ---------------------------------------------------------------------------------

    def _add_span(self, start: int, size: int) -> None:
        self.forward[start] = size
        self.backward[start + size - 1] = size
        starts = self.free_maps.get(size)
        if starts is None:
            self.free_maps[size] = {start}
        else:
            starts.add(start)
        self.free_count += size

    def _del_span(self, start: int, size: int) -> None:
        del self.forward[start]
        del self.backward[start + size - 1]
        starts = self.free_maps[size]
        starts.discard(start)
        if not starts:
            del self.free_maps[size]
        self.free_count -= size

    def _merge_span(self, start: int, size: int) -> None:
        # A released span absorbs a free neighbour on each side, so that free runs stay maximal.
        prev = self.backward.get(start - 1)
        if prev is not None:
            self._del_span(start - prev, prev)
            start -= prev
            size += prev
        nxt = self.forward.get(start + size)
        if nxt is not None:
            self._del_span(start + size, nxt)
            size += nxt
        self._add_span(start, size)

    # -- public --------------------------------------------------------------------------------

    def load(self, ids: list[int]) -> None:
        """Replace the free set with ``ids`` (from a freelist page or a reachability walk)."""
        self.free_maps.clear()
        self.forward.clear()
        self.backward.clear()
        self.free_count = 0
        self.pending.clear()
        run_start = run_len = 0
        for pgid in sorted(set(ids)):
            if run_len and pgid == run_start + run_len:
                run_len += 1
                continue
            if run_len:
                self._add_span(run_start, run_len)
            run_start, run_len = pgid, 1
        if run_len:
            self._add_span(run_start, run_len)

    def allocate(self, n: int) -> int:
        """Start of ``n`` contiguous free pages, removed from the free set; 0 when none fit."""
        starts = self.free_maps.get(n)
        if starts:
            start = next(iter(starts))
            self._del_span(start, n)
            return start
        for size, starts in self.free_maps.items():
            if size > n:
                start = next(iter(starts))
                break
        else:
            return 0
        self._del_span(start, size)
        self._add_span(start + n, size - n)
        return start

    def free(self, txid: int, start: int, span: int) -> None:
        """Mark ``span`` pages from ``start`` as freed by transaction ``txid`` (pending)."""
        pending = self.pending.get(txid)
        if pending is None:
            self.pending[txid] = [(start, span)]
        else:
            pending.append((start, span))

    def release(self, upto_txid: int) -> None:
        """Make the pages freed by every transaction ``<= upto_txid`` allocatable."""
        for txid in [t for t in self.pending if t <= upto_txid]:
            for start, span in self.pending.pop(txid):
                self._merge_span(start, span)

    def pending_count(self) -> int:
        return sum(span for spans in self.pending.values() for _, span in spans)

    def free_ids(self) -> list[int]:
        """Sorted ids of the free pages (without pending ones)."""
        return sorted(p for start, size in self.forward.items() for p in range(start, start + size))

    def all_ids(self) -> list[int]:
        """Sorted ids of free and pending pages: what a persisted freelist page holds."""
        ids = [p for start, size in self.forward.items() for p in range(start, start + size)]
        for spans in self.pending.values():
            for start, span in spans:
                ids.extend(range(start, start + span))
        return sorted(ids)
