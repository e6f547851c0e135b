"""etcd maintenance the operator runs: online defragmentation and disarming an alarm.

Both are idempotent: defragmenting a member again only rewrites its file again, and disarming
an alarm that is not active deactivates nothing. A defragmentation holds the member's backend
while it rewrites the file (seconds per GiB), so the client gives it a deadline of its own.
"""

from __future__ import annotations

import logging
from typing import Protocol

from pyetcd.client import AlarmMember

from etcd_operator.reconcile.actions import Defragment, DisarmAlarm, MaintenanceAction

log = logging.getLogger(__name__)


class MaintenanceClient(Protocol):
    """The calls of ``pyetcd.client.EtcdClient`` that maintenance uses."""

    async def defragment(self, endpoint: str) -> None: ...

    async def alarm_disarm(self, member_id: int, alarm: str) -> list[AlarmMember]: ...


async def maintain(etcd: MaintenanceClient, action: MaintenanceAction) -> None:
    match action:
        case Defragment(name=name, endpoint=endpoint):
            await etcd.defragment(endpoint)
            log.info("defragmented member %s", name)
        case DisarmAlarm(member_id=member_id, name=name, alarm=alarm):
            if await etcd.alarm_disarm(member_id, alarm):
                log.info("disarmed %s of member %s", alarm, name)
            else:
                log.info("%s of member %s was not active", alarm, name)
