"""Small helpers shared by the mvcc tests: decode what the store returns into plain tuples."""

from __future__ import annotations

import random

from pyetcd.mvcc import KVStore, RangeResult, WatchResponse
from pyetcd.proto.mvccpb import kv_pb2

# (key, value, create_revision, mod_revision, version, lease)
KV = tuple[bytes, bytes, int, int, int, int]


def kv_tuple(raw: bytes) -> KV:
    kv = kv_pb2.KeyValue.FromString(raw)
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def kv_tuples(result: RangeResult) -> list[KV]:
    return [kv_tuple(raw) for raw in result.kvs]


def keys_of(result: RangeResult) -> list[bytes]:
    return [kv_pb2.KeyValue.FromString(raw).key for raw in result.kvs]


# (type "PUT"/"DELETE", key, value, mod_revision)
EV = tuple[str, bytes, bytes, int]


def events_of(resp: WatchResponse) -> list[EV]:
    out: list[EV] = []
    for ev in resp.events:
        kv = ev.decoded_kv()
        out.append(("PUT" if ev.type == 0 else "DELETE", kv.key, kv.value, kv.mod_revision))
    return out


def apply_random_history(store: KVStore, seed: int, n_txns: int = 60) -> None:
    """A deterministic mix of puts, overwrites, deletes, range deletes and multi-op txns."""
    rng = random.Random(seed)
    keys = [f"k{i:02d}".encode() for i in range(12)]
    for i in range(n_txns):
        txn = store.write()
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            op = rng.random()
            k = rng.choice(keys)
            if op < 0.65:
                txn.put(k, f"v{i}".encode(), lease=rng.choice([0, 0, 0, 5]))
            elif op < 0.85:
                txn.delete_range(k)
            else:
                txn.delete_range(k, k + b"\xff")
        txn.end()


def snapshot_reads(store: KVStore, revs: range) -> dict[int, list[bytes]]:
    """Every key at each revision: the raw bytes a client would get."""
    return {rev: store.range(b"\x00", b"\x00", rev=rev).kvs for rev in revs}
