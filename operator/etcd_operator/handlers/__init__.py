"""kopf entry points only: ``register`` puts the EtcdCluster handlers on a kopf registry and
hands every pass to ``etcd_operator.runtime``."""

from __future__ import annotations

from etcd_operator.handlers.cluster import register

__all__ = ["register"]
