"""The keyspace analysis itself: bucket entries in, an ``Analysis`` out. Pure: no I/O.

``analyze`` consumes the ``key`` bucket's (revision key, marshalled ``mvccpb.KeyValue``) entries
once, in any order (bbolt yields them by revision), keeping per key a few counters and the
metadata of its latest entry, never a value: memory grows with the number of distinct keys, not
with the size of the db. Leases and the ``meta`` bucket are small and read whole.

How etcd's data maps to the report:

- a key is *live* when its latest entry is a put; a tombstone (an 18-byte revision key ending in
  ``t``) as the latest entry means deleted, and compaction has not yet removed it;
- the current revision is the highest main revision in the bucket, raised to the scheduled
  compaction's (etcd's ``restore`` does the same);
- an entry whose KeyValue has an empty key (the marker ``etcdutl snapshot restore
  --bump-revision`` writes) is counted in revisions and bytes, under the prefix ``""``, and is
  never a live key: no client can name it;
- a prefix is the key up to and including its ``depth``-th separator, where a separator that
  starts the key belongs to the prefix without counting (``/registry/pods/`` is depth 2); a key
  with fewer separators is its own prefix.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from pyetcd.analyze.report import (
    AgeBand,
    Analysis,
    KeyInfo,
    LeaseInfo,
    MissingLease,
    Options,
    OtherPrefixes,
    PrefixUsage,
    Usage,
)
from pyetcd.mvcc.compaction import FINISHED_COMPACT_KEY, SCHEDULED_COMPACT_KEY
from pyetcd.mvcc.revision import (
    MARKED_REV_BYTES_LEN,
    REV_BYTES_LEN,
    bytes_to_rev,
    is_tombstone,
    main_of,
    pack,
)
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2

__all__ = ["AnalyzeError", "analyze", "key_prefix"]

_REV_SEPARATOR = 0x5F  # the '_' between main and sub in a revision key
_LEASE_KEY_LEN = 8


class AnalyzeError(ValueError):
    """An entry that is not what etcd writes there; the message names the bucket and entry."""


def key_prefix(key: bytes, separator: bytes, depth: int) -> bytes:
    """``key`` up to and including its ``depth``-th separator (see the module docstring)."""
    step = len(separator)
    pos = step if key.startswith(separator) else 0
    for _ in range(depth):
        i = key.find(separator, pos)
        if i < 0:
            return key
        pos = i + step
    return key[:pos]


class _KeyState:
    """What is kept per key while the bucket streams by."""

    __slots__ = (
        "create_revision",
        "lease",
        "live",
        "rev",
        "revisions",
        "stored_bytes",
        "value_size",
        "version",
    )

    def __init__(self) -> None:
        self.revisions = 0
        self.stored_bytes = 0
        self.rev = -1  # packed {main, sub} of the latest entry seen
        self.live = False
        self.value_size = 0
        self.create_revision = 0
        self.version = 0
        self.lease = 0

    def info(self, key: bytes) -> KeyInfo:
        return KeyInfo(
            key=key,
            live=self.live,
            value_size=self.value_size,
            create_revision=self.create_revision,
            mod_revision=main_of(self.rev),
            version=self.version,
            lease=self.lease,
            revisions=self.revisions,
            stored_bytes=self.stored_bytes,
        )


@dataclass(slots=True)
class _Sum:
    live_keys: int = 0
    live_bytes: int = 0
    revisions: int = 0
    stored_bytes: int = 0

    def add(self, st: _KeyState, live_bytes: int) -> None:
        self.revisions += st.revisions
        self.stored_bytes += st.stored_bytes
        if st.live:
            self.live_keys += 1
            self.live_bytes += live_bytes

    def usage(self) -> Usage:
        return Usage(self.live_keys, self.live_bytes, self.revisions, self.stored_bytes)


def _scan_keys(records: Iterable[tuple[bytes, bytes]]) -> tuple[dict[bytes, _KeyState], int, int]:
    """Per-key state, the highest main revision, and the number of tombstones."""
    keys: dict[bytes, _KeyState] = {}
    revision = 0
    tombstones = 0
    # A fresh message per entry: re-parsing into one message would grow its upb arena with
    # every value ever parsed (the whole db) until the message is dropped.
    parse = kv_pb2.KeyValue.FromString
    for rev_key, value in records:
        n = len(rev_key)
        if n not in (REV_BYTES_LEN, MARKED_REV_BYTES_LEN) or rev_key[8] != _REV_SEPARATOR:
            raise AnalyzeError(f"key bucket: entry {rev_key.hex()} is not a revision")
        tomb = n == MARKED_REV_BYTES_LEN
        if tomb and not is_tombstone(rev_key):
            raise AnalyzeError(f"key bucket: entry {rev_key.hex()} is not a revision")
        main, sub = bytes_to_rev(rev_key)
        try:
            kv = parse(value)
        except DecodeError:
            raise AnalyzeError(
                f"key bucket: the value at revision {main}_{sub} is not an mvccpb.KeyValue"
            ) from None
        revision = max(revision, main)
        if tomb:
            tombstones += 1
        key = kv.key
        st = keys.get(key)
        if st is None:
            st = keys[key] = _KeyState()
        st.revisions += 1
        st.stored_bytes += n + len(value)
        rev = pack(main, sub)
        if rev > st.rev:
            st.rev = rev
            st.live = not tomb and key != b""
            if st.live:
                st.value_size = len(kv.value)
                st.create_revision = kv.create_revision
                st.version = kv.version
                st.lease = kv.lease
            else:
                st.value_size = st.create_revision = st.version = st.lease = 0
    return keys, revision, tombstones


def _read_leases(leases: Iterable[tuple[bytes, bytes]]) -> dict[int, lease_pb2.Lease]:
    out: dict[int, lease_pb2.Lease] = {}
    for key, value in leases:
        if len(key) != _LEASE_KEY_LEN:
            raise AnalyzeError(f"lease bucket: key {key.hex()} is not an 8-byte lease ID")
        lease_id = int.from_bytes(key, "big", signed=True)
        try:
            out[lease_id] = lease_pb2.Lease.FromString(value)
        except DecodeError:
            raise AnalyzeError(
                f"lease bucket: the value of lease {lease_id:x} is not a leasepb.Lease"
            ) from None
    return out


def _compact_revision(meta: dict[bytes, bytes], name: bytes) -> int:
    value = meta.get(name)
    if value is None:
        return 0
    if len(value) != REV_BYTES_LEN:
        raise AnalyzeError(f"meta bucket: {name.decode()} is not a revision: {value.hex()}")
    return bytes_to_rev(value)[0]


def _age_bands(ages: dict[int, list[int]]) -> tuple[AgeBand, ...]:
    """Decade bands 0-9, 10-99, ... from the per-decade [keys, bytes] counts, gaps included."""
    if not ages:
        return ()
    return tuple(
        AgeBand(
            min_ago=0 if d == 0 else 10**d,
            max_ago=10 ** (d + 1) - 1,
            live_keys=ages.get(d, [0, 0])[0],
            live_bytes=ages.get(d, [0, 0])[1],
        )
        for d in range(max(ages) + 1)
    )


def analyze(
    records: Iterable[tuple[bytes, bytes]],
    leases: Iterable[tuple[bytes, bytes]] = (),
    meta: Iterable[tuple[bytes, bytes]] = (),
    options: Options | None = None,
) -> Analysis:
    """Analyse the entries of the ``key``, ``lease`` and ``meta`` buckets.

    ``records`` is consumed once, before ``leases`` and ``meta``. Raises ``AnalyzeError`` on an
    entry etcd would not have written.
    """
    opts = options or Options()
    keys, revision, tombstones = _scan_keys(records)
    lease_records = _read_leases(leases)
    meta_values = dict(meta)
    compact = _compact_revision(meta_values, FINISHED_COMPACT_KEY)
    scheduled = _compact_revision(meta_values, SCHEDULED_COMPACT_KEY)
    revision = max(revision, scheduled)

    totals = _Sum()
    prefixes: dict[bytes, _Sum] = {}
    per_lease: dict[int, list[int]] = {}  # lease ID -> [live keys, live bytes]
    missing: dict[int, list[bytes]] = {}  # lease ID -> its live keys
    ages: dict[int, list[int]] = {}  # decade of "revisions ago" -> [live keys, live bytes]
    sep, depth = opts.separator, opts.depth
    for key, st in keys.items():
        live_bytes = len(key) + st.value_size
        totals.add(st, live_bytes)
        prefix = key_prefix(key, sep, depth)
        group = prefixes.get(prefix)
        if group is None:
            group = prefixes[prefix] = _Sum()
        group.add(st, live_bytes)
        if not st.live:
            continue
        band = ages.setdefault(len(str(revision - main_of(st.rev))) - 1, [0, 0])
        band[0] += 1
        band[1] += live_bytes
        if st.lease:
            if st.lease in lease_records:
                attached = per_lease.setdefault(st.lease, [0, 0])
                attached[0] += 1
                attached[1] += live_bytes
            else:
                missing.setdefault(st.lease, []).append(key)

    top = opts.top
    ranked = sorted(prefixes.items(), key=lambda pg: (-pg[1].stored_bytes, pg[0]))
    rest = _Sum()
    for _, group in ranked[top:]:
        rest.live_keys += group.live_keys
        rest.live_bytes += group.live_bytes
        rest.revisions += group.revisions
        rest.stored_bytes += group.stored_bytes

    biggest = heapq.nsmallest(
        top,
        ((k, st) for k, st in keys.items() if st.live),
        key=lambda ks: (-ks[1].value_size, ks[0]),
    )
    hot = heapq.nsmallest(
        top,
        ((k, st) for k, st in keys.items() if st.revisions > 1),
        key=lambda ks: (-ks[1].revisions, -ks[1].stored_bytes, ks[0]),
    )
    lease_infos = sorted(
        (
            LeaseInfo(
                id=lease_id,
                ttl=rec.TTL,
                remaining_ttl=rec.RemainingTTL,
                live_keys=per_lease.get(lease_id, [0, 0])[0],
                live_bytes=per_lease.get(lease_id, [0, 0])[1],
            )
            for lease_id, rec in lease_records.items()
        ),
        key=lambda li: (-li.live_keys, li.id),
    )
    missing_leases = sorted(
        (
            MissingLease(id=lease_id, live_keys=len(names), keys=tuple(sorted(names)[:top]))
            for lease_id, names in missing.items()
        ),
        key=lambda ml: (-ml.live_keys, ml.id),
    )
    return Analysis(
        options=opts,
        revision=revision,
        compact_revision=compact,
        scheduled_compact_revision=scheduled,
        totals=totals.usage(),
        tombstones=tombstones,
        prefixes=tuple(PrefixUsage(p, g.usage()) for p, g in ranked[:top]),
        other=OtherPrefixes(max(len(ranked) - top, 0), rest.usage()),
        biggest_keys=tuple(st.info(k) for k, st in biggest),
        hot_keys=tuple(st.info(k) for k, st in hot),
        leases=tuple(lease_infos),
        missing_leases=tuple(missing_leases),
        ages=_age_bands(ages),
    )
