"""spec.tls in whole passes, against the in-memory API: the first pass writes the CAs and
certificates (made by the executor, signed by the CA it just wrote) before the StatefulSet, and
every later pass connects to etcd over https with the client certificate from its Secret."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from datetime import UTC, datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import pki
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.runtime.backups import BackupRunner
from etcd_operator.runtime.reconciler import Reconciler
from etcd_operator.runtime.refresh import ClusterRef

from tests.unit.operator.runtime import test_backups
from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube, Json
from tests.unit.operator.runtime.test_reconciler import Events

SETTINGS = OperatorSettings(status_interval_seconds=5)
CLUSTER: Json = {
    "apiVersion": "etcd.pyetcd.io/v1alpha1",
    "kind": "EtcdCluster",
    "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-demo", "generation": 1},
    "spec": {"version": "3.5.17", "replicas": 3, "tls": {"client": {}, "peer": {}}},
}


NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def ref() -> ClusterRef:
    return ClusterRef("ns", "demo", "uid-demo")


def secret(kube: FakeKube, name: str) -> dict[str, bytes]:
    raw = kube.objects[("Secret", "ns", name)]
    return {k: base64.b64decode(v) for k, v in raw["data"].items()}


def test_passes_issue_certificates_first_and_then_connect_with_the_client_certificate() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    kube.put(CLUSTER)
    connected: list[tuple[tuple[str, ...], ClientCredentials | None]] = []

    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        connected.append((tuple(endpoints), tls))
        return etcd

    reconciler = Reconciler(SETTINGS, kube, Events(), connect)
    asyncio.run(reconciler.refresh(ClusterRef("ns", "demo", "uid-demo")))

    kinds = [(m["kind"], m["metadata"]["name"]) for m in kube.applied]
    secrets = [name for kind, name in kinds if kind == "Secret"]
    assert secrets == [
        "demo-client-ca",
        "demo-server-tls",
        "demo-client-tls",
        "demo-peer-ca",
        "demo-peer-tls",
    ]
    assert kinds.index(("Secret", "demo-peer-tls")) < kinds.index(("StatefulSet", "demo"))
    for name, ca in (("demo-server-tls", "demo-client-ca"), ("demo-peer-tls", "demo-peer-ca")):
        facts = pki.inspect(secret(kube, name))
        assert (
            facts.usable and facts.ca_fingerprint == pki.inspect(secret(kube, ca)).own_fingerprint
        )
    assert ("Normal", "CertificateIssued") in [(t, r) for t, r, _ in kube.events()]

    asyncio.run(reconciler.refresh(ClusterRef("ns", "demo", "uid-demo")))
    client = secret(kube, "demo-client-tls")
    endpoints, credentials = connected[-1]
    assert credentials == ClientCredentials(client["ca.crt"], client["tls.crt"], client["tls.key"])
    assert endpoints[0] == "https://demo-0.demo-peer.ns.svc.cluster.local:2379"
    assert endpoints[-1] == "https://demo-client.ns.svc.cluster.local:2379"
    assert "tls.key" not in repr(credentials) and "PRIVATE" not in repr(credentials)
    # Nothing issued again: the second pass found every certificate valid.
    assert [m["metadata"]["name"] for m in kube.applied].count("demo-server-tls") == 1
    status = kube.last_status
    ready = next(c for c in status["conditions"] if c["type"] == "TLSReady")
    assert ready["status"] == "True", ready
    assert status["tls"]["notAfter"] is not None


def test_a_backup_of_a_tls_cluster_streams_with_the_client_certificate() -> None:
    kube, etcd = FakeKube(), FakeEtcd(3)
    kube.put(CLUSTER)

    def connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        return etcd

    asyncio.run(Reconciler(SETTINGS, kube, Events(), connect).refresh(ref()))
    client = secret(kube, "demo-client-tls")
    streamed: list[ClientCredentials | None] = []

    def backup_connect(
        endpoints: Sequence[str],
        timeout: float,
        tls: ClientCredentials | None = None,
        auth: RootCredentials | None = None,
        /,
    ) -> FakeEtcd:
        streamed.append(tls)
        return etcd

    kube.put(test_backups.secret("creds", accessKeyId="a", secretAccessKey="s"))
    upload = test_backups.Uploads()
    runner = BackupRunner(SETTINGS, lambda: kube, backup_connect, clock=lambda: NOW, upload=upload)
    body = test_backups.backup_body()

    async def scenario() -> None:
        kube.put(body)
        runner.start(kube.live(body))
        await runner.wait()

    asyncio.run(scenario())
    assert kube.objects[("EtcdBackup", "ns", "b")]["status"]["phase"] == "Succeeded"
    assert len(upload.calls) == 1
    wanted = ClientCredentials(client["ca.crt"], client["tls.crt"], client["tls.key"])
    # Every connection of the run (the look at etcd, the snapshot stream) presents it.
    assert streamed and all(tls == wanted for tls in streamed), streamed
