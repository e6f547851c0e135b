"""The operator's maintenance actions against real members of both engines: a member filled up
to its quota raises NOSPACE; after a compaction, ``Defragment`` gives the file's free pages back
to the disk and ``DisarmAlarm`` lets writes in again. ``members.observe`` reports the alarm and
the sizes the defrag step decides on (``reconcile.defrag.no_space`` reads the alarm back)."""

from __future__ import annotations

import asyncio

import pytest
from etcd_operator.members import maintain, observe
from etcd_operator.reconcile.actions import Defragment, DisarmAlarm
from etcd_operator.reconcile.defrag import NOSPACE, no_space
from pyetcd.client import EtcdClient

from tests.integration.cluster import FLAVOURS, Flavour
from tests.integration.conftest import MemberRegistry
from tests.integration.test_quota import NO_SPACE, QUOTA, fill

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_defragment_reclaims_and_disarm_lets_writes_in(
    members: MemberRegistry, flavour: Flavour
) -> None:
    member = members.new(flavour, name="quota", extra_flags=[f"--quota-backend-bytes={QUOTA}"])
    acked, error = fill(member)
    assert acked > 0 and error == NO_SPACE
    assert member.etcdctl("del", "/q/big").returncode == 0

    async def scenario() -> None:
        async with EtcdClient([member.client_url], timeout=5.0) as client:
            view = await observe(client, 5.0)
            assert view is not None
            [me] = view.members
            assert no_space(view) == {me.id}
            revision = (await client.status(member.client_url)).revision
            compacted = member.etcdctl("compaction", "--physical", str(revision))
            assert compacted.returncode == 0, compacted.stderr
            before = (await client.status(member.client_url)).db_size
            await maintain(client, Defragment(me.id, me.name, member.client_url))
            after = await client.status(member.client_url)
            assert after.db_size < before // 2, (before, after.db_size)
            assert after.db_size < QUOTA
            await maintain(client, DisarmAlarm(me.id, me.name, NOSPACE))
            view = await observe(client, 5.0)
            assert view is not None and no_space(view) == set()
            # Disarming again is a no-op, not an error.
            await maintain(client, DisarmAlarm(me.id, me.name, NOSPACE))
            await client.put("/q/after", "writes work again")

    asyncio.run(scenario())
