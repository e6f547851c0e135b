"""etcd's unique-ID generator (`pkg/idutil`): request IDs and server-chosen lease IDs.

An ID is `member prefix (16 bits) | unix-ms timestamp (40 bits) | counter (8 bits)`. The
timestamp is read once at start-up; after that the low 48 bits simply count up, so IDs stay unique
across restarts as long as fewer than 256 IDs per millisecond were issued over the lifetime.
"""

from __future__ import annotations

__all__ = ["Generator", "lease_id_from"]

_TS_LEN = 5 * 8
_CNT_LEN = 8
_SUFFIX_LEN = _TS_LEN + _CNT_LEN
_SUFFIX_MASK = (1 << _SUFFIX_LEN) - 1
_MAX_INT64 = (1 << 63) - 1


def _lowbit(x: int, n: int) -> int:
    return x & ((1 << n) - 1)


class Generator:
    """`idutil.NewGenerator(uint16(memberID), time.Now())`."""

    __slots__ = ("_prefix", "_suffix")

    def __init__(self, member_id: int, now: float) -> None:
        """`now` is the wall clock in unix seconds (`time.time()`), read once."""
        # etcd passes uint16(member id): the low 16 bits become the prefix.
        self._prefix = _lowbit(member_id, 16) << _SUFFIX_LEN
        unix_ms = int(now * 1000)
        self._suffix = _lowbit(unix_ms, _TS_LEN) << _CNT_LEN

    def next(self) -> int:
        """The next ID (uint64); the counter is incremented before use, as etcd's `Next`."""
        self._suffix += 1
        return self._prefix | _lowbit(self._suffix, _SUFFIX_LEN)

    def next_lease_id(self) -> int:
        """A server-chosen lease ID: `Next() & (2^63 - 1)`, a positive int64 (v3_server.go).

        Like etcd, draw again in the (theoretical) case of 0, which means "no lease".
        """
        lease_id = 0
        while lease_id == 0:
            lease_id = lease_id_from(self.next())
        return lease_id


def lease_id_from(request_id: int) -> int:
    return request_id & _MAX_INT64
