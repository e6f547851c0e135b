"""The lessor as etcd's: grant rules, renew, revoke with keys, expiry order, promotion."""

from __future__ import annotations

import random

import pytest
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.server import errors
from pyetcd.server.lessor import (
    EXPIRED_LEASE_RETRY_INTERVAL,
    MAX_LEASE_TTL,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseTTLTooLargeError,
    Lessor,
    NotPrimaryError,
    lease_bucket_key,
    min_lease_ttl,
)


def primary(min_ttl: int = 2) -> Lessor:
    lessor = Lessor(min_ttl)
    lessor.promote(0.0)
    return lessor


@pytest.mark.parametrize(
    ("election_ms", "heartbeat_ms", "expected"),
    [(1000, 100, 2), (1000, 300, 2), (2500, 250, 4), (5000, 100, 8), (500, 100, 1)],
)
def test_min_lease_ttl_uses_etcd_tick_arithmetic(
    election_ms: int, heartbeat_ms: int, expected: int
) -> None:
    assert min_lease_ttl(election_ms, heartbeat_ms) == expected


@pytest.mark.parametrize(
    ("requested", "granted"),
    [(-5, 2), (0, 2), (1, 2), (2, 2), (3, 3), (MAX_LEASE_TTL, MAX_LEASE_TTL)],
)
def test_grant_raises_small_ttls_silently(requested: int, granted: int) -> None:
    lease = primary().grant(7, requested, 0.0)
    assert lease.ttl == granted


@pytest.mark.parametrize(
    ("lease_id", "ttl", "error", "message"),
    [
        (0, 10, LeaseNotFoundError, "etcdserver: requested lease not found"),
        (1, MAX_LEASE_TTL + 1, LeaseTTLTooLargeError, "etcdserver: too large lease TTL"),
        (1, 10, LeaseExistsError, "etcdserver: lease already exists"),
    ],
)
def test_grant_errors_carry_etcd_messages(
    lease_id: int, ttl: int, error: type[Exception], message: str
) -> None:
    lessor = primary()
    lessor.grant(1, 5, 0.0)
    with pytest.raises(error) as info:
        lessor.grant(lease_id, ttl, 0.0)
    assert str(info.value) == message


def test_errors_compare_equal_to_the_server_errors() -> None:
    assert LeaseNotFoundError(5) == errors.ErrLeaseNotFound
    assert LeaseExistsError() == errors.ErrLeaseExist
    assert LeaseTTLTooLargeError() == errors.ErrLeaseTTLTooLarge
    assert LeaseNotFoundError().code == "NOT_FOUND"


def test_revoke_returns_attached_keys_sorted_and_forgets_them() -> None:
    lessor = primary()
    lessor.grant(1, 10, 0.0)
    lessor.grant(2, 10, 0.0)
    lessor.attach(1, [b"b", b"a"])
    lessor.attach(1, b"c")  # one key as bytes
    lessor.attach(2, b"z")
    assert lessor.get_lease(b"a") == 1
    assert lessor.revoke(1) == [b"a", b"b", b"c"]
    assert lessor.get_lease(b"a") == 0
    assert lessor.get_lease(b"z") == 2
    assert 1 not in lessor
    with pytest.raises(LeaseNotFoundError):
        lessor.revoke(1)
    with pytest.raises(LeaseNotFoundError):
        lessor.attach(1, b"a")


def test_attach_moves_a_key_between_leases_and_detach() -> None:
    lessor = primary()
    lessor.grant(1, 10, 0.0)
    lessor.grant(2, 10, 0.0)
    lessor.attach(1, b"k")
    lessor.attach(2, b"k")
    assert lessor.get_lease(b"k") == 2
    assert lessor.revoke(1) == []
    lessor.detach(2, b"k")
    assert lessor.get_lease(b"k") == 0
    assert lessor.revoke(2) == []


def test_renew_pushes_expiry_and_returns_ttl() -> None:
    lessor = primary()
    lessor.grant(1, 10, 0.0)
    lessor.grant(2, 10, 0.0)
    assert lessor.renew(1, 8.0) == 10
    assert lessor.expired(10.0, 10) == [2]
    lessor.revoke(2)
    assert lessor.expired(17.9, 10) == []
    assert lessor.expired(18.0, 10) == [1]


def test_renew_unknown_expired_or_on_follower() -> None:
    lessor = primary()
    lessor.grant(1, 10, 0.0)
    with pytest.raises(LeaseNotFoundError):
        lessor.renew(99, 1.0)
    with pytest.raises(LeaseNotFoundError):
        lessor.renew(1, 10.0)  # expired, not yet revoked
    follower = Lessor(2)
    follower.grant(1, 10, 0.0)
    with pytest.raises(NotPrimaryError):
        follower.renew(1, 1.0)


def test_time_to_live_truncates_like_go() -> None:
    lessor = primary()
    lessor.grant(1, 10, 100.0)
    lessor.attach(1, [b"y", b"x"])
    ttl = lessor.time_to_live(1, 100.4)
    assert ttl is not None
    assert (ttl.id, ttl.remaining, ttl.granted, ttl.keys) == (1, 9, 10, (b"x", b"y"))
    late = lessor.time_to_live(1, 110.5)
    assert late is not None and late.remaining == 0  # int64(-0.5s) is 0
    assert lessor.time_to_live(2, 100.0) is None


def test_follower_leases_never_expire_until_promoted() -> None:
    lessor = Lessor(2)
    lessor.grant(1, 5, 0.0)
    assert lessor.expired(1e9, 10) == []
    lessor.promote(100.0, extend=1.0)
    assert lessor.expired(105.9, 10) == []
    assert lessor.expired(106.0, 10) == [1]
    lessor.demote()
    assert lessor.expired(1e9, 10) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_expired_in_expiry_order_with_limit(seed: int) -> None:
    rng = random.Random(seed)
    lessor = primary(min_ttl=1)
    ttls = {lease_id: rng.randint(1, 50) for lease_id in range(1, 201)}
    for lease_id, ttl in ttls.items():
        lessor.grant(lease_id, ttl, 0.0)
    order = sorted(ttls, key=lambda i: (ttls[i], i))
    seen: list[int] = []
    for now in range(1, 51):
        while batch := lessor.expired(float(now), 7):
            assert len(batch) <= 7
            seen.extend(batch)
            for lease_id in batch:
                lessor.revoke(lease_id)
        assert seen == [i for i in order if ttls[i] <= now]
    assert len(lessor) == 0


def test_unrevoked_expired_lease_is_reported_again_after_the_retry_interval() -> None:
    lessor = primary()
    lessor.grant(1, 5, 0.0)
    assert lessor.expired(5.0, 10) == [1]
    assert lessor.expired(5.0 + EXPIRED_LEASE_RETRY_INTERVAL - 0.1, 10) == []
    assert lessor.expired(5.0 + EXPIRED_LEASE_RETRY_INTERVAL, 10) == [1]


def test_100k_leases_expire_in_order_without_scanning() -> None:
    n = 100_000
    lessor = Lessor(1)
    lessor.promote(0.0)
    rng = random.Random(7)
    ttls = [rng.randint(1, 1000) for _ in range(n)]
    for lease_id, ttl in enumerate(ttls, 1):
        lessor.grant(lease_id, ttl, 0.0)
    # Half of them are kept alive once: that leaves stale heap entries behind.
    for lease_id in range(1, n + 1, 2):
        lessor.renew(lease_id, 0.5)
    lessor.heap_operations = 0
    # Nothing due: looking costs no heap operation at all.
    assert lessor.expired(0.9, 1000) == []
    assert lessor.heap_operations == 0
    expected = {
        lease_id: ttl + (0.5 if lease_id % 2 else 0.0) for lease_id, ttl in enumerate(ttls, 1)
    }
    got: list[int] = []
    polls = 0
    for now in range(1, 1002):
        while batch := lessor.expired(float(now), 1000):
            polls += 1
            got.extend(batch)
            for lease_id in batch:
                lessor.revoke(lease_id)
    assert got == sorted(expected, key=lambda i: (expected[i], i))
    # Each lease costs a pop, a retry push and a stale pop, plus the stale entries of the
    # renewed half: O(n log n) in total. A scan per poll would be ~polls * n = millions.
    assert polls >= 100
    assert lessor.heap_operations <= 4 * n


def test_promote_spreads_piled_up_expiries() -> None:
    lessor = Lessor(10)
    for lease_id in range(1, 3001):
        lessor.grant(lease_id, 10, 0.0)
    lessor.promote(100.0, extend=1.0)
    per_second: dict[int, int] = {}
    for lease_id in lessor.leases():
        lease = lessor.lookup(lease_id)
        assert lease is not None
        assert lease.expiry >= 111.0
        per_second[int(lease.expiry)] = per_second.get(int(lease.expiry), 0) + 1
    assert max(per_second.values()) <= 750 + 1
    assert sum(per_second.values()) == 3000


def test_leases_sorted_by_expiry() -> None:
    lessor = primary()
    lessor.grant(1, 30, 0.0)
    lessor.grant(2, 10, 0.0)
    lessor.grant(3, 20, 0.0)
    assert lessor.leases() == [2, 3, 1]


def test_records_round_trip_and_restore() -> None:
    lessor = primary()
    lease = lessor.grant(-5, 60, 0.0)
    lessor.checkpoint(-5, 42, 0.0)
    record = Lessor.to_record(lease)
    assert lease_pb2.Lease.FromString(record) == lease_pb2.Lease(ID=-5, TTL=60, RemainingTTL=42)
    assert lease_bucket_key(-5) == b"\xff" * 7 + b"\xfb"
    assert lease_bucket_key(0x1234) == b"\x00" * 6 + b"\x12\x34"

    restored = Lessor(5)
    restored.restore([record, lease_pb2.Lease(ID=9, TTL=1)])
    assert sorted(restored.leases()) == [-5, 9]
    nine = restored.lookup(9)
    assert nine is not None and nine.ttl == 5  # raised to the minimum
    assert restored.expired(1e9, 10) == []  # forever until promoted
    restored.promote(0.0)
    # The checkpointed remaining TTL, not the full TTL, counts after promotion.
    assert restored.expired(41.9, 10) == [9]
    assert restored.expired(42.0, 10) == [-5]


def test_renew_forgets_a_checkpointed_remainder() -> None:
    lessor = primary()
    lessor.grant(1, 60, 0.0)
    lessor.checkpoint(1, 5, 0.0)
    assert lessor.expired(5.0, 10) == [1]
    assert lessor.renew(1, 4.0) == 60
    lease = lessor.lookup(1)
    assert lease is not None and lease.remaining_ttl == 0 and lease.expiry == 64.0


def test_grants_renewals_and_revocations_are_counted_as_etcds_lease_metrics() -> None:
    lessor = primary()
    lessor.grant(1, 10, 0.0)
    lessor.grant(2, 10, 0.0)
    with pytest.raises(LeaseExistsError):
        lessor.grant(1, 10, 0.0)
    lessor.renew(1, 1.0)
    lessor.revoke(2)
    with pytest.raises(LeaseNotFoundError):
        lessor.revoke(2)
    assert (lessor.granted, lessor.renewed, lessor.revoked) == (2, 1, 1)
    # Leases loaded from the backend at start were granted before, not by this member now.
    restored = Lessor(2)
    restored.restore([lease_pb2.Lease(ID=5, TTL=10)])
    assert (restored.granted, restored.renewed, restored.revoked) == (0, 0, 0)
