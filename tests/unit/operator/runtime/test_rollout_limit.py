"""The operator-wide rollout limit in whole passes: an operator upgrade that changes every
cluster's member image restarts one cluster at a time (the default limit), the next one only
once the first is seen rolled out; the waiting cluster says why."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.reconcile.plan import desired_children
from etcd_operator.runtime.reconciler import Reconciler, parse_cluster
from etcd_operator.runtime.refresh import ClusterRef

from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube, Json
from tests.unit.operator.runtime.test_reconciler import Events

OLD = OperatorSettings(pyetcd_image="registry.example/pyetcd", status_interval_seconds=5)
NEW = OLD.model_copy(update={"pyetcd_image": "registry.example/pyetcd-next"})


def cluster(name: str) -> Json:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": {"version": "3.5.17", "replicas": 3},
    }


def rolled_out(sts: Json) -> None:
    """What the StatefulSet controller reports once every pod runs the current template."""
    sts["metadata"]["generation"] = 1
    sts["status"] = {
        "observedGeneration": 1,
        "replicas": 3,
        "updatedReplicas": 3,
        "currentRevision": "r",
        "updateRevision": "r",
    }


def world(kube: FakeKube, name: str) -> None:
    """A formed cluster as the previous operator version left it (its old settings)."""
    obj = cluster(name)
    kube.put(obj)
    for manifest in desired_children(parse_cluster(obj), OLD, BootstrapState.EXISTING):
        if manifest["kind"] == "StatefulSet":
            rolled_out(manifest)
        kube.put(manifest)


def image_of(kube: FakeKube, name: str) -> str:
    sts = kube.objects[("StatefulSet", "ns", name)]
    return str(sts["spec"]["template"]["spec"]["containers"][0]["image"])


def progressing(kube: FakeKube, name: str) -> str:
    status = kube.objects[("EtcdCluster", "ns", name)]["status"]
    (found,) = [c for c in status["conditions"] if c["type"] == "Progressing"]
    return str(found["reason"])


def test_an_operator_upgrade_rolls_one_cluster_at_a_time() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    for name in ("alpha", "beta"):
        world(kube, name)

    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        return etcd

    reconciler = Reconciler(NEW, kube, Events(), connect)

    def refresh(name: str) -> None:
        asyncio.run(reconciler.refresh(ClusterRef("ns", name, f"uid-{name}")))

    refresh("alpha")
    refresh("beta")
    assert image_of(kube, "alpha").startswith("registry.example/pyetcd-next:")
    assert image_of(kube, "beta").startswith("registry.example/pyetcd:")
    assert progressing(kube, "beta") == "RolloutQueued"

    # alpha still rolls: beta keeps waiting, however often it is refreshed.
    refresh("beta")
    assert image_of(kube, "beta").startswith("registry.example/pyetcd:")

    # alpha has rolled out; its next pass frees the slot, and beta's next pass takes it.
    rolled_out(kube.objects[("StatefulSet", "ns", "alpha")])
    refresh("alpha")
    refresh("beta")
    assert image_of(kube, "beta").startswith("registry.example/pyetcd-next:")
    assert progressing(kube, "beta") != "RolloutQueued"


def test_a_higher_limit_rolls_that_many_at_once() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    names = ("a", "b", "c")
    for name in names:
        world(kube, name)
    settings = NEW.model_copy(update={"max_concurrent_rollouts": 2})

    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        return etcd

    reconciler = Reconciler(settings, kube, Events(), connect)
    for name in names:
        asyncio.run(reconciler.refresh(ClusterRef("ns", name, f"uid-{name}")))
    rolled = [n for n in names if image_of(kube, n).startswith("registry.example/pyetcd-next:")]
    assert rolled == ["a", "b"]
