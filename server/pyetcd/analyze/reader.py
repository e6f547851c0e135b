"""Feeds the analysis from a bbolt db file: the thin I/O side of `pyetcdutl analyze`.

The ``key`` bucket streams through ``BoltScan`` straight into ``core.analyze`` (one page of it
in memory at a time); ``lease`` and ``meta`` follow. Then the pages of every bucket are counted
for the in-use size. Errors are ``BackendError`` (the file) or ``AnalyzeError`` (its contents).
"""

from __future__ import annotations

from collections.abc import Iterator

from pyetcd.analyze.core import AnalyzeError, analyze
from pyetcd.analyze.report import DbFile, Options, Report, Source
from pyetcd.backend.contract import KEY, LEASE, META
from pyetcd.backend.scan import BoltScan

__all__ = ["read_report"]


def read_report(
    db_path: str, *, source: Source, options: Options, size: int | None = None
) -> Report:
    """Analyse the db at ``db_path`` (its first ``size`` bytes: a snapshot's trailer excluded)."""
    with BoltScan(db_path, size=size) as scan:
        if not scan.has_bucket(KEY):
            names = ", ".join(n.decode(errors="backslashreplace") for n in scan.bucket_names())
            raise AnalyzeError(
                f"not an etcd database: no `key` bucket (buckets: {names or 'none'})"
            )

        def entries(bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
            return scan.items(bucket) if scan.has_bucket(bucket) else iter(())

        analysis = analyze(scan.items(KEY), entries(LEASE), entries(META), options)
        free_pages = scan.meta.pgid - scan.pages_in_use()
        db = DbFile(
            size=scan.size,
            size_in_use=scan.size - free_pages * scan.page_size,
            page_size=scan.page_size,
        )
    return Report(source=source, db=db, analysis=analysis)
