"""Point-in-time restore: a backup's chain cut at a target revision or time, as one event log.

A restore to a point after a full backup replays the chain's events up to that point onto the
snapshot (``pyetcdutl snapshot restore --replay``). This module decides which segments are
needed and where to cut, and refuses a target the chain cannot reach:

- a **revision** ``R`` restores exactly the key space at ``R``: every event with a revision up
  to ``R``. It must lie between the backup's revision and the chain's last revision.
- a **time** ``T`` restores the last revision the recorder had received by ``T`` (each
  response's events follow a time mark of when they arrived, so a write is placed at most one
  watch latency late). ``T`` must lie inside the time the chain covers, and outside a blind
  spell: there a write's time is known only as "when watching resumed".

:func:`select` is pure (a chain's listing and the target in, the segments to read out);
:class:`Cutter` is pure (records in, the records to keep out); :func:`write_chain_log` does the
I/O, one segment in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from etcd_operator.backup.errors import BackupError
from etcd_operator.backup.eventlog import Record, read_log, write_records
from etcd_operator.backup.segments import Coverage, Segment, coverage, fetch_segment, list_chain
from etcd_operator.backup.store import S3Client, StoreSettings


class PointInTimeError(BackupError):
    """The chain cannot restore to the target; the message says why and what can be done."""


@dataclass(frozen=True)
class Target:
    """A revision, or a time in unix milliseconds: exactly one."""

    revision: int | None = None
    unix_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.revision is None) == (self.unix_ms is None):
            raise ValueError("a point in time is a revision or a time, exactly one")

    def __str__(self) -> str:
        if self.revision is not None:
            return f"revision {self.revision}"
        assert self.unix_ms is not None
        return _when(self.unix_ms)


@dataclass(frozen=True)
class Reached:
    """Where a cut log ends: its last revision and the time mark before it, and its size."""

    revision: int
    unix_ms: int | None
    events: int


def _when(unix_ms: int) -> str:
    stamp = datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def select(cov: Coverage, target: Target, where: str) -> tuple[Segment, ...]:
    """The segments of ``cov`` to read for ``target``; :class:`PointInTimeError` if the chain
    does not reach it. ``where`` names the backup in messages."""
    broken = f" (the chain breaks there: {cov.gap})" if cov.gap else ""
    if target.revision is not None:
        rev = target.revision
        if rev < cov.base:
            raise PointInTimeError(
                f"revision {rev} is before {where} (revision {cov.base}): restore from an "
                "older backup"
            )
        if rev > cov.upto:
            raise PointInTimeError(
                f"the continuous backup of {where} reaches revision {cov.upto}, not {rev}{broken}"
            )
        return tuple(s for s in cov.segments if s.after < rev)
    assert target.unix_ms is not None
    at = target.unix_ms
    if not cov.segments:
        raise PointInTimeError(f"{where} has no continuous backup to restore a time from")
    first, end = cov.segments[0], cov.segments[-1].end_ms
    if at < first.start_ms:
        raise PointInTimeError(
            f"{target} is before the continuous backup of {where} began at "
            f"{_when(first.start_ms)}: restore from an older backup, or to a revision"
        )
    if at > end:
        raise PointInTimeError(
            f"the continuous backup of {where} reaches {_when(end)}, not {target}{broken}"
        )
    for after, before in cov.blind_spells:
        if after < at <= before:
            raise PointInTimeError(
                f"{target} falls where no recorder watched ({_when(after)} to {_when(before)}): "
                "the time of a write there is not known; pick a time outside it, or a revision"
            )
    # A segment's events arrived within its (start, end]: later ones cannot be before ``at``.
    return tuple(s for s in cov.segments if s.start_ms < at)


class Cutter:
    """Keeps the records of a log up to the target: events in order until the first one past
    it, with the leases and time marks before them; nothing after."""

    def __init__(self, target: Target, base: int) -> None:
        self.target = target
        self.done = False
        self.reached = Reached(base, None, 0)
        self._mark: int | None = None

    def _past(self, record: Record) -> bool:
        if self.target.revision is not None:
            assert record.event is not None
            return record.event.kv.mod_revision > self.target.revision
        assert self.target.unix_ms is not None
        return self._mark is None or self._mark > self.target.unix_ms

    def feed(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if self.done:
                return
            if record.unix_ms is not None:
                self._mark = record.unix_ms
            elif record.event is not None:
                if self._past(record):
                    self.done = True
                    return
                self.reached = Reached(
                    record.event.kv.mod_revision, self._mark, self.reached.events + 1
                )
            yield record


async def write_chain_log(
    s3: S3Client,
    store: StoreSettings,
    backup_key: str,
    target: Target,
    out: Path,
    *,
    base: int | None,
    encryption_key: bytes | None,
) -> Reached:
    """Write the events of ``backup_key``'s chain up to ``target`` to ``out`` (the log
    ``pyetcdutl snapshot restore --replay`` reads); ``base`` is the backup's revision (the
    chain's first segment says it when unknown). Raises PointInTimeError or a BackupError."""
    where = store.location(backup_key)
    listed = await list_chain(s3, store, backup_key)
    if not listed:
        raise PointInTimeError(f"{where} has no continuous backup beside it")
    if base is None:
        base = min(s.after for s in listed)
    cov = coverage(base, listed)
    needed = select(cov, target, where)
    cutter = Cutter(target, base)
    with out.open("wb") as file:
        for seg in needed:
            data = await fetch_segment(s3, store, backup_key, seg, encryption_key)
            name = store.location(seg.key(backup_key))
            file.write(write_records(cutter.feed(read_log(data, name))))
            if cutter.done:
                break
    return cutter.reached
