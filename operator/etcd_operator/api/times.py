"""Times as the Kubernetes API writes them: RFC 3339 in UTC, to the second (``metav1.Time``)."""

from __future__ import annotations

from datetime import UTC, datetime

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(value: datetime) -> str:
    """``value`` (timezone-aware) as ``2026-12-06T10:00:00Z``."""
    return value.astimezone(UTC).strftime(RFC3339)


def parse_rfc3339(value: object) -> datetime | None:
    """The instant a ``2026-12-06T10:00:00Z`` string names; ``None`` for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, RFC3339).replace(tzinfo=UTC)
    except ValueError:
        return None
