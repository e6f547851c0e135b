"""Concurrent clients that record a get/put/cas history for the porcupine checker.

Each client is a thread with its own gRPC channel, pinned to one member's endpoint. It runs
random operations on a few keys, one at a time, recording ``time.monotonic_ns()`` just before the
call and just after the answer. After a failure it moves on to the next member and starts a NEW
operation (the failed one is never retried, so each recorded operation is one request).

Outcomes:

* an answer: recorded with its result;
* an error after which the request may still have been applied (Unavailable, DeadlineExceeded,
  a lost connection, anything unknown): a write is recorded without a return time (the checker
  treats it as "possibly applied at any time after its call"); a read has no effect and is
  dropped;
* a definite refusal (InvalidArgument, FailedPrecondition, ...: etcd rejected it before
  proposing it): dropped, it had no effect.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

OpName = Literal["get", "put", "cas"]

# Rejected before being proposed: the operation certainly had no effect.
DEFINITE_FAILURES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


@dataclass
class Op:
    """One recorded operation; ``ret is None`` means it timed out (outcome unknown)."""

    client: int
    call: int
    op: OpName
    key: str
    value: str = ""
    expect: str = ""
    ret: int | None = None
    found: bool = False
    result: str = ""
    ok: bool = False

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "client": self.client,
            "call": self.call,
            "return": self.ret,
            "op": self.op,
            "key": self.key,
        }
        if self.op == "get":
            record.update(found=self.found, result=self.result)
        else:
            record["value"] = self.value
        if self.op == "cas":
            record.update(expect=self.expect, ok=self.ok)
        return record


@dataclass
class Stats:
    """Counts per outcome, for the report."""

    ok: int = 0
    timed_out: int = 0
    refused: int = 0
    reads_lost: int = 0


@dataclass
class History:
    """All clients' operations (thread-safe appends)."""

    ops: list[Op] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def write(self, path: Path) -> int:
        with self.lock:
            ops = sorted(self.ops, key=lambda o: o.call)
        with path.open("w") as out:
            for op in ops:
                out.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
        return len(ops)


class Client(threading.Thread):
    """One recording client; stops when ``stop`` is set (finishing the operation in flight)."""

    def __init__(
        self,
        client_id: int,
        endpoints: Sequence[str],
        keys: Sequence[str],
        history: History,
        stop: threading.Event,
        *,
        rpc_timeout: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(name=f"lin-client-{client_id}", daemon=True)
        self.client_id = client_id
        self.endpoints = list(endpoints)
        self.endpoint_index = client_id % len(self.endpoints)
        self.keys = list(keys)
        self.history = history
        self.stop_event = stop
        self.rpc_timeout = rpc_timeout
        self.rng = random.Random(seed)
        self.seq = 0
        self.last_seen: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                endpoint = self.endpoints[self.endpoint_index]
                with grpc.insecure_channel(endpoint) as channel:
                    stub = rpc_pb2_grpc.KVStub(channel)
                    while not self.stop_event.is_set():
                        if not self.one(stub):
                            break  # failed: a NEW operation on the next member
                self.endpoint_index = (self.endpoint_index + 1) % len(self.endpoints)
        except BaseException as exc:  # surfaced by the harness, never swallowed
            self.error = exc

    def next_value(self) -> str:
        self.seq += 1
        return f"c{self.client_id}-{self.seq}"

    def one(self, stub: rpc_pb2_grpc.KVStub) -> bool:
        """Run one random operation and record it; False if it failed."""
        key = self.rng.choice(self.keys)
        kind: OpName = self.rng.choice(("get", "get", "put", "cas"))
        op = Op(client=self.client_id, call=0, op=kind, key=key)
        bkey = key.encode()
        if kind == "put":
            op.value = self.next_value()
        elif kind == "cas":
            op.value = self.next_value()
            # Mostly the last value this client saw (likely to succeed), sometimes absent.
            op.expect = self.last_seen.get(key, "") if self.rng.random() < 0.8 else ""
        try:
            op.call = time.monotonic_ns()
            if kind == "get":
                resp = stub.Range(rpc_pb2.RangeRequest(key=bkey), timeout=self.rpc_timeout)
                op.ret = time.monotonic_ns()
                op.found = len(resp.kvs) > 0
                op.result = resp.kvs[0].value.decode() if op.found else ""
                self.last_seen[key] = op.result
            elif kind == "put":
                stub.Put(
                    rpc_pb2.PutRequest(key=bkey, value=op.value.encode()),
                    timeout=self.rpc_timeout,
                )
                op.ret = time.monotonic_ns()
                self.last_seen[key] = op.value
            else:
                if op.expect:
                    compare = rpc_pb2.Compare(
                        key=bkey,
                        target=rpc_pb2.Compare.VALUE,
                        result=rpc_pb2.Compare.EQUAL,
                        value=op.expect.encode(),
                    )
                else:  # "absent": version == 0
                    compare = rpc_pb2.Compare(
                        key=bkey,
                        target=rpc_pb2.Compare.VERSION,
                        result=rpc_pb2.Compare.EQUAL,
                        version=0,
                    )
                txn = rpc_pb2.TxnRequest(
                    compare=[compare],
                    success=[
                        rpc_pb2.RequestOp(
                            request_put=rpc_pb2.PutRequest(key=bkey, value=op.value.encode())
                        )
                    ],
                )
                tresp = stub.Txn(txn, timeout=self.rpc_timeout)
                op.ret = time.monotonic_ns()
                op.ok = bool(tresp.succeeded)
                if op.ok:
                    self.last_seen[key] = op.value
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            with self.history.lock:
                if code in DEFINITE_FAILURES:
                    self.history.stats.refused += 1
                elif kind == "get":
                    self.history.stats.reads_lost += 1
                else:
                    self.history.stats.timed_out += 1
            if code not in DEFINITE_FAILURES and kind != "get":
                op.ret = None
                self.history.add(op)
            return False
        with self.history.lock:
            self.history.stats.ok += 1
        self.history.add(op)
        return True


class Load:
    """N clients over the given endpoints, started and stopped together."""

    def __init__(
        self,
        endpoints: Sequence[str],
        history: History,
        *,
        clients: int = 6,
        keys: Sequence[str] = ("k0", "k1", "k2", "k3"),
        prefix: str = "/lin/",
        rpc_timeout: float = 1.0,
        seed: int = 0,
        client_offset: int = 0,
    ) -> None:
        self.stop_event = threading.Event()
        full_keys = [prefix + k for k in keys]
        self.clients = [
            Client(
                client_offset + i,
                endpoints,
                full_keys,
                history,
                self.stop_event,
                rpc_timeout=rpc_timeout,
                seed=seed * 1000 + i,
            )
            for i in range(clients)
        ]

    def start(self) -> None:
        for client in self.clients:
            client.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and join every client; re-raise the first error a client hit."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for client in self.clients:
            client.join(max(0.0, deadline - time.monotonic()))
        stuck = [c.name for c in self.clients if c.is_alive()]
        if stuck:
            raise RuntimeError(f"clients did not stop: {stuck}")
        for client in self.clients:
            if client.error is not None:
                raise client.error
