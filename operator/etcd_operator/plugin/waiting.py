"""When ``kubectl etcd backup NAME --wait`` is over, and why it is not. Pure.

The command annotates the cluster with a fresh value; the operator then creates the EtcdBackup
whose name follows from the cluster and the value (``reconcile.backup_requests``), and records
the value in ``status.backup.lastRequest``. Each poll looks at that backup (and, while it does
not exist, at the cluster) and ``decide`` says: the backup ended (Succeeded, Failed or
Rejected), keep waiting, the cluster is gone (nothing will create the backup), or the deadline
has passed, with the state seen last, so that a timeout says where things stuck.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from etcd_operator.plugin.views import BackupView, backup_view

Json = dict[str, Any]

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str) -> float:
    """Seconds in ``10m``, ``90s``, ``1h30m`` (kubectl's --timeout form) or a bare number."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration (10m, 90s, 1h30m)") from None
        hours, minutes, secs = (int(part) if part else 0 for part in match.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r}: the duration must be positive and finite")
    return seconds


@dataclass(frozen=True)
class Waiting:
    """Not over: ``state`` says where the backup is (for progress lines)."""

    state: str


@dataclass(frozen=True)
class Ended:
    backup: BackupView


@dataclass(frozen=True)
class TimedOut:
    """The deadline passed; ``state`` is what was seen last."""

    state: str


@dataclass(frozen=True)
class Gone:
    """The cluster went away before its backup existed: nothing will make it any more."""

    state: str


Outcome = Waiting | Ended | TimedOut | Gone


def _state(name: str, request: str, backup: Json | None, cluster: Json | None) -> str:
    if backup is not None:
        view = backup_view(backup)
        detail = ": ".join(part for part in (view.reason, view.message) if part)
        return f"EtcdBackup {name} is {view.phase}" + (f" ({detail})" if detail else "")
    if cluster is None:
        return f"the EtcdCluster was deleted before EtcdBackup {name} was created"
    status = (cluster.get("status") or {}).get("backup") or {}
    if status.get("lastRequest") == request:
        return f"the operator acted on the request, but EtcdBackup {name} does not exist"
    return (
        f"the operator has not acted on the request yet (EtcdBackup {name} does not exist): "
        "it waits for the cluster to have formed; is the operator running?"
    )


def decide(
    name: str,
    request: str,
    backup: Json | None,
    cluster: Json | None,
    *,
    now: float,
    deadline: float,
) -> Outcome:
    """``backup``: the EtcdBackup ``name`` (None while it does not exist); ``cluster``: the
    EtcdCluster, looked at only while the backup does not exist (None when it is gone)."""
    if backup is not None:
        view = backup_view(backup)
        if view.ended:
            return Ended(view)
    state = _state(name, request, backup, cluster)
    if backup is None and cluster is None:
        return Gone(state)
    if now >= deadline:
        return TimedOut(state)
    return Waiting(state)
