"""The rollout gate: at most ``limit`` clusters roll at once; slots are held until the cluster
is seen done; no slot before every known cluster was seen once (or the warm-up ran out)."""

from __future__ import annotations

from etcd_operator.runtime.rollouts import RolloutGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_at_most_limit_clusters_hold_a_slot() -> None:
    gate = RolloutGate(1)
    assert gate.available("a")
    gate.claim("a")
    assert not gate.available("b")
    assert gate.available("a")  # its own slot
    gate.observe("a", rolling=True)
    assert not gate.available("b")
    gate.observe("a", rolling=False)
    assert gate.available("b")


def test_clusters_seen_rolling_count_against_the_limit() -> None:
    gate = RolloutGate(2)
    gate.observe("x", rolling=True)
    gate.observe("y", rolling=True)
    gate.observe("z", rolling=True)  # already rolling when the operator started: counted
    assert gate.holders == {"x", "y", "z"}
    assert not gate.available("a")
    gate.observe("x", rolling=False)
    gate.observe("y", rolling=False)
    assert gate.available("a")  # z still rolls: one slot of two is free
    gate.claim("a")
    assert not gate.available("b")
    gate.forget("z")  # deleted while rolling
    assert gate.available("b")


def test_no_slot_until_every_known_cluster_was_seen_or_the_warm_up_ends() -> None:
    clock = Clock()
    gate = RolloutGate(1, warmup_seconds=60, clock=clock)
    gate.track(lambda: ["a", "b"])
    assert not gate.available("a")
    gate.observe("a", rolling=False)
    assert not gate.available("a")  # b may be rolling: not known yet
    gate.observe("b", rolling=False)
    assert gate.available("a")

    late = RolloutGate(1, warmup_seconds=60, clock=clock)
    late.track(lambda: ["a", "never-seen"])
    assert not late.available("a")
    clock.now = 61
    assert late.available("a")


def test_a_pass_that_ends_after_its_clusters_deletion_takes_no_slot_back() -> None:
    # e2e: a cluster deleted while its pass was in flight kept the only slot, and the next
    # cluster's rollout waited (RolloutQueued) until the scenario timed out.
    gate = RolloutGate(1)
    gate.claim("old")
    gate.forget("old")  # its DELETED event, while its pass still runs
    gate.observe("old", rolling=True)  # that pass ends, having seen it rolling
    gate.claim("old")
    assert gate.holders == frozenset()
    assert gate.available("new")
