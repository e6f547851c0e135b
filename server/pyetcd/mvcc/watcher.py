"""Watchers, watcher groups, watch responses and the per-client ``WatchStream``.

A ``WatchStream`` is the mvcc side of one gRPC Watch stream: it owns the stream's watchers and a
bounded queue of ``WatchResponse`` in the order the client must see them (created, events,
progress, canceled, compacted). Nothing here is asyncio: the server pulls with ``poll()`` and
hooks the ``wakeup`` callback (called when the queue becomes non-empty) to an ``asyncio.Event``.

Event responses count against ``buffer_limit`` (etcd's channel of 128); a watcher whose
response does not fit becomes a *victim* and catches up later (see ``watchable_store.py``), so a
slow client never blocks a writer. Control responses (created, canceled, compacted, progress
requested by the client) always go in, so that each request gets its answer in order.

A stream sees its store only through ``Watchable`` (etcd's ``watchable`` interface), which the
``WatchableStore`` implements; this module does not import the store, so the store can import
it. The store in turn drives a stream through its public ``send_*`` methods.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from pyetcd.mvcc.errors import ErrCompacted, ErrEmptyWatcherRange, ErrWatcherDuplicateID, MVCCError
from pyetcd.mvcc.events import DELETE, PUT, Event, encode_bytes_field, encode_varint
from pyetcd.proto.etcdserverpb import rpc_pb2

AUTO_WATCH_ID = 0  # etcd AutoWatchID: the server picks the id
INVALID_WATCH_ID = -1  # etcd InvalidWatchID: failed creates and stream-wide progress
DEFAULT_BUFFER_LIMIT = 128  # etcd chanBufLen

FILTER_NOPUT = 0  # etcdserverpb.WatchCreateRequest.NOPUT
FILTER_NODELETE = 1  # etcdserverpb.WatchCreateRequest.NODELETE


class Watcher:
    """One watch: key range, next revision to deliver (``min_rev``), filters and options."""

    __slots__ = (
        "canceled",
        "compacted",
        "end",
        "fragment",
        "id",
        "key",
        "min_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "restore",
        "sent",
        "stream",
        "victim",
    )

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        min_rev: int,
        *,
        no_put: bool = False,
        no_delete: bool = False,
        prev_kv: bool = False,
        progress_notify: bool = False,
        fragment: bool = False,
    ) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.end = end  # None: the single key; b"": every key >= key; else [key, end)
        self.min_rev = min_rev
        self.no_put = no_put
        self.no_delete = no_delete
        self.prev_kv = prev_kv
        self.progress_notify = progress_notify
        self.fragment = fragment
        self.victim = False
        self.compacted = False
        self.canceled = False
        self.restore = False  # moved to unsynced by a store reopen; may be ahead of the store
        self.sent = False  # events sent since the last progress tick

    def __repr__(self) -> str:
        return f"Watcher(id={self.id}, key={self.key!r}, end={self.end!r}, min_rev={self.min_rev})"

    def contains(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return key >= self.key and (not end or key < end)

    def filter(self, events: list[Event]) -> list[Event]:
        if self.no_put:
            events = [e for e in events if e.type != PUT]
        if self.no_delete:
            events = [e for e in events if e.type != DELETE]
        return events


class Watchable(Protocol):
    """What a ``WatchStream`` needs from its store (etcd's ``watchable`` interface)."""

    @property
    def current_revision(self) -> int: ...

    def add_watcher(self, w: Watcher, start_rev: int) -> None:
        """Start delivering to ``w`` from ``start_rev``: synced if in the future, else unsynced."""
        ...

    def cancel_watcher(self, w: Watcher) -> None:
        """Stop delivering to ``w``, wherever it is (synced, unsynced or victim)."""
        ...

    def is_synced(self, w: Watcher) -> bool:
        """``w`` is caught up: it gets each txn's events as the txn ends."""
        ...

    def stream_drained(self) -> None:
        """The client took responses off a stream: victims held back by a full buffer may fit."""
        ...

    def stream_opened(self) -> None:
        """A stream was created: it counts as open until ``stream_closed``."""
        ...

    def stream_closed(self) -> None:
        """A stream was closed (called once per stream)."""
        ...

    def resolve_prev_kv(self, ev: Event) -> None:
        """Attach ``ev``'s previous KeyValue, read at ``mod_revision - 1``."""
        ...


class WatcherGroup:
    """A set of watchers, indexed by key for single-key watches (etcd ``watcherGroup``).

    Dicts rather than sets keep the order watchers were added in, so that the responses of one
    txn are queued in a deterministic order.
    """

    def __init__(self) -> None:
        self.watchers: dict[Watcher, None] = {}
        self._single: dict[bytes, dict[Watcher, None]] = {}
        self._ranges: dict[Watcher, None] = {}

    def __len__(self) -> int:
        return len(self.watchers)

    def __contains__(self, w: Watcher) -> bool:
        return w in self.watchers

    def __iter__(self) -> Iterator[Watcher]:
        return iter(self.watchers)

    def add(self, w: Watcher) -> None:
        self.watchers[w] = None
        if w.end is None:
            self._single.setdefault(w.key, {})[w] = None
        else:
            self._ranges[w] = None

    def delete(self, w: Watcher) -> bool:
        if w not in self.watchers:
            return False
        del self.watchers[w]
        if w.end is None:
            ws = self._single.get(w.key)
            if ws is not None:
                ws.pop(w, None)
                if not ws:
                    del self._single[w.key]
        else:
            self._ranges.pop(w, None)
        return True

    def matching(self, key: bytes) -> Iterator[Watcher]:
        """Watchers whose range holds ``key``."""
        single = self._single.get(key)
        if single:
            yield from single
        for w in self._ranges:
            if w.contains(key):
                yield w

    def contains_key(self, key: bytes) -> bool:
        if key in self._single:
            return True
        return any(w.contains(key) for w in self._ranges)


class WatchResponse:
    """One response of a Watch stream; ``revision`` is the header revision."""

    __slots__ = (
        "cancel_reason",
        "canceled",
        "compact_revision",
        "counted",
        "created",
        "events",
        "fragment",
        "prev_kv",
        "revision",
        "watch_id",
    )

    def __init__(
        self,
        watch_id: int,
        revision: int,
        events: list[Event] | None = None,
        *,
        created: bool = False,
        canceled: bool = False,
        compact_revision: int = 0,
        cancel_reason: str = "",
        prev_kv: bool = False,
        fragment: bool = False,
    ) -> None:
        self.watch_id = watch_id
        self.revision = revision
        self.events: list[Event] = events if events is not None else []
        self.created = created
        self.canceled = canceled
        self.compact_revision = compact_revision
        self.cancel_reason = cancel_reason
        self.prev_kv = prev_kv  # include each event's prev_kv (the watcher asked for it)
        self.fragment = fragment  # the watcher accepts fragmented responses (server splits)
        self.counted = False  # counts against the stream's buffer limit while queued

    def __repr__(self) -> str:
        flags = [
            name for name, on in (("created", self.created), ("canceled", self.canceled)) if on
        ]
        return (
            f"WatchResponse(id={self.watch_id}, rev={self.revision}, events={self.events!r}"
            f"{', compact=' + str(self.compact_revision) if self.compact_revision else ''}"
            f"{', ' + ','.join(flags) if flags else ''})"
        )

    @property
    def is_progress(self) -> bool:
        return not (self.events or self.created or self.canceled or self.compact_revision)

    def to_proto(self, header: rpc_pb2.ResponseHeader | None = None) -> rpc_pb2.WatchResponse:
        resp = rpc_pb2.WatchResponse(
            watch_id=self.watch_id,
            created=self.created,
            canceled=self.canceled,
            compact_revision=self.compact_revision,
            cancel_reason=self.cancel_reason,
        )
        if header is not None:
            resp.header.CopyFrom(header)
        for ev in self.events:
            resp.events.append(ev.to_proto(self.prev_kv))
        return resp

    def encode(self, header: bytes | None = None) -> bytes:
        """``etcdserverpb.WatchResponse`` wire bytes built from the stored KeyValue bytes.

        ``header``: the serialized ``ResponseHeader`` (the server fills cluster/member/term and
        ``self.revision``). Same bytes as ``to_proto(...).SerializeToString()``.
        """
        parts: list[bytes] = []
        if header is not None:
            parts.append(encode_bytes_field(1, header))
        if self.watch_id:
            parts.append(b"\x10" + encode_varint(self.watch_id))
        if self.created:
            parts.append(b"\x18\x01")
        if self.canceled:
            parts.append(b"\x20\x01")
        if self.compact_revision:
            parts.append(b"\x28" + encode_varint(self.compact_revision))
        if self.cancel_reason:
            parts.append(encode_bytes_field(6, self.cancel_reason.encode()))
        prev = self.prev_kv
        for ev in self.events:
            parts.append(encode_bytes_field(11, ev.encode(prev)))
        return b"".join(parts)


def normalize_range(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    """Wire ``(key, range_end)`` to a watcher's ``(key, end)`` like etcd's ``v3rpc/watch.go``."""
    if not key:
        key = b"\x00"  # the smallest key
    if not range_end:
        return key, None
    if range_end == b"\x00":
        return key, b""  # every key >= key
    return key, range_end


class WatchStream:
    """The watchers and pending responses of one client stream (etcd ``watchStream``)."""

    def __init__(
        self,
        store: Watchable,
        wakeup: Callable[[], None] | None = None,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        self._store = store
        self._wakeup = wakeup
        self.buffer_limit = buffer_limit
        self._queue: deque[WatchResponse] = deque()
        self._events_queued = 0  # event responses in the queue (what the limit counts)
        self.watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._deferred_progress = False
        self.closed = False
        store.stream_opened()

    # -------------------------------------------------------------------- client requests

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        start_revision: int = 0,
        watch_id: int = AUTO_WATCH_ID,
        *,
        filters: Iterable[int] = (),
        prev_kv: bool = False,
        progress_notify: bool = False,
        fragment: bool = False,
    ) -> int:
        """Handle a WatchCreateRequest (wire forms of key/range_end); returns the id or -1.

        Queues the ``created`` response (``canceled`` with the reason when creation fails).
        ``start_revision`` 0 means "from the next revision".
        """
        store = self._store
        wsrev = store.current_revision
        try:
            w = self._new_watcher(
                key,
                range_end,
                start_revision,
                watch_id,
                filters=filters,
                prev_kv=prev_kv,
                progress_notify=progress_notify,
                fragment=fragment,
            )
        except MVCCError as err:
            self.reject(str(err))
            return INVALID_WATCH_ID
        self._push(WatchResponse(w.id, wsrev, created=True))
        store.add_watcher(w, start_revision if start_revision > 0 else wsrev + 1)
        return w.id

    def _new_watcher(
        self,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        watch_id: int,
        *,
        filters: Iterable[int],
        prev_kv: bool,
        progress_notify: bool,
        fragment: bool,
    ) -> Watcher:
        if start_revision < 0:
            raise ErrCompacted()
        key, end = normalize_range(key, range_end)
        if end and key >= end:
            raise ErrEmptyWatcherRange()
        if self.closed:
            raise ErrEmptyWatcherRange()  # etcd returns this for a closed stream, too
        if watch_id == AUTO_WATCH_ID:
            while self._next_id in self.watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self.watchers:
            raise ErrWatcherDuplicateID()
        fs = set(filters)
        w = Watcher(
            self,
            watch_id,
            key,
            end,
            0,
            no_put=FILTER_NOPUT in fs,
            no_delete=FILTER_NODELETE in fs,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            fragment=fragment,
        )
        self.watchers[watch_id] = w
        return w

    def reject(self, reason: str) -> None:
        """Queue a failed-create response (e.g. ``etcdserver: permission denied``)."""
        self._push(
            WatchResponse(
                INVALID_WATCH_ID,
                self._store.current_revision,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    def cancel(self, watch_id: int) -> bool:
        """Handle a WatchCancelRequest: queue ``canceled``; False (no response) if unknown."""
        w = self.watchers.pop(watch_id, None)
        if w is None:
            return False
        self._store.cancel_watcher(w)
        self._push(WatchResponse(watch_id, self._store.current_revision, canceled=True))
        self.maybe_send_deferred_progress()  # the canceled one may have been the last unsynced
        return True

    def request_progress(self) -> None:
        """Handle a WatchProgressRequest: a ``watch_id=-1`` response at the current revision,
        once every watcher of the stream is synced (deferred until then, like etcd 3.5.8+).

        A stream without watchers is answered at once (etcd 3.5.0-3.5.7 always answered; later
        3.5 sends nothing then, which leaves a client waiting for nothing).
        """
        if self._all_synced():
            self._push(WatchResponse(INVALID_WATCH_ID, self._store.current_revision))
        else:
            self._deferred_progress = True

    def progress_tick(self) -> None:
        """The server's progress-notify timer fired: an empty response for each synced
        ``progress_notify`` watcher that sent no events since the previous tick."""
        is_synced = self._store.is_synced
        rev = self._store.current_revision
        for w in self.watchers.values():
            if not w.progress_notify:
                continue
            if w.sent:
                w.sent = False
            elif is_synced(w) and self._events_queued < self.buffer_limit:
                self._push(WatchResponse(w.id, rev), counts=True)

    def close(self) -> None:
        """The client went away: drop every watcher; nothing more is queued."""
        if not self.closed:
            self._store.stream_closed()
        for w in self.watchers.values():
            self._store.cancel_watcher(w)
        self.watchers.clear()
        self._queue.clear()
        self._events_queued = 0
        self.closed = True

    # ---------------------------------------------------------------------- server side

    @property
    def rev(self) -> int:
        return self._store.current_revision

    def pending(self) -> int:
        return len(self._queue)

    def poll(self, max_responses: int = 0) -> list[WatchResponse]:
        """Take the queued responses (all, or at most ``max_responses``), oldest first."""
        q = self._queue
        n = len(q) if max_responses <= 0 else min(max_responses, len(q))
        out = [q.popleft() for _ in range(n)]
        self._events_queued -= sum(1 for r in out if r.counted)
        if out:
            self._store.stream_drained()
        return out

    def _all_synced(self) -> bool:
        is_synced = self._store.is_synced
        return all(is_synced(w) for w in self.watchers.values())

    def _push(self, resp: WatchResponse, counts: bool = False) -> None:
        if self.closed:
            return
        was_empty = not self._queue
        self._queue.append(resp)
        if counts:
            resp.counted = True
            self._events_queued += 1
        if was_empty and self._wakeup is not None:
            self._wakeup()

    # ---------------------------------------------------------------- used by the store

    def send_events(self, w: Watcher, events: list[Event], rev: int) -> bool:
        """Queue ``events`` for ``w`` (after its filters); False if the buffer is full."""
        evs = w.filter(events)
        if not evs:
            return True  # everything filtered out: nothing to send, nothing lost
        if self._events_queued >= self.buffer_limit:
            return False
        if w.prev_kv:
            resolve = self._store.resolve_prev_kv
            for ev in evs:
                if not ev.prev_resolved:
                    resolve(ev)
        w.sent = True
        self._push(
            WatchResponse(w.id, rev, evs, prev_kv=w.prev_kv, fragment=w.fragment), counts=True
        )
        return True

    def send_compacted(self, w: Watcher, compact_rev: int) -> None:
        """``w`` needs revisions that compaction removed: queue ``compact_revision`` +
        ``canceled``; the store has already dropped it."""
        self._push(
            # etcd leaves the header revision of this response at 0.
            WatchResponse(w.id, 0, compact_revision=compact_rev, canceled=True)
        )

    def maybe_send_deferred_progress(self) -> None:
        """A watcher of this stream became synced or went away: answer a deferred progress
        request once every remaining watcher is synced."""
        if self._deferred_progress and self._all_synced():
            self._deferred_progress = False
            self._push(WatchResponse(INVALID_WATCH_ID, self._store.current_revision))
