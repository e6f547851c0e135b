"""etcd's automatic compaction (--auto-compaction-mode/-retention) as pure decisions.

``periodic``: keep ``retention`` of history. Revisions are sampled every tenth of the retention
(at most every 6 minutes) and, once a full retention has passed, the store is compacted to the
revision sampled a retention ago, then again every retention (at most hourly), as etcd's
v3compactor.Periodic does. ``revision``: every 5 minutes compact to ``current - retention``.
Time is passed in (monotonic seconds), so the rules are tested without a clock.
"""

from __future__ import annotations

from collections import deque

HOUR = 3600.0
REVISION_INTERVAL = 300.0  # etcd's revision compactor checks every 5 minutes


class Periodic:
    def __init__(self, retention: float, now: float) -> None:
        self.retention = retention
        self.interval = min(retention, HOUR)
        self.sample_every = self.interval / 10
        self._samples: deque[tuple[float, int]] = deque()
        self._next_sample = now
        self._next_compact = now + retention
        self._last = 0

    def tick(self, now: float, current_rev: int) -> int | None:
        """Call often; returns the revision to compact to when one is due."""
        if now >= self._next_sample:
            self._samples.append((now, current_rev))
            self._next_sample = now + self.sample_every
        if now < self._next_compact:
            return None
        # The newest sample at least a retention old is what may go.
        target = None
        while self._samples and now - self._samples[0][0] >= self.retention:
            target = self._samples.popleft()[1]
        self._next_compact = now + self.interval
        if target is None or target <= self._last:
            return None
        self._last = target
        return target


class Revision:
    def __init__(self, retention: int, now: float) -> None:
        self.retention = retention
        self._next = now + REVISION_INTERVAL
        self._last = 0

    def tick(self, now: float, current_rev: int) -> int | None:
        if now < self._next:
            return None
        self._next = now + REVISION_INTERVAL
        target = current_rev - self.retention
        if target <= 0 or target <= self._last:
            return None
        self._last = target
        return target
