"""Key-range permissions: a user's roles merged into read and write ranges, and the checks.

etcd keeps, per user, two interval trees of the ranges its roles grant
(``auth/range_perm_cache.go``) and asks whether a request's range is covered by their union
(``Contains``) or, for a single key, whether any range holds it (``Intersects``). The rules of
etcd's byte ranges apply: the empty byte string is the largest value (an open end), a single key
``k`` is the range ``[k, k + "\\x00")``, and a permission or request whose range end is
``"\\x00"`` reaches to the end of the keyspace. The few ranges a user has are kept as sorted
lists; the checks walk them as etcd's tree visit does, so every edge case answers as etcd's.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pyetcd.proto.authpb import auth_pb2

READ = auth_pb2.Permission.READ
WRITE = auth_pb2.Permission.WRITE
READWRITE = auth_pb2.Permission.READWRITE

OPEN_END = b""
"""The largest value of etcd's affine byte order: a range that ends here has no end."""

Interval = tuple[bytes, bytes]


def _cmp(a: bytes, b: bytes) -> int:
    """etcd's ``BytesAffineComparable.Compare``: byte order, the empty string largest."""
    if not a:
        return 0 if not b else 1
    if not b:
        return -1
    return (a > b) - (a < b)


def point(key: bytes) -> Interval:
    return key, key + b"\x00"


def is_open_ended(range_end: bytes) -> bool:
    return range_end == b"\x00"


def is_valid_permission_range(key: bytes, range_end: bytes) -> bool:
    """What ``RoleGrantPermission`` accepts (else ``invalid auth management``)."""
    if not key:
        return False
    if not range_end:
        return True
    if _cmp(key, range_end) < 0:
        return True
    return is_open_ended(range_end)


def _overlaps(a: Interval, b: Interval) -> bool:
    """etcd's ``Interval.Compare(a, b) == 0``."""
    if _cmp(a[0], b[0]) < 0 and _cmp(a[1], b[0]) <= 0:
        return False
    return _cmp(a[0], b[1]) < 0


def _permission_interval(perm: auth_pb2.Permission) -> Interval:
    if not perm.range_end:
        return point(perm.key)
    return perm.key, OPEN_END if is_open_ended(perm.range_end) else perm.range_end


@dataclass
class RangePermissions:
    """One user's merged ranges (etcd's ``unifiedRangePermissions``)."""

    read: list[Interval] = field(default_factory=list)
    write: list[Interval] = field(default_factory=list)

    @classmethod
    def of(cls, roles: Iterable[auth_pb2.Role]) -> RangePermissions:
        merged = cls()
        for role in roles:
            for perm in role.keyPermission:
                ivl = _permission_interval(perm)
                if perm.permType in (READ, READWRITE):
                    merged.read.append(ivl)
                if perm.permType in (WRITE, READWRITE):
                    merged.write.append(ivl)
        # Sorted by the start, as the tree visits them (a permission's key is never empty, so
        # plain byte order is the affine order here).
        merged.read.sort(key=_begin)
        merged.write.sort(key=_begin)
        return merged

    def permits(self, key: bytes, range_end: bytes, perm_type: int) -> bool:
        """Whether the ranges of ``perm_type`` (READ or WRITE) allow ``[key, range_end)``; an
        empty ``range_end`` is the single key."""
        ranges = self.read if perm_type == READ else self.write
        if not range_end:
            p = point(key)
            return any(_overlaps(p, ivl) for ivl in ranges)
        wanted = (key, OPEN_END if is_open_ended(range_end) else range_end)
        return _contains(ranges, wanted)


def _contains(ranges: list[Interval], wanted: Interval) -> bool:
    """etcd's ``IntervalTree.Contains``: the ranges overlapping ``wanted`` form one unbroken
    stretch that starts at or before it and ends at or after it."""
    min_begin: bytes | None = None
    max_end = b""
    for ivl in ranges:
        if not _overlaps(wanted, ivl):
            continue
        if min_begin is None:
            min_begin, max_end = ivl
            continue
        if _cmp(max_end, ivl[0]) < 0:
            return False
        if _cmp(ivl[1], max_end) > 0:
            max_end = ivl[1]
    return (
        min_begin is not None and _cmp(max_end, wanted[1]) >= 0 and _cmp(min_begin, wanted[0]) <= 0
    )


def _begin(ivl: Interval) -> bytes:
    return ivl[0]
