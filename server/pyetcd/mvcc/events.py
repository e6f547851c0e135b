"""MVCC events: what a write txn changed, as fed to watchers, holding the KeyValue bytes as stored.

An ``Event`` keeps the marshalled ``mvccpb.KeyValue`` exactly as it was written to the backend, so
the server can put it on the wire without decoding and re-encoding it: ``Event.encode`` builds the
``mvccpb.Event`` wire bytes by concatenation, and ``to_proto`` builds the message for callers that
want objects. ``prev_kv`` is filled in by the watchable store when a watcher asked for it.
"""

from __future__ import annotations

from typing import Final

from pyetcd.proto.mvccpb import kv_pb2

PUT: Final = 0  # mvccpb.Event.PUT
DELETE: Final = 1  # mvccpb.Event.DELETE

_UNRESOLVED: Final = b"\xff<unresolved>"


def encode_varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take ten bytes (two's complement)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_bytes_field(tag: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2) with field number ``tag``."""
    return encode_varint(tag << 3 | 2) + encode_varint(len(data)) + data


def decode_kv(raw: bytes) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue.FromString(raw)


class Event:
    """One change: ``type`` (PUT/DELETE), the key, and the KeyValue bytes an mvccpb.Event carries.

    For a PUT, ``kv`` is the stored KeyValue; for a DELETE it is ``KeyValue{key, mod_revision}``
    (etcd patches the tombstone's mod revision in so that watchers do not skip it).
    """

    __slots__ = ("_prev", "create_revision", "key", "kv", "mod_revision", "type")

    def __init__(
        self, type: int, key: bytes, kv: bytes, mod_revision: int, create_revision: int
    ) -> None:
        self.type = type
        self.key = key
        self.kv = kv
        self.mod_revision = mod_revision
        self.create_revision = create_revision  # 0 for a DELETE
        self._prev: bytes | None = _UNRESOLVED

    def __repr__(self) -> str:
        kind = "PUT" if self.type == PUT else "DELETE"
        return f"Event({kind}, {self.key!r}, mod={self.mod_revision})"

    @property
    def is_create(self) -> bool:
        """etcd ``IsCreateEvent``: a PUT that started a new generation of the key."""
        return self.type == PUT and self.create_revision == self.mod_revision

    @property
    def prev_resolved(self) -> bool:
        return self._prev is not _UNRESOLVED

    @property
    def prev_kv(self) -> bytes | None:
        """The key's KeyValue at ``mod_revision - 1`` (None: none, or not looked up)."""
        prev = self._prev
        return None if prev is _UNRESOLVED else prev

    def set_prev_kv(self, prev: bytes | None) -> None:
        self._prev = prev

    def decoded_kv(self) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue.FromString(self.kv)

    def encode(self, with_prev_kv: bool = False) -> bytes:
        """The ``mvccpb.Event`` wire bytes (PUT's type is the default, hence omitted)."""
        parts = [b"\x08\x01"] if self.type == DELETE else []
        parts.append(encode_bytes_field(2, self.kv))
        prev = self.prev_kv
        if with_prev_kv and prev is not None:
            parts.append(encode_bytes_field(3, prev))
        return b"".join(parts)

    def to_proto(self, with_prev_kv: bool = False) -> kv_pb2.Event:
        ev = kv_pb2.Event(type=self.type)  # type: ignore[arg-type]
        ev.kv.MergeFromString(self.kv)
        prev = self.prev_kv
        if with_prev_kv and prev is not None:
            ev.prev_kv.MergeFromString(prev)
        return ev
