"""kopf entry points for EtcdBackup: each hands over to the runtime's ``BackupRunner``.

create and resume only start the run (a task of the runner) and return at once, so that a slow
backup holds no kopf worker and delays nothing else; the run writes the backup's status itself.
Deleting a backup whose ``deletionPolicy`` is Delete removes the stored object first: only those
backups get kopf's finalizer (the delete handler's filter), so a Retain backup, the default, is
deleted at once even while no operator runs. A deletion that S3 refuses is retried with backoff
and keeps the object (and its finalizer) until the stored backup is gone.
"""

from __future__ import annotations

from typing import Any

import kopf

from etcd_operator.api.backup import DeletionPolicy
from etcd_operator.api.etcdbackup import PLURAL
from etcd_operator.api.v1alpha1 import GROUP, VERSION
from etcd_operator.backup import BackupError
from etcd_operator.runtime.backups import BackupRunner
from etcd_operator.runtime.stores import SecretError

# Retries of a refused deletion: every 30 s at first, then at most every 5 minutes.
DELETE_BACKOFF = 30.0


def deletes_stored_backup(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == DeletionPolicy.DELETE


def register_backups(registry: kopf.OperatorRegistry, runner: BackupRunner) -> BackupRunner:
    """Register the EtcdBackup handlers on ``registry``."""
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.resume(*resource, id="backup-resume", registry=registry)
    @kopf.on.create(*resource, id="backup-create", registry=registry)
    async def created(body: kopf.Body, **_: Any) -> None:
        runner.start(body)
        runner.expire_later(body)

    @kopf.on.delete(
        *resource, id="backup-delete-stored", registry=registry, when=deletes_stored_backup
    )
    async def deleted(body: kopf.Body, retry: int, logger: kopf.Logger, **_: Any) -> None:
        try:
            done = await runner.delete_stored(body)
        except (BackupError, SecretError) as err:
            delay = min(300.0, DELETE_BACKOFF * 2 ** min(retry, 4))
            raise kopf.TemporaryError(
                f"the stored backup could not be deleted (retrying): {err}", delay=delay
            ) from None
        logger.info("deletionPolicy Delete: %s", done)

    @kopf.on.cleanup(id="stop-backups", registry=registry)
    async def stop(**_: Any) -> None:
        await runner.stop()

    return runner
