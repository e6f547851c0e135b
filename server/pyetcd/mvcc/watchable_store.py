"""The watchable store: the KV store plus watchers fed from each txn and from history.

Like etcd's ``watchableStore``, watchers live in one of three places:

- **synced**: caught up; each write txn's events go straight to them when the txn ends, one
  response per watcher per txn (so the events of a txn arrive together and in order);
- **unsynced**: their start revision is in the past; ``sync_step`` catches them up by reading
  the ``key`` bucket by revision in bounded chunks (never splitting a txn), then moves them to
  synced. A watcher whose next revision is below the compacted revision gets a
  ``compact_revision`` + ``canceled`` response instead and is dropped;
- **victims**: their stream's buffer was full; the undelivered batch is kept and retried by
  ``sync_step`` once the client has drained some responses, after which they catch up from
  history. Writers never wait for a slow watcher.

The server runs ``sync_step()`` from a task (etcd's sync loops run every 100 ms / 10 ms); it can
hook ``on_sync_needed`` to wake that task when there is work (a new past-revision watcher, a new
victim, or room freed in a stream that has victims). Each call does bounded work and returns
whether more is pending. Everything is synchronous: no asyncio here.

The store implements ``watcher.Watchable``, the interface its ``WatchStream``s call back through,
and imports ``watcher.py``, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from pyetcd.backend.contract import KEY, Backend
from pyetcd.mvcc.compaction import DEFAULT_COMPACTION_BATCH_LIMIT
from pyetcd.mvcc.errors import MVCCError
from pyetcd.mvcc.events import DELETE, PUT, Event
from pyetcd.mvcc.kvstore import KVStore, LeaseChangeCallback
from pyetcd.mvcc.revision import bytes_to_rev, is_tombstone, main_prefix, rev_to_bytes
from pyetcd.mvcc.watcher import DEFAULT_BUFFER_LIMIT, Watcher, WatcherGroup, WatchStream
from pyetcd.proto.mvccpb import kv_pb2

DEFAULT_SYNC_BATCH_LIMIT = 1000  # history entries read per sync step
MAX_WATCHERS_PER_SYNC = 512  # etcd maxWatchersPerSync

_KeyValue = kv_pb2.KeyValue


class WatchableStore(KVStore):
    """A ``KVStore`` that also serves watch streams."""

    def __init__(
        self,
        backend: Backend,
        *,
        compaction_batch_limit: int = DEFAULT_COMPACTION_BATCH_LIMIT,
        on_lease_change: LeaseChangeCallback | None = None,
        sync_batch_limit: int = DEFAULT_SYNC_BATCH_LIMIT,
        max_watchers_per_sync: int = MAX_WATCHERS_PER_SYNC,
        on_sync_needed: Callable[[], None] | None = None,
    ) -> None:
        self.synced = WatcherGroup()
        self.unsynced = WatcherGroup()
        self.victims: dict[Watcher, tuple[list[Event], int]] = {}
        self.stream_count = 0  # open watch streams (etcd_debugging_mvcc_watch_stream_total)
        self.sync_batch_limit = sync_batch_limit
        self.max_watchers_per_sync = max_watchers_per_sync
        self.on_sync_needed = on_sync_needed
        super().__init__(
            backend,
            compaction_batch_limit=compaction_batch_limit,
            on_lease_change=on_lease_change,
        )

    def new_stream(
        self, wakeup: Callable[[], None] | None = None, buffer_limit: int = DEFAULT_BUFFER_LIMIT
    ) -> WatchStream:
        """A stream for one client Watch RPC; ``wakeup`` is called when responses are queued."""
        return WatchStream(self, wakeup, buffer_limit)

    # ------------------------------------------------------------------------- metrics

    @property
    def watcher_count(self) -> int:
        return len(self.synced) + len(self.unsynced) + len(self.victims)

    @property
    def slow_watcher_count(self) -> int:
        return len(self.unsynced) + len(self.victims)

    @property
    def needs_sync(self) -> bool:
        return bool(self.unsynced.watchers or self.victims)

    # ------------------------------------------------- watcher lifecycle (``Watchable``)

    def add_watcher(self, w: Watcher, start_rev: int) -> None:
        """Register ``w`` from ``start_rev`` (etcd ``watchableStore.watch``)."""
        if start_rev > self._current_rev:
            w.min_rev = start_rev
            self.synced.add(w)
        else:
            w.min_rev = start_rev
            self.unsynced.add(w)
            self._request_sync()

    def cancel_watcher(self, w: Watcher) -> None:
        w.canceled = True
        if not self.synced.delete(w) and not self.unsynced.delete(w):
            self.victims.pop(w, None)

    def is_synced(self, w: Watcher) -> bool:
        return w in self.synced

    def stream_opened(self) -> None:
        self.stream_count += 1

    def stream_closed(self) -> None:
        self.stream_count -= 1

    def stream_drained(self) -> None:
        if self.victims:
            self._request_sync()  # victims of that stream may fit now

    def _request_sync(self) -> None:
        if self.on_sync_needed is not None:
            self.on_sync_needed()

    def _to_synced(self, w: Watcher) -> None:
        self.unsynced.delete(w)
        self.synced.add(w)
        w.stream.maybe_send_deferred_progress()

    # ----------------------------------------------------------------------- notify path

    def _on_txn_end(self, rev: int, events: list[Event]) -> None:
        synced = self.synced
        if not synced.watchers:
            return
        batches: dict[Watcher, list[Event]] = {}
        matching = synced.matching
        for ev in events:
            for w in matching(ev.key):
                if ev.mod_revision >= w.min_rev:  # a future start revision not reached yet
                    batch = batches.get(w)
                    if batch is None:
                        batches[w] = [ev]
                    else:
                        batch.append(ev)
        new_victims = False
        for w, evs in batches.items():
            # Always advance: a reopen() re-checks synced watchers from here (etcd does too).
            w.min_rev = rev + 1
            if not w.stream.send_events(w, evs, rev):
                # Slow consumer: keep the batch, continue from history after it is delivered.
                w.victim = True
                synced.delete(w)
                self.victims[w] = (evs, rev)
                new_victims = True
        if new_victims:
            self._request_sync()

    def resolve_prev_kv(self, ev: Event) -> None:
        """Attach the key's KeyValue at ``mod_revision - 1`` (etcd reads it when sending)."""
        if ev.is_create or ev.mod_revision <= 1:
            ev.set_prev_kv(None)
            return
        try:
            r = self.range(ev.key, rev=ev.mod_revision - 1)
        except MVCCError:
            ev.set_prev_kv(None)  # compacted meanwhile: etcd sends the event without it
            return
        ev.set_prev_kv(r.kvs[0] if r.kvs else None)

    # ------------------------------------------------------------------------ sync path

    def sync_step(self) -> bool:
        """Retry victims, then catch unsynced watchers up by one chunk; True if work remains."""
        if self.victims:
            self._retry_victims()
        if self.unsynced.watchers:
            self._sync_unsynced()
        return self.needs_sync

    def sync_until_idle(self, max_steps: int = 1_000_000) -> None:
        """Run ``sync_step`` until nothing is left that can progress (tools and tests).

        Victims whose streams stay full cannot progress; this stops once a step changes nothing.
        """
        for _ in range(max_steps):
            before = (len(self.unsynced), len(self.victims), self._progress_marker())
            if not self.sync_step():
                return
            if (len(self.unsynced), len(self.victims), self._progress_marker()) == before:
                return

    def _progress_marker(self) -> int:
        return sum(w.min_rev for w in self.unsynced)

    def _retry_victims(self) -> None:
        cur = self._current_rev
        for w, (evs, rev) in list(self.victims.items()):
            if not w.stream.send_events(w, evs, rev):
                continue
            del self.victims[w]
            w.victim = False
            if w.min_rev <= cur:
                self.unsynced.add(w)
            else:
                self.synced.add(w)
                w.stream.maybe_send_deferred_progress()

    def _sync_unsynced(self) -> None:
        cur, compact = self._current_rev, self._compact_rev
        chosen = WatcherGroup()
        for w in list(islice(self.unsynced, self.max_watchers_per_sync)):
            if w.min_rev > cur:
                # Only after reopen(): the watcher is ahead of the restored store.
                w.restore = False
                self._to_synced(w)
            elif w.min_rev < compact:
                self.unsynced.delete(w)
                w.compacted = True
                w.stream.send_compacted(w, compact)
            else:
                chosen.add(w)
        if not chosen.watchers:
            return
        min_rev = min(w.min_rev for w in chosen)
        upto, entries = self._read_history(min_rev, cur)

        events: list[Event] = []
        for k, v in entries:
            kv = _KeyValue.FromString(v)
            if not chosen.contains_key(kv.key):
                continue
            if is_tombstone(k):
                main = bytes_to_rev(k)[0]
                raw = _KeyValue(key=kv.key, mod_revision=main).SerializeToString()
                events.append(Event(DELETE, kv.key, raw, main, 0))
            else:
                events.append(Event(PUT, kv.key, v, kv.mod_revision, kv.create_revision))

        batches: dict[Watcher, list[Event]] = {}
        for ev in events:
            for w in chosen.matching(ev.key):
                if ev.mod_revision >= w.min_rev:
                    batches.setdefault(w, []).append(ev)

        for w in chosen:
            w.min_rev = max(w.min_rev, upto + 1)
            evs = batches.get(w)
            if evs and not w.stream.send_events(w, evs, cur):
                w.victim = True
                self.unsynced.delete(w)
                self.victims[w] = (evs, cur)
                continue
            if w.min_rev > cur:
                self._to_synced(w)

    def _read_history(self, min_rev: int, cur: int) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Key-bucket entries from ``min_rev`` on, at most about one batch, whole txns only.

        Returns the last revision fully read and the entries.
        """
        b = self.backend
        limit = self.sync_batch_limit
        entries = list(b.range(KEY, rev_to_bytes(min_rev), main_prefix(cur + 1), limit))
        if len(entries) < limit:
            return cur, entries
        last_main = bytes_to_rev(entries[-1][0])[0]
        cut = len(entries)
        while cut and bytes_to_rev(entries[cut - 1][0])[0] == last_main:
            cut -= 1
        if cut:
            return last_main - 1, entries[:cut]
        # One txn larger than the batch: deliver it whole rather than split it.
        return last_main, list(b.range(KEY, rev_to_bytes(last_main), main_prefix(last_main + 1)))

    # -------------------------------------------------------------------------- restore

    def reopen(self, backend: Backend) -> None:
        """Switch backend; synced watchers re-check against the restored history."""
        super().reopen(backend)
        for w in list(self.synced):
            w.restore = True
            self.synced.delete(w)
            self.unsynced.add(w)
        if self.unsynced.watchers:
            self._request_sync()
