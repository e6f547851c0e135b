"""kopf entry points only: ``register`` puts the EtcdCluster handlers on a kopf registry,
``register_backups`` the EtcdBackup handlers and ``register_defrags`` the EtcdDefrag ones; all
hand the work to ``etcd_operator.runtime``."""

from __future__ import annotations

from etcd_operator.handlers.backup import register_backups
from etcd_operator.handlers.cluster import register
from etcd_operator.handlers.defrag import register_defrags

__all__ = ["register", "register_backups", "register_defrags"]
