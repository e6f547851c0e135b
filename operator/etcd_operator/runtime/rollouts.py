"""The operator-wide limit on clusters whose members restart at the same time.

An operator upgrade, or a change of the operator's member settings (``members.*`` in the chart),
re-renders the pod template of every cluster's StatefulSet at once; applying them all would
restart every cluster's members together. The gate gives at most ``limit`` clusters a slot to
roll: a cluster holds its slot from the pass that applies its new template until a pass sees its
StatefulSet no longer rolling. Within a cluster, the StatefulSet rolls one member at a time.

The gate is the operator's memory, so it must not hand out slots before it knows which clusters
already roll: after a restart it first waits until every cluster it knows of (the kopf index)
has been observed once, or until a warm-up deadline, whichever comes first.

Decisions are atomic without a lock: ``available``, the pure planning and ``claim`` run with no
await in between, and the operator runs on one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class RolloutGate:
    def __init__(
        self,
        limit: int,
        *,
        warmup_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, limit)
        self._holders: set[str] = set()
        self._seen: set[str] = set()
        # Deleted clusters: a pass that read one before its deletion and finishes after it
        # must not take a slot back for it (nothing would ever free it again). A uid is never
        # reused, so remembering it is exact.
        self._gone: set[str] = set()
        self._known: Callable[[], Iterable[str]] = tuple
        self._clock = clock
        self._warm_at = clock() + warmup_seconds

    def track(self, known: Callable[[], Iterable[str]]) -> None:
        """The clusters (by uid) the gate must have seen before it hands out slots."""
        self._known = known

    @property
    def holders(self) -> frozenset[str]:
        return frozenset(self._holders)

    def _warm(self) -> bool:
        if self._clock() >= self._warm_at:
            return True
        return all(uid in self._seen for uid in self._known())

    def available(self, uid: str) -> bool:
        """Whether ``uid`` may start (or continue) a rollout now."""
        if uid in self._holders:
            return True
        return self._warm() and len(self._holders) < self.limit

    def claim(self, uid: str) -> None:
        """``uid`` starts rolling: call it only after ``available(uid)``, with no await between."""
        if uid not in self._gone:
            self._holders.add(uid)

    def observe(self, uid: str, *, rolling: bool) -> None:
        """What a pass saw: the cluster's StatefulSet rolls (it keeps or takes a slot) or not
        (its slot is free again)."""
        if uid in self._gone:
            return
        self._seen.add(uid)
        if rolling:
            self._holders.add(uid)
        else:
            self._holders.discard(uid)

    def forget(self, uid: str) -> None:
        """The cluster is deleted: its slot is free for good."""
        self._holders.discard(uid)
        self._seen.discard(uid)
        self._gone.add(uid)
