"""Errors raised by the write-ahead log.

Every error that concerns the bytes on disk names the file and the byte offset, so that an
operator reading a startup failure knows exactly which record to look at.
"""

from __future__ import annotations


class WALError(Exception):
    """Base class of every WAL failure."""


class WALCorruptError(WALError):
    """A record that is not a torn tail: a CRC mismatch, an undecodable record, a bad frame."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"wal: corrupt record in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class WALExistsError(WALError):
    """`WAL.create` on a directory that already holds .wal files."""


class WALLockedError(WALError):
    """Another open WAL (this process or another one) holds the file lock."""


class SnapshotNotFoundError(WALError):
    """The WAL has no snapshot record matching the snapshot it was opened at."""


class SnapshotMismatchError(WALError):
    """A snapshot record has the requested index but a different term."""


class MetadataConflictError(WALError):
    """Two metadata records in the log differ."""
