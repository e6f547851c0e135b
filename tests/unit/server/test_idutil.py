"""etcd's ID generator layout: 16-bit member prefix | 40-bit unix ms | 8-bit counter."""

from __future__ import annotations

from pyetcd.server.idutil import Generator, lease_id_from


def test_layout_follows_pkg_idutil() -> None:
    member_id = 0x8211F1D0F64F3269
    now_ms = 1_700_000_000_123
    g = Generator(member_id, now_ms / 1000)
    first = g.next()
    assert first >> 48 == 0x3269  # uint16(member id)
    assert (first >> 8) & ((1 << 40) - 1) == now_ms & ((1 << 40) - 1)
    assert first & 0xFF == 1  # Next() increments before use
    assert g.next() == first + 1


def test_counter_carries_into_the_timestamp_not_the_prefix() -> None:
    g = Generator(0xFFFF, 0.0)
    ids = [g.next() for _ in range(300)]
    assert len(set(ids)) == 300
    assert all(i >> 48 == 0xFFFF for i in ids)
    assert ids[255] & ((1 << 48) - 1) == 256


def test_suffix_wraps_within_48_bits() -> None:
    g = Generator(1, ((1 << 40) - 1) / 1000)  # the largest 40-bit millisecond value
    for _ in range(255):
        g.next()
    assert g.next() == 1 << 48  # the suffix wrapped to 0; the prefix is intact


def test_lease_ids_are_positive_int64() -> None:
    g = Generator(0xFFFF, 1_700_000_000.0)
    lease_id = g.next_lease_id()
    assert 0 < lease_id < 1 << 63
    assert lease_id_from(1 << 63 | 5) == 5
