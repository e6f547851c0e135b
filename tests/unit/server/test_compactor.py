"""Auto-compaction decisions: what is compacted when, in both of etcd's modes."""

from pyetcd.server.compactor import REVISION_INTERVAL, Periodic, Revision


def run(
    c: Periodic | Revision, until: float, step: float, rev_at: float
) -> list[tuple[float, int]]:
    """Tick every ``step`` seconds with a revision growing ``rev_at`` per second."""
    out = []
    t = 0.0
    while t <= until:
        target = c.tick(t, int(1 + t * rev_at))
        if target is not None:
            out.append((t, target))
        t += step
    return out


def test_periodic_keeps_one_retention_of_history() -> None:
    # 1 h retention, 10 revisions a second.
    done = run(Periodic(3600, 0.0), until=3 * 3600, step=60, rev_at=10)
    assert [t for t, _ in done] == [3600, 7200, 10800]
    for t, target in done:
        # The compacted revision is the one current a retention before, within one sample.
        assert int(1 + (t - 3600) * 10) <= target <= int(1 + (t - 3600 + 360) * 10)


def test_periodic_short_retention_compacts_every_retention() -> None:
    done = run(Periodic(60, 0.0), until=300, step=1, rev_at=1)
    assert [t for t, _ in done] == [60, 120, 180, 240, 300]
    assert [r for _, r in done] == sorted(r for _, r in done)


def test_periodic_without_writes_compacts_nothing_twice() -> None:
    c = Periodic(60, 0.0)
    targets = [c.tick(float(t), 5) for t in range(0, 400)]
    assert [t for t in targets if t is not None] == [5]


def test_revision_mode_compacts_every_five_minutes_to_current_minus_retention() -> None:
    c = Revision(1000, 0.0)
    assert c.tick(REVISION_INTERVAL - 1, 5000) is None
    assert c.tick(REVISION_INTERVAL, 5000) == 4000
    assert c.tick(2 * REVISION_INTERVAL, 5000) is None  # nothing new
    assert c.tick(3 * REVISION_INTERVAL, 900) is None  # not enough history
    assert c.tick(4 * REVISION_INTERVAL, 7000) == 6000
