"""Key-range permissions: the merged ranges of a user's roles and etcd's coverage rules."""

from __future__ import annotations

import pytest
from pyetcd.proto.authpb import auth_pb2
from pyetcd.server.auth.perms import (
    READ,
    READWRITE,
    WRITE,
    RangePermissions,
    is_valid_permission_range,
)


def role(*perms: tuple[int, bytes, bytes]) -> auth_pb2.Role:
    r = auth_pb2.Role(name=b"r")
    for kind, key, end in perms:
        r.keyPermission.add(permType=kind, key=key, range_end=end)
    return r


def test_a_single_key_grant_covers_that_key_only() -> None:
    perms = RangePermissions.of([role((READ, b"/a", b""))])
    assert perms.permits(b"/a", b"", READ)
    assert not perms.permits(b"/a/b", b"", READ)
    assert not perms.permits(b"/a", b"", WRITE)
    # A range request for exactly that key, as a prefix request of "/a" would be, is wider.
    assert not perms.permits(b"/a", b"/b", READ)


def test_a_prefix_grant_covers_ranges_inside_it_and_not_beyond() -> None:
    perms = RangePermissions.of([role((READWRITE, b"/app/", b"/app0"))])
    assert perms.permits(b"/app/x", b"", READ)
    assert perms.permits(b"/app/x", b"", WRITE)
    assert perms.permits(b"/app/", b"/app0", READ)
    assert perms.permits(b"/app/a", b"/app/b", WRITE)
    assert not perms.permits(b"/app", b"", READ)
    assert not perms.permits(b"/app/", b"/app1", READ)
    assert not perms.permits(b"/app/", b"\x00", READ)


def test_open_ended_grants_and_requests() -> None:
    perms = RangePermissions.of([role((READ, b"/z", b"\x00"))])
    assert perms.permits(b"/zz", b"", READ)
    assert perms.permits(b"/z", b"\x00", READ)
    assert perms.permits(b"\xff\xff", b"", READ)
    assert not perms.permits(b"/y", b"\x00", READ)
    everything = RangePermissions.of([role((READ, b"\x00", b"\x00"))])
    assert everything.permits(b"\x00", b"\x00", READ)


def test_adjacent_grants_from_several_roles_cover_the_union() -> None:
    perms = RangePermissions.of(
        [role((READ, b"/a", b"/c")), role((READ, b"/c", b"/e")), role((READ, b"/f", b"/g"))]
    )
    assert perms.permits(b"/a", b"/e", READ)
    assert perms.permits(b"/b", b"/d", READ)
    # A gap between /e and /f: not covered.
    assert not perms.permits(b"/a", b"/g", READ)
    assert perms.permits(b"/f", b"/g", READ)


def test_read_and_write_ranges_are_kept_apart() -> None:
    perms = RangePermissions.of([role((WRITE, b"/w", b"/x"), (READ, b"/r", b"/s"))])
    assert perms.permits(b"/w1", b"", WRITE)
    assert not perms.permits(b"/w1", b"", READ)
    assert perms.permits(b"/r1", b"", READ)
    assert not perms.permits(b"/r1", b"", WRITE)


@pytest.mark.parametrize(
    ("key", "end", "valid"),
    [
        (b"/a", b"", True),
        (b"/a", b"/b", True),
        (b"/a", b"\x00", True),
        (b"", b"", False),
        (b"/b", b"/a", False),
        (b"/a", b"/a", False),
    ],
)
def test_valid_permission_ranges(key: bytes, end: bytes, valid: bool) -> None:
    assert is_valid_permission_range(key, end) is valid
