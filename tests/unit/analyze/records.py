"""Hand-made bucket entries for the analysis tests: puts, tombstones, leases, meta revisions."""

from __future__ import annotations

from pyetcd.mvcc.revision import rev_to_bytes, tombstone_bytes
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2

Entry = tuple[bytes, bytes]


def put(
    main: int,
    key: bytes,
    value: bytes = b"",
    *,
    sub: int = 0,
    create: int = 0,
    version: int = 1,
    lease: int = 0,
) -> Entry:
    """A `key` bucket entry as etcd writes a put at {main, sub}."""
    kv = kv_pb2.KeyValue(
        key=key,
        value=value,
        create_revision=create or main,
        mod_revision=main,
        version=version,
        lease=lease,
    )
    return rev_to_bytes(main, sub), kv.SerializeToString()


def delete(main: int, key: bytes, *, sub: int = 0) -> Entry:
    """A deletion's tombstone: the revision key marked `t`, a KeyValue holding only the key."""
    return tombstone_bytes(main, sub), kv_pb2.KeyValue(key=key).SerializeToString()


def lease(lease_id: int, ttl: int, remaining: int = 0) -> Entry:
    value = lease_pb2.Lease(ID=lease_id, TTL=ttl, RemainingTTL=remaining).SerializeToString()
    return lease_id.to_bytes(8, "big", signed=True), value


def history(key: bytes, first: int, count: int, value: bytes) -> list[Entry]:
    """`count` puts of one key at revisions first, first+1, ... (versions 1..count)."""
    return [put(first + i, key, value, create=first, version=i + 1) for i in range(count)]


def stored(entries: list[Entry]) -> int:
    """Bytes the entries take in the bucket: revision key + marshalled KeyValue."""
    return sum(len(k) + len(v) for k, v in entries)
