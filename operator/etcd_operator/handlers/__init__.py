"""kopf entry points for the EtcdCluster resource: thin, they observe, call ``reconcile.plan``
and execute its actions. ``register`` puts them on a kopf registry (see ``cluster``)."""

from __future__ import annotations

from etcd_operator.handlers.cluster import Reconciler, register

__all__ = ["Reconciler", "register"]
