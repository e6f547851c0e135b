"""The recorder of a continuous backup: one watch of the whole key space, cut into segments.

It extends the chain of one full backup (``backup.segments``): it lists what the chain holds,
watches from the revision after it (history included, so an interruption loses nothing while
etcd still has those revisions), and uploads what it received every ``interval`` seconds:

- a segment with the events received since the last one, each response's events behind a
  time mark of when it arrived (``backup.eventlog``); a segment is also cut early at
  ``MAX_SEGMENT_BYTES``;
- while nothing is written, an empty segment every ``idle_proof`` seconds, which proves that
  nothing was written until its end (the watch asks etcd for a progress report each interval;
  a report names the member's revision, and only one that equals the chain's end proves it);
- the TTL of each lease an event attaches a key to, before that event (lease grants are not
  watch events); a lease gone by then is recorded with ``FALLBACK_LEASE_TTL``.

A segment's time range starts where the previous one ended while the recorder watches live; the
first segment after a (re)start starts when watching resumed, so the time nobody watched is a
blind spell of the chain (``Coverage.blind_spells``). :class:`ChainBrokenError` says the chain
cannot go on (etcd compacted the next revision; or the listing has a hole): a new full backup
must start a new chain. Any other failure (etcd, S3) is raised as it is for the caller to retry;
nothing received but not uploaded is lost by that, since the next run watches from the chain's
end again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pyetcd.client import WatchBatch, WatchCompactedError
from pyetcd.proto.mvccpb import kv_pb2

from etcd_operator.api.backup import Compression
from etcd_operator.backup.eventlog import EventLog
from etcd_operator.backup.segments import (
    MAX_SEGMENT_BYTES,
    Coverage,
    Segment,
    StoredSegment,
    coverage,
    list_chain,
    upload_segment,
)
from etcd_operator.backup.store import S3Client, StoreSettings

log = logging.getLogger(__name__)

FALLBACK_LEASE_TTL = 60
DEFAULT_IDLE_PROOF = 300.0


class ChainBrokenError(Exception):
    """The chain cannot be extended; a new full backup must start a new one."""


class HistoryClient(Protocol):
    """The etcd calls of a recorder (``pyetcd.client.EtcdClient``)."""

    def watch_history(
        self, start_revision: int, progress_every: float | None = None
    ) -> AsyncGenerator[WatchBatch, None]: ...

    async def lease_granted_ttl(self, lease_id: int) -> int | None: ...


@dataclass(frozen=True)
class Chain:
    """The chain a recorder extends: the full backup's object key and revision, and how its
    segments are encoded."""

    backup_key: str
    base: int
    compression: Compression = Compression.ZSTD
    encryption_key: bytes | None = field(default=None, repr=False)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Recorder:
    """Extends one chain until cancelled or broken; ``on_segment`` hears of every upload."""

    def __init__(
        self,
        s3: S3Client,
        store: StoreSettings,
        chain: Chain,
        etcd: HistoryClient,
        *,
        interval: float,
        idle_proof: float = DEFAULT_IDLE_PROOF,
        on_segment: Callable[[StoredSegment, Coverage], None] | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.s3, self.store, self.chain, self.etcd = s3, store, chain, etcd
        self.interval = interval
        self.idle_proof = idle_proof
        self.on_segment = on_segment
        self.clock_ms = clock_ms
        self.coverage = Coverage(chain.base, ())
        self._announced: set[int] = set()

    async def load(self) -> Coverage:
        """What the chain holds in the store; :class:`ChainBrokenError` if it has a hole."""
        found = await list_chain(self.s3, self.store, self.chain.backup_key)
        self.coverage = coverage(self.chain.base, found)
        if self.coverage.gap is not None:
            raise ChainBrokenError(
                f"the continuous backup of {self.store.location(self.chain.backup_key)} is "
                f"broken after revision {self.coverage.upto}: {self.coverage.gap}"
            )
        return self.coverage

    async def run(self) -> None:
        """Watch and upload until cancelled; raises ChainBrokenError or the failure."""
        await self.load()
        interval_ms = int(self.interval * 1000)
        start_ms = self.clock_ms()  # the time the next segment starts at
        upto = self.coverage.upto
        queue: asyncio.Queue[tuple[int, WatchBatch] | BaseException] = asyncio.Queue()
        watcher = asyncio.create_task(self._watch(upto + 1, queue))
        events = EventLog()
        seen_ms = start_ms  # when the last response arrived
        proven = -1  # the member's revision the last response named
        last_upload_ms = self.coverage.end_ms or start_ms
        next_cut = start_ms + interval_ms
        getter: asyncio.Future[tuple[int, WatchBatch] | BaseException] | None = None
        try:
            while True:
                timeout = max(0.0, (next_cut - self.clock_ms()) / 1000)
                # Not wait_for: on Python 3.11 it loses a cancellation that arrives as the
                # queue answers, and this loop would then never end.
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter], timeout=timeout)
                if getter.done():
                    item = getter.result()
                    getter = None
                    if isinstance(item, BaseException):
                        raise item
                    seen_ms, batch = item
                    proven = batch.revision
                    if batch.events:
                        events.mark_time(seen_ms)
                        for event in batch.events:
                            await self._announce(events, event)
                            events.add_event(event)
                    if events.size < MAX_SEGMENT_BYTES and self.clock_ms() < next_cut:
                        continue
                if self.clock_ms() < next_cut and events.size < MAX_SEGMENT_BYTES:
                    continue
                next_cut = self.clock_ms() + interval_ms
                end_ms = max(seen_ms, start_ms)
                if events.events:
                    segment = Segment(upto, events.last_revision, start_ms, end_ms)
                elif proven == upto and seen_ms - last_upload_ms >= self.idle_proof * 1000:
                    segment = Segment(upto, upto, start_ms, end_ms)
                else:
                    continue  # nothing to say yet: the next segment starts where this began
                await self._upload(segment, events)
                upto, start_ms, last_upload_ms = segment.upto, segment.end_ms, segment.end_ms
                events = EventLog()
        finally:
            if getter is not None:
                getter.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _upload(self, segment: Segment, log_: EventLog) -> StoredSegment:
        stored = await upload_segment(
            self.s3,
            self.store,
            self.chain.backup_key,
            segment,
            log_.to_bytes(),
            events=log_.events,
            base=self.chain.base,
            compression=self.chain.compression,
            encryption_key=self.chain.encryption_key,
        )
        self.coverage = Coverage(self.chain.base, (*self.coverage.segments, segment))
        if self.on_segment is not None:
            self.on_segment(stored, self.coverage)
        return stored

    async def _announce(self, log_: EventLog, event: kv_pb2.Event) -> None:
        lease = event.kv.lease
        if event.type != kv_pb2.Event.PUT or not lease or lease in self._announced:
            return
        ttl = await self.etcd.lease_granted_ttl(lease)
        log_.add_lease(lease, ttl if ttl is not None else FALLBACK_LEASE_TTL)
        self._announced.add(lease)

    async def _watch(
        self, start: int, queue: asyncio.Queue[tuple[int, WatchBatch] | BaseException]
    ) -> None:
        # Stamped here, on arrival: the loop that uploads may be busy with an upload, and a time
        # target must not see a write later than it arrived.
        history = self.etcd.watch_history(start, progress_every=self.interval)
        try:
            async for batch in history:
                queue.put_nowait((self.clock_ms(), batch))
            queue.put_nowait(ChainBrokenError("the watch ended"))
        except WatchCompactedError as err:
            queue.put_nowait(
                ChainBrokenError(
                    f"etcd compacted revision {start} before the continuous backup recorded "
                    f"it (compaction is at {err.compact_revision}): revisions "
                    f"{start}..{err.compact_revision - 1} are lost to the chain"
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            queue.put_nowait(err)
        finally:
            await history.aclose()
