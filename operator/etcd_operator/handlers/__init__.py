"""kopf entry points only: ``register`` puts the EtcdCluster handlers on a kopf registry and
``register_backups`` the EtcdBackup handlers; both hand the work to ``etcd_operator.runtime``."""

from __future__ import annotations

from etcd_operator.handlers.backup import register_backups
from etcd_operator.handlers.cluster import register

__all__ = ["register", "register_backups"]
