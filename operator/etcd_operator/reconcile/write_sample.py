"""Writes by key prefix on a live cluster, from a sampled watch: counting and summary. Pure.

With ``spec.analysis.writes`` the runtime holds a watch on the whole key space for
``windowSeconds`` every ``intervalSeconds`` (a duty cycle: the cluster serves one more watcher
only while a window lasts) and feeds each event's key to a ``WriteCounter``. The counts are
bounded in memory whatever the window sees: ``HeavyHitters`` keeps at most ``capacity``
counters (Misra and Gries' frequent-items summary), so a window that writes a million distinct
keys costs what one of a few thousand does. A count is then a lower bound, short by at most
``events / (capacity + 1)``, and every key or prefix that took more than that share is in it.

``summarize`` makes ``status.keyspace.writes``: the window, its revisions, the events counted,
the top prefixes and the hottest key by writes (a put or a delete is one write each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from etcd_operator.api.analysis import (
    STATUS_PREFIXES,
    KeyWrites,
    PrefixWrites,
    WritesSpec,
    WritesStatus,
)
from etcd_operator.api.times import parse_rfc3339

# Counters kept per window, for prefixes and for keys each.
CAPACITY = 2048


def key_prefix(key: bytes, separator: bytes, depth: int) -> bytes:
    """``key`` up to and including its ``depth``-th separator, a leading one not counted:
    the prefixes ``pyetcdutl analyze`` draws (a test holds the two to the same answers; the
    operator does not load the server's code)."""
    step = len(separator)
    pos = step if key.startswith(separator) else 0
    for _ in range(depth):
        i = key.find(separator, pos)
        if i < 0:
            return key
        pos = i + step
    return key[:pos]


def key_text(key: bytes) -> str:
    """A key as the reports show it: UTF-8, other bytes as ``\\xNN``."""
    return key.decode("utf-8", "backslashreplace")


def due(spec: WritesSpec, previous: WritesStatus | None, now: datetime) -> bool:
    """A window is due: none yet, or ``intervalSeconds`` since the last one began."""
    if previous is None:
        return True
    began = parse_rfc3339(previous.sampledAt)
    return began is None or now >= began + timedelta(seconds=spec.intervalSeconds)


class HeavyHitters:
    """At most ``capacity`` counters; the frequent items of a stream and lower bounds of their
    counts (Misra-Gries)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._counts: dict[bytes, int] = {}

    def add(self, item: bytes) -> None:
        counts = self._counts
        if item in counts:
            counts[item] += 1
        elif len(counts) < self.capacity:
            counts[item] = 1
        else:
            # Every counter gives one up with the new item: a full pass, but one that removes at
            # least as many counts as were added since, so it costs O(1) per item over a stream.
            for other in list(counts):
                if counts[other] == 1:
                    del counts[other]
                else:
                    counts[other] -= 1

    def top(self, n: int) -> list[tuple[bytes, int]]:
        """The ``n`` largest counts, largest first; ties by item, for a stable status."""
        return sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def __len__(self) -> int:
        return len(self._counts)


@dataclass
class WriteCounter:
    """One window's writes: every event's key, by prefix and by key."""

    separator: bytes
    depth: int
    events: int = 0
    prefixes: HeavyHitters = field(default_factory=HeavyHitters)
    keys: HeavyHitters = field(default_factory=HeavyHitters)

    @classmethod
    def of(cls, separator: str, depth: int) -> WriteCounter:
        """Prefixes as ``spec.analysis`` draws them for the offline analysis."""
        return cls(separator.encode(), depth)

    def add(self, key: bytes) -> None:
        self.events += 1
        self.prefixes.add(key_prefix(key, self.separator, self.depth))
        self.keys.add(key)


def summarize(
    counter: WriteCounter,
    *,
    sampled_at: str,
    window_seconds: float,
    from_revision: int,
    to_revision: int,
) -> WritesStatus:
    """``status.keyspace.writes`` of one window."""
    hottest = [KeyWrites(key=key_text(k), writes=n) for k, n in counter.keys.top(1)]
    return WritesStatus(
        sampledAt=sampled_at,
        windowSeconds=max(1, round(window_seconds)),
        fromRevision=from_revision,
        toRevision=max(from_revision, to_revision),
        writes=counter.events,
        prefixes=[
            PrefixWrites(prefix=key_text(p), writes=n)
            for p, n in counter.prefixes.top(STATUS_PREFIXES)
        ],
        hottestKey=hottest[0] if hottest else None,
    )


def rates(status: WritesStatus) -> dict[str, float]:
    """Writes per second by prefix: the write-rate gauges' series (five at most)."""
    window = max(1, status.windowSeconds)
    return {p.prefix: p.writes / window for p in status.prefixes or []}
