"""spec.auth in whole passes, against the in-memory API and etcd: the first pass creates the
root Secret with a random password, a later one turns auth on in etcd with it, and every pass
after connects as root; a password etcd refuses stops the pass without touching etcd."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.runtime.failures import PassFailedError
from etcd_operator.runtime.reconciler import Reconciler
from etcd_operator.runtime.refresh import ClusterRef

from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube, Json
from tests.unit.operator.runtime.test_reconciler import Events

SETTINGS = OperatorSettings(status_interval_seconds=5)
CLUSTER: Json = {
    "apiVersion": "etcd.pyetcd.io/v1alpha1",
    "kind": "EtcdCluster",
    "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-demo", "generation": 1},
    "spec": {"version": "3.5.17", "replicas": 3, "auth": {}},
}
REF = ClusterRef("ns", "demo", "uid-demo")


def condition(kube: FakeKube, type_: str) -> Json:
    return next(c for c in kube.last_status["conditions"] if c["type"] == type_)


def reconciler(kube: FakeKube, etcd: FakeEtcd, seen: list[RootCredentials | None]) -> Reconciler:
    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        seen.append(auth)
        etcd.connected_as = auth
        return etcd

    return Reconciler(SETTINGS, kube, Events(), connect)


def test_passes_create_the_secret_turn_auth_on_and_then_connect_as_root() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    seen: list[RootCredentials | None] = []
    kube.put(CLUSTER)
    passes = reconciler(kube, etcd, seen)
    asyncio.run(passes.refresh(REF))
    raw = kube.objects[("Secret", "ns", "demo-root-auth")]
    assert raw["type"] == "kubernetes.io/basic-auth"
    password = base64.b64decode(raw["data"]["password"]).decode()
    assert base64.b64decode(raw["data"]["username"]) == b"root"
    assert len(password) >= 40  # secrets.token_urlsafe(32)
    assert raw["metadata"]["ownerReferences"][0]["uid"] == "uid-demo"

    asyncio.run(passes.refresh(REF))
    assert etcd.auth_enabled
    assert etcd.auth_calls == ["user_add", "role_add", "user_grant_role", "auth_enable"]
    assert etcd.users["root"] == (password, ("root",))
    assert seen[-1] == RootCredentials("root", password)
    ready = condition(kube, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("True", "AuthEnabled"), ready
    assert kube.last_status["auth"] == {"enabled": True, "rootSecretName": "demo-root-auth"}

    # Created once: later passes neither make a new password nor enable anything again.
    asyncio.run(passes.refresh(REF))
    assert kube.objects[("Secret", "ns", "demo-root-auth")]["data"] == raw["data"]
    assert etcd.auth_calls == ["user_add", "role_add", "user_grant_role", "auth_enable"]
    everything = repr(kube.status_patches) + repr(kube.events()) + repr(kube.applied)
    assert password not in everything


def test_a_pass_interrupted_while_enabling_resumes_where_it_stopped() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    seen: list[RootCredentials | None] = []
    kube.put(CLUSTER)
    passes = reconciler(kube, etcd, seen)
    asyncio.run(passes.refresh(REF))
    etcd.fail_auth_call = ("user_grant_role", "etcdserver: request timed out")
    with pytest.raises(PassFailedError):  # after the user and the role were added
        asyncio.run(passes.refresh(REF))
    assert not etcd.auth_enabled and etcd.auth_calls == ["user_add", "role_add", "user_grant_role"]
    asyncio.run(passes.refresh(REF))
    assert etcd.auth_enabled
    # The user existed: its password set from the operator's Secret; the role not added twice.
    assert etcd.auth_calls[3:] == ["user_change_password", "user_grant_role", "auth_enable"]
    assert condition(kube, "AuthReady")["status"] == "True"


def test_a_refused_password_stops_the_pass_before_any_etcd_change() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    seen: list[RootCredentials | None] = []
    kube.put(CLUSTER)
    passes = reconciler(kube, etcd, seen)
    asyncio.run(passes.refresh(REF))
    asyncio.run(passes.refresh(REF))
    etcd.users["root"] = ("changed-by-hand", ("root",))
    # A spec that would change the membership if the pass went on.
    kube.objects[("EtcdCluster", "ns", "demo")]["spec"]["replicas"] = 5
    applied = len(kube.applied)
    asyncio.run(passes.refresh(REF))
    ready = condition(kube, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "AuthRefused")
    assert etcd.calls == [] and len(etcd.members) == 3
    assert len(kube.applied) == applied
    assert ("Warning", "AuthNotReady") in [(t, r) for t, r, _ in kube.events()]
