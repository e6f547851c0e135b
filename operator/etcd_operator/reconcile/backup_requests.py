"""What creates an EtcdBackup from an EtcdCluster, and the name it gets. Pure.

Two triggers on the cluster create backup objects (a third, ``kubectl create`` of an EtcdBackup,
needs no decision): the schedule (``backup_schedule`` says which slot is due) and the
annotation ``etcd.pyetcd.io/backup``. Both name the object deterministically from what asked
for it, and that is what makes them exactly-once: the operator creates the object, then records
what it acted on in the cluster's status (the slot, the annotation's value). If it crashes in
between, the next pass decides the same thing again and creates the same name, which the API
server refuses as existing: the caller takes that as done and records it. No second backup.

The annotation: any new value asks for one backup; the same value again asks for nothing, and
so does removing the annotation or setting it empty. "New" means different from the value last
acted on, as the status recorded it; the value may be anything (``now``, a date, a ticket
number), compared exactly. A value used before, then replaced, then set again asks anew, and
gets the name it had: while that earlier backup object still exists, the creation is a no-op.

Names are DNS labels (at most 63 characters, so they also fit a label value and a Job name):

- scheduled: ``<cluster>-<yyyymmdd>-<hhmm>``, the slot in UTC (unique per slot: slots are
  minutes, and UTC has no repeated hour in autumn, where local time would collide);
- on demand: ``<cluster>-ondemand-<hash>``, the hash of the cluster name and the value (the
  value itself may be long or hold any character).

When the cluster's name is too long for the tail, it is cut and followed by a hash of the full
name, so that two long names sharing a prefix do not share backups' names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

BACKUP_ANNOTATION = "etcd.pyetcd.io/backup"
# On the EtcdBackups the operator creates: what made it (retention applies to these only) and,
# for scheduled ones, the slot (RFC 3339, UTC).
TRIGGER_LABEL = "etcd.pyetcd.io/backup-trigger"
SCHEDULED_FOR_ANNOTATION = "etcd.pyetcd.io/scheduled-for"
TRIGGER_SCHEDULE = "schedule"
TRIGGER_ANNOTATION = "annotation"
# A full backup that starts a new continuous-backup chain after the last one broke.
TRIGGER_CONTINUOUS = "continuous"
NAME_MAX_LENGTH = 63
# Hex digits of sha256 in a name: 40 bits, no collision among one cluster's requests in practice.
HASH_LENGTH = 10
ON_DEMAND_INFIX = "ondemand"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _digest(*parts: str) -> str:
    # NUL separates the parts: no cluster name or value turns into another pair.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LENGTH]


def _name(cluster: str, tail: str) -> str:
    """``<cluster>-<tail>``, the cluster cut and hashed when the whole is too long."""
    if not _DNS_LABEL.match(cluster):
        raise ValueError(f"cluster name {cluster!r} is not a DNS label")
    name = f"{cluster}-{tail}"
    if len(name) <= NAME_MAX_LENGTH:
        return name
    room = NAME_MAX_LENGTH - len(tail) - HASH_LENGTH - 2
    prefix = cluster[:room].rstrip("-")
    return f"{prefix}-{_digest(cluster)}-{tail}"


def scheduled_backup_name(cluster: str, slot: datetime) -> str:
    """The EtcdBackup of the schedule's ``slot``: ``<cluster>-20260102-0300`` (UTC)."""
    if slot.tzinfo is None or slot.utcoffset() is None:
        raise ValueError(f"slot must be timezone-aware, got {slot.isoformat()}")
    return _name(cluster, slot.astimezone(UTC).strftime("%Y%m%d-%H%M"))


def on_demand_backup_name(cluster: str, value: str) -> str:
    """The EtcdBackup that the annotation's ``value`` asks for on ``cluster``."""
    return _name(cluster, f"{ON_DEMAND_INFIX}-{_digest(cluster, value)}")


@dataclass(frozen=True)
class OnDemandRequest:
    """Create the EtcdBackup ``name``, then record ``value`` as acted on in the status."""

    name: str
    value: str


def on_demand_request(
    cluster: str, annotation: str | None, last_acted_on: str | None
) -> OnDemandRequest | None:
    """The backup the annotation asks for, or ``None``: absent, empty, or already acted on."""
    if not annotation or annotation == last_acted_on:
        return None
    return OnDemandRequest(name=on_demand_backup_name(cluster, annotation), value=annotation)
