"""``pyetcd.client``'s auth calls against a real member of each kind: pyetcd, Debian's etcd 3.4
and etcd 3.5 (``make etcd35``). These are the calls the operator turns auth on with
(``spec.auth``), in etcd's order: user root, role root, the grant, auth enable; then every call
it makes carries root's token, and a client without a user is refused as etcd refuses it.

etcd 3.4 has no ``AuthStatus``: it answers ``UNIMPLEMENTED``, and whether auth is on shows in
``Authenticate`` (``authentication is not enabled`` while it is off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import grpc
import pytest
from etcd_operator import memberinit
from pyetcd.client import Credentials, EtcdClient, EtcdClientError

from tests.integration import cluster as cluster_module
from tests.integration.cluster import Member
from tests.integration.conftest import start_or_fail
from tools import etcd35

pytestmark = pytest.mark.integration

Kind = Literal["pyetcd", "etcd34", "etcd35"]
KINDS: tuple[Kind, ...] = ("pyetcd", "etcd34", "etcd35")
NOT_ENABLED = "etcdserver: authentication is not enabled"
AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
USER_EMPTY = "etcdserver: user name is empty"


@pytest.fixture
def member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Kind, Member]]:
    kind: Kind = request.param
    if kind == "etcd35":
        built = etcd35.cached_binary()
        if built is None:
            pytest.fail(
                f"etcd {etcd35.ETCD35_VERSION} is not built in {etcd35.cache_dir()}; {etcd35.HINT}",
                pytrace=False,
            )
        monkeypatch = pytest.MonkeyPatch()
        monkeypatch.setattr(cluster_module, "ETCD_BIN", built)
        request.addfinalizer(monkeypatch.undo)
    started = Member("pyetcd" if kind == "pyetcd" else "etcd", tmp_path / kind)
    start_or_fail(started)
    try:
        yield kind, started
    finally:
        started.stop()


async def refused(call: object) -> EtcdClientError:
    assert asyncio.iscoroutine(call)
    with pytest.raises(EtcdClientError) as raised:
        await call
    return raised.value


@pytest.mark.parametrize("member", KINDS, indirect=True)
def test_root_user_role_grant_and_auth_enable_in_etcds_order(member: tuple[Kind, Member]) -> None:
    kind, server = member

    async def scenario() -> None:
        async with EtcdClient([server.client_url]) as anonymous:
            if kind == "etcd34":
                err = await refused(anonymous.auth_status())
                assert err.code == grpc.StatusCode.UNIMPLEMENTED
            else:
                assert not (await anonymous.auth_status()).enabled
            assert (await refused(anonymous.authenticate("root", "pw"))).message == NOT_ENABLED
            err = await refused(anonymous.user_get("root"))
            assert err.message == "etcdserver: user name not found"
            await anonymous.user_add("root", "first")
            err = await refused(anonymous.user_add("root", "again"))
            assert err.message == "etcdserver: user name already exists"
            await anonymous.user_change_password("root", "pw")
            err = await refused(anonymous.role_get("root"))
            assert err.message == "etcdserver: role name not found"
            # Without the role granted, etcd refuses to turn auth on.
            err = await refused(anonymous.auth_enable())
            assert err.message == "etcdserver: root user does not have root role"
            await anonymous.role_add("root")
            await anonymous.role_get("root")
            await anonymous.user_grant_role("root", "root")
            assert await anonymous.user_get("root") == ("root",)
            await anonymous.auth_enable()

            # Now a call without a user is refused; Authenticate tells a wrong password.
            assert (await refused(anonymous.put("k", "v"))).message == USER_EMPTY
            if kind != "etcd34":
                # etcd 3.5 (and pyetcd) want a user for the member list too (3.4 does not).
                assert (await refused(anonymous.member_list())).message == USER_EMPTY
            assert (await refused(anonymous.authenticate("root", "wrong"))).message == AUTH_FAILED
            assert await anonymous.authenticate("root", "pw")

        async with EtcdClient([server.client_url], credentials=Credentials("root", "pw")) as root:
            if kind != "etcd34":
                assert (await root.auth_status()).enabled
            assert (await root.member_list()).members
            await root.put("k", "v")
            assert await root.get("k") == b"v"
            assert (await root.status(server.client_url)).version
            assert (await root.health(server.client_url)).healthy
            chunks = [c async for c in root.snapshot(server.client_url)]
            assert sum(len(c) for c in chunks) > 32
            await root.defragment(server.client_url)
            await root.auth_disable()
        async with EtcdClient([server.client_url]) as anonymous:
            assert await anonymous.get("k") == b"v"
            if kind != "etcd34":
                assert not (await anonymous.auth_status()).enabled

    asyncio.run(scenario())


@pytest.mark.parametrize("member", KINDS, indirect=True)
def test_a_client_with_a_wrong_password_is_refused_every_call(
    member: tuple[Kind, Member],
) -> None:
    _, server = member

    async def scenario() -> None:
        async with EtcdClient([server.client_url]) as anonymous:
            await anonymous.user_add("root", "pw")
            await anonymous.role_add("root")
            await anonymous.user_grant_role("root", "root")
            await anonymous.auth_enable()
        async with EtcdClient(
            [server.client_url], credentials=Credentials("root", "nope")
        ) as wrong:
            assert (await refused(wrong.member_list())).message == AUTH_FAILED
            assert (await refused(wrong.get("k"))).message == AUTH_FAILED

    asyncio.run(scenario())


@pytest.mark.parametrize("member", ("pyetcd", "etcd35"), indirect=True)
def test_member_init_lists_the_members_of_a_cluster_with_auth_on_as_root(
    member: tuple[Kind, Member],
) -> None:
    """With auth on, etcd 3.5 and pyetcd list members only to a user: member-init's lost-data
    check, given root's credentials (from the root Secret, as env), still sees the cluster;
    without them no member seems to answer."""
    _, server = member

    async def scenario() -> None:
        async with EtcdClient([server.client_url]) as anonymous:
            await anonymous.user_add("root", "pw")
            await anonymous.role_add("root")
            await anonymous.user_grant_role("root", "root")
            await anonymous.auth_enable()
        root = memberinit.root_credentials({"ETCDCTL_USER": "root", "ETCDCTL_PASSWORD": "pw"})
        listed = await memberinit.member_list([server.client_url], 5.0, auth=root)
        assert listed is not None and [m.name for m in listed] == [server.name]
        assert await memberinit.member_list([server.client_url], 5.0) is None

    asyncio.run(scenario())
