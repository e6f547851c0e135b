"""The values `pyetcdutl analyze` reports: plain frozen dataclasses, no logic.

``Analysis`` is what the pure core (``core.analyze``) computes from the ``key``, ``lease`` and
``meta`` buckets; ``Report`` adds where it came from (``Source``) and the file's sizes
(``DbFile``), which only the reader knows. ``render`` turns a ``Report`` into text or JSON.

Vocabulary (etcd's): a *revision* is one entry of the ``key`` bucket (a put, or a deletion's
tombstone); *stored bytes* are the entry's size in the bucket (the 17- or 18-byte revision key
plus the marshalled ``mvccpb.KeyValue``); *live* keys are those whose latest entry is a put, and
their *live bytes* are key + value of that put.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AgeBand",
    "Analysis",
    "DbFile",
    "KeyInfo",
    "LeaseInfo",
    "MissingLease",
    "Options",
    "OtherPrefixes",
    "PrefixUsage",
    "Report",
    "Source",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class Options:
    """How to group and how much to list."""

    separator: bytes = b"/"
    depth: int = 2  # prefixes end at the depth-th separator (a leading one does not count)
    top: int = 20  # entries in each top list (prefixes, biggest keys, hot keys)

    def __post_init__(self) -> None:
        if not self.separator:
            raise ValueError("the separator must not be empty")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.top < 1:
            raise ValueError(f"top must be at least 1, got {self.top}")


@dataclass(frozen=True, slots=True)
class Usage:
    """Keys and bytes of a group of keys."""

    live_keys: int = 0
    live_bytes: int = 0
    revisions: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PrefixUsage:
    prefix: bytes
    usage: Usage


@dataclass(frozen=True, slots=True)
class OtherPrefixes:
    """The prefixes beyond the top list, summed, so that the listed rows add up to the totals."""

    prefixes: int
    usage: Usage


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key: its latest entry (the live put, or the tombstone that deleted it) and history.

    For a deleted key the put fields are 0 and ``mod_revision`` is the deletion's revision.
    """

    key: bytes
    live: bool
    value_size: int
    create_revision: int
    mod_revision: int
    version: int
    lease: int
    revisions: int  # entries of this key in the bucket: history and tombstones included
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One entry of the ``lease`` bucket and the live keys attached to it."""

    id: int
    ttl: int
    remaining_ttl: int  # only set by servers that checkpoint leases
    live_keys: int
    live_bytes: int


@dataclass(frozen=True, slots=True)
class MissingLease:
    """A lease ID named by live keys (``KeyValue.lease``) but absent from the ``lease`` bucket."""

    id: int
    live_keys: int
    keys: tuple[bytes, ...]  # the smallest ``top`` of them


@dataclass(frozen=True, slots=True)
class AgeBand:
    """Live keys last modified between ``min_ago`` and ``max_ago`` revisions before the current
    revision (ages are in revisions: etcd stores no wall-clock time)."""

    min_ago: int
    max_ago: int
    live_keys: int
    live_bytes: int


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything computed from the buckets."""

    options: Options
    revision: int  # the current revision: the highest in `key`, at least the scheduled compaction
    compact_revision: int  # meta/finishedCompactRev (0: never compacted)
    scheduled_compact_revision: int  # meta/scheduledCompactRev; > compact_revision: unfinished
    totals: Usage
    tombstones: int
    prefixes: tuple[PrefixUsage, ...]  # by stored bytes, largest first
    other: OtherPrefixes
    biggest_keys: tuple[KeyInfo, ...]  # live keys by value size, largest first
    hot_keys: tuple[KeyInfo, ...]  # keys with 2 or more stored revisions, most first
    leases: tuple[LeaseInfo, ...]  # every lease: most live keys first, then by ID
    missing_leases: tuple[MissingLease, ...]  # most keys first, then by ID
    ages: tuple[AgeBand, ...]  # contiguous decades from 0 revisions ago to the oldest live key

    @property
    def leases_without_keys(self) -> tuple[LeaseInfo, ...]:
        return tuple(lease for lease in self.leases if lease.live_keys == 0)


SourceKind = Literal["snapshot", "db", "dataDir"]
HashCheck = Literal["verified", "skipped", "absent"]


@dataclass(frozen=True, slots=True)
class Source:
    """What was analysed: the path given, what it was, the db file read, its SHA-256 check."""

    path: str
    kind: SourceKind
    db_path: str
    sha256: HashCheck


@dataclass(frozen=True, slots=True)
class DbFile:
    """Sizes of the bbolt db (a snapshot's SHA-256 trailer excluded)."""

    size: int
    size_in_use: int  # size minus the free pages, as etcd's dbSizeInUse
    page_size: int


@dataclass(frozen=True, slots=True)
class Report:
    source: Source
    db: DbFile
    analysis: Analysis
