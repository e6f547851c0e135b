"""``pyetcdutl analyze``'s JSON report, read and checked, and what of it the operator keeps. Pure.

The report is documented with the tool (``pyetcd.analyze.render``; the operator never imports
it: it runs the tool and reads its output). ``schemaVersion`` 1 only ever gains fields, so only
the parts read here are modelled and the rest is ignored; a report of another version, or one
whose parts are not what version 1 says, is refused (``ReportError``) rather than half-read.

What is kept: the summary of ``status.keyspace`` (totals, the top prefixes by stored bytes, the
biggest and the hottest key, the leases holding no key) and the prefix series of the metrics.
Key names can be long (etcd accepts keys of up to 1.5 MiB): the status and the metrics show them
cut to ``KEY_TEXT_LIMIT`` characters, the report has them whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError

from etcd_operator.api.analysis import (
    STATUS_PREFIXES,
    BiggestKey,
    HottestKey,
    KeyspacePrefix,
)

SCHEMA_VERSION = 1
# Characters of a key or prefix in status.keyspace and in a metric label.
KEY_TEXT_LIMIT = 256
# Prefix series of etcd_operator_keyspace_prefix_bytes per cluster, whatever spec.analysis.top.
METRIC_PREFIXES = 10


class ReportError(ValueError):
    """The tool's output is not a report the operator can read; the message says why."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Totals(_Part):
    revision: NonNegativeInt
    liveKeys: NonNegativeInt
    liveBytes: NonNegativeInt
    leasesWithoutKeys: NonNegativeInt
    dbSize: NonNegativeInt
    dbSizeInUse: NonNegativeInt


class Prefix(_Part):
    prefix: str
    liveKeys: NonNegativeInt
    liveBytes: NonNegativeInt
    storedBytes: NonNegativeInt


class Key(_Part):
    key: str
    live: bool
    valueSize: NonNegativeInt
    revisions: NonNegativeInt


class Report(_Part):
    """The parts of a schemaVersion 1 report the operator reads (lists ordered as documented:
    prefixes by stored bytes, biggest keys by value size, hot keys by revisions)."""

    schemaVersion: int
    totals: Totals
    prefixes: list[Prefix]
    biggestKeys: list[Key]
    hotKeys: list[Key]


def parse_report(text: str | bytes) -> Report:
    """The report ``pyetcdutl analyze --format json`` printed, or ``ReportError``."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ReportError(f"pyetcdutl analyze printed no JSON report: {err}") from None
    if not isinstance(data, dict):
        raise ReportError("pyetcdutl analyze printed JSON that is not a report object")
    version = data.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"pyetcdutl analyze reported schemaVersion {version!r}; this operator reads "
            f"schemaVersion {SCHEMA_VERSION}: run the pyetcdutl of the operator's own release"
        )
    try:
        return Report.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ReportError(
            f"pyetcdutl analyze's report is not as schemaVersion {SCHEMA_VERSION} documents it: "
            f"{where}: {first['msg']}"
        ) from None


def shown(text: str) -> str:
    """A key or prefix as the status and the metrics show it: cut to ``KEY_TEXT_LIMIT``."""
    return text if len(text) <= KEY_TEXT_LIMIT else text[: KEY_TEXT_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Summary:
    """What ``status.keyspace`` records of one report."""

    revision: int
    live_keys: int
    live_bytes: int
    db_size: int
    db_size_in_use: int
    prefixes: tuple[KeyspacePrefix, ...]
    leases_without_keys: int
    biggest_key: BiggestKey | None
    hottest_key: HottestKey | None


def summarize(report: Report) -> Summary:
    """The status summary: totals, the top ``STATUS_PREFIXES`` prefixes, the biggest live
    value and the key with the most stored revisions (none when no key has two)."""
    totals = report.totals
    biggest = next((k for k in report.biggestKeys if k.live), None)
    hottest = report.hotKeys[0] if report.hotKeys else None
    return Summary(
        revision=totals.revision,
        live_keys=totals.liveKeys,
        live_bytes=totals.liveBytes,
        db_size=totals.dbSize,
        db_size_in_use=totals.dbSizeInUse,
        prefixes=tuple(
            KeyspacePrefix(
                prefix=shown(p.prefix),
                liveKeys=p.liveKeys,
                liveBytes=p.liveBytes,
                storedBytes=p.storedBytes,
            )
            for p in report.prefixes[:STATUS_PREFIXES]
        ),
        leases_without_keys=totals.leasesWithoutKeys,
        biggest_key=(
            BiggestKey(key=shown(biggest.key), valueSize=biggest.valueSize) if biggest else None
        ),
        hottest_key=(
            HottestKey(key=shown(hottest.key), revisions=hottest.revisions) if hottest else None
        ),
    )


def metric_prefixes(report: Report, top: int) -> tuple[tuple[str, int], ...]:
    """The prefix series of the metrics: (prefix, stored bytes) of the top ``top`` prefixes,
    ``METRIC_PREFIXES`` at most; two prefixes that look alike once cut count once (the
    bigger, listed first)."""
    out: dict[str, int] = {}
    for p in report.prefixes[: min(top, METRIC_PREFIXES)]:
        out.setdefault(shown(p.prefix), p.storedBytes)
    return tuple(out.items())
