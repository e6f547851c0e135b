"""The write sample's counting and summary: bounded counters that keep every heavy prefix and
key with a count short by at most events / (capacity + 1), prefixes drawn as pyetcdutl draws
them, the status of a window and the gauges' rates, and when a window is due."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from etcd_operator.api.analysis import STATUS_PREFIXES, WritesSpec, WritesStatus
from etcd_operator.api.times import rfc3339
from etcd_operator.reconcile.write_sample import (
    HeavyHitters,
    WriteCounter,
    due,
    key_prefix,
    rates,
    summarize,
)
from pyetcd.analyze.core import key_prefix as analyze_prefix

from tests.unit.operator.reconcile.builders import T0

KEYS = [
    b"/registry/pods/ns/a",
    b"/registry/pods",
    b"/registry/",
    b"registry/pods/x",
    b"/",
    b"",
    b"//double//slash",
    b"no-separator",
    b"/\xff\xfe/binary/key",
]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("separator", [b"/", b"::", b"-"])
def test_prefixes_are_drawn_as_pyetcdutl_draws_them(separator: bytes, depth: int) -> None:
    for key in KEYS:
        assert key_prefix(key, separator, depth) == analyze_prefix(key, separator, depth), key


def test_heavy_hitters_keep_every_frequent_item_within_the_bound() -> None:
    rng = random.Random(7)
    capacity = 50
    # A few hot items over a long tail of items seen once or twice.
    stream = [b"hot-%d" % (i % 5) for i in range(3000)]
    stream += [b"cold-%d" % rng.randrange(20000) for _ in range(7000)]
    rng.shuffle(stream)
    hitters = HeavyHitters(capacity)
    for item in stream:
        hitters.add(item)
    exact = Counter(stream)
    bound = len(stream) / (capacity + 1)
    assert len(hitters) <= capacity
    kept = dict(hitters.top(capacity))
    for item, count in kept.items():
        assert exact[item] - bound <= count <= exact[item], item
    for item, count in exact.items():
        if count > bound:
            assert item in kept, item
    assert [item for item, _ in hitters.top(5)] == sorted(b"hot-%d" % i for i in range(5))


def test_heavy_hitters_are_exact_below_capacity_and_refuse_no_room() -> None:
    hitters = HeavyHitters(4)
    for item in [b"a", b"b", b"a", b"c", b"a", b"b"]:
        hitters.add(item)
    assert hitters.top(2) == [(b"a", 3), (b"b", 2)]
    with pytest.raises(ValueError, match="at least 1"):
        HeavyHitters(0)


def test_a_window_summarised_for_the_status_and_the_gauges() -> None:
    counter = WriteCounter.of("/", 2)
    for i in range(90):
        counter.add(b"/registry/leases/kube-node-lease/node-%d" % (i % 3))
    for i in range(30):
        counter.add(b"/registry/events/ns/e%d" % i)
    counter.add(b"/\xff/bin")
    status = summarize(
        counter,
        sampled_at=rfc3339(T0),
        window_seconds=29.6,
        from_revision=100,
        to_revision=221,
    )
    assert status.model_dump(exclude_none=True) == {
        "sampledAt": rfc3339(T0),
        "windowSeconds": 30,
        "fromRevision": 100,
        "toRevision": 221,
        "writes": 121,
        "prefixes": [
            {"prefix": "/registry/leases/", "writes": 90},
            {"prefix": "/registry/events/", "writes": 30},
            {"prefix": "/\\xff/bin", "writes": 1},
        ],
        "hottestKey": {"key": "/registry/leases/kube-node-lease/node-0", "writes": 30},
    }
    assert rates(status) == {
        "/registry/leases/": 3.0,
        "/registry/events/": 1.0,
        "/\\xff/bin": 1 / 30,
    }


def test_a_quiet_window_and_a_busy_one_list_at_most_five_prefixes() -> None:
    quiet = summarize(
        WriteCounter.of("/", 1),
        sampled_at=rfc3339(T0),
        window_seconds=0.2,
        from_revision=7,
        to_revision=7,
    )
    assert (quiet.writes, quiet.prefixes, quiet.hottestKey, quiet.windowSeconds) == (0, [], None, 1)
    assert rates(quiet) == {}
    busy = WriteCounter.of("/", 1)
    for i in range(20):
        busy.add(b"/p%d/k" % i)
    listed = summarize(
        busy, sampled_at=rfc3339(T0), window_seconds=5, from_revision=1, to_revision=21
    ).prefixes
    assert listed is not None and len(listed) == STATUS_PREFIXES


def test_a_window_is_due_first_and_then_every_interval() -> None:
    spec = WritesSpec(windowSeconds=30, intervalSeconds=600)
    assert due(spec, None, T0)
    last = WritesStatus(
        sampledAt=rfc3339(T0), windowSeconds=30, fromRevision=1, toRevision=1, writes=0
    )
    assert not due(spec, last, T0 + timedelta(seconds=599))
    assert due(spec, last, T0 + timedelta(seconds=600))
