"""One checker per condition of an EtcdCluster, assembled by ``reconcile.status``. Pure.

A checker is ``(desired, observed, decided, settings) -> Verdict``: the condition's status,
reason and message for this pass. ``CHECKERS`` lists them in the order the status shows them;
a new condition (BackupReady, say) is one more module and one more entry.
"""

from __future__ import annotations

from etcd_operator.api.v1alpha1 import ConditionType
from etcd_operator.reconcile.conditions import available, degraded, progressing
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, UNKNOWN, Checker, Verdict

CHECKERS: tuple[tuple[ConditionType, Checker], ...] = (
    (ConditionType.AVAILABLE, available.check),
    (ConditionType.PROGRESSING, progressing.check),
    (ConditionType.DEGRADED, degraded.check),
)

__all__ = ["CHECKERS", "FALSE", "TRUE", "UNKNOWN", "Checker", "Verdict"]
