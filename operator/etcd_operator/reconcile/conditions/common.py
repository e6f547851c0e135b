"""What every condition checker shares: the verdict type and the checker signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided

ConditionStatus = Literal["True", "False", "Unknown"]
TRUE: Literal["True"] = "True"
FALSE: Literal["False"] = "False"
UNKNOWN: Literal["Unknown"] = "Unknown"


@dataclass(frozen=True)
class Verdict:
    """A condition's status, reason (one CamelCase word) and message for this pass."""

    status: ConditionStatus
    reason: str
    message: str


Checker = Callable[[EtcdCluster, Observed, Decided, OperatorSettings], Verdict]


def unreachable(settings: OperatorSettings) -> Verdict:
    """No member answered (after the cluster formed): nothing can be said either way."""
    why = f"no member answered within {settings.etcd_timeout_seconds:g}s"
    return Verdict(UNKNOWN, "EtcdUnreachable", why)


def bootstrapping(desired: EtcdCluster) -> Verdict:
    return Verdict(
        FALSE, "Bootstrapping", f"waiting for {desired.spec.replicas} members to form the cluster"
    )
