"""The manifest of `kubectl etcd restore`: the source's spec, bootstrapping from the backup as
docs/backup.md writes it, with what names the source adjusted, and refusals before anything is
created."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from etcd_operator.api.auth import AuthSpec
from etcd_operator.api.backup import Encryption, SecretKeyRef
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.tls import ClientTLSSpec, PeerTLSSpec, TLSSpec
from etcd_operator.api.v1alpha1 import EtcdCluster, PodTemplate, Storage
from etcd_operator.plugin.restore import RestoreRefusedError, restore_manifest

from tests.unit.operator.plugin.objects import cluster, etcd_backup, running_status

Json = dict[str, Any]

BACKUP = "main-20261206-1200"


def spread(cluster_name: str) -> Json:
    """A topology spread constraint as the podTemplate field describes it: selecting the
    cluster's members by name."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {
            "matchLabels": {"etcd.pyetcd.io/cluster": cluster_name, "tier": "main"},
            "matchExpressions": [
                {"key": "app.kubernetes.io/instance", "operator": "In", "values": [cluster_name]},
                {"key": "tier", "operator": "In", "values": ["main"]},
            ],
        },
    }


def test_the_new_cluster_has_the_sources_spec_and_bootstraps_from_the_backup() -> None:
    source = cluster(
        status=running_status(),
        replicas=5,
        storage=Storage(size="8Gi", storageClassName="fast-ssd"),
        tls=TLSSpec(client=ClientTLSSpec(), peer=PeerTLSSpec()),
    )
    before = copy.deepcopy(source)
    plan = restore_manifest(source, etcd_backup(BACKUP), "main-restored")
    manifest = plan.manifest
    assert source == before  # the source object is not touched
    assert manifest["apiVersion"] == "etcd.pyetcd.io/v1alpha1"
    assert manifest["kind"] == "EtcdCluster"
    # Neither the source's labels (Helm's, Argo's would claim the copy) nor its annotations
    # (its backup annotation would back the new cluster up at once).
    assert manifest["metadata"] == {"name": "main-restored", "namespace": "prod"}
    assert "status" not in manifest
    expected = {k: v for k, v in source["spec"].items()}
    expected["bootstrap"] = {"backup": {"name": BACKUP}}
    assert manifest["spec"] == expected
    assert manifest["spec"]["backup"]["store"]["bucket"] == "etcd-backups"
    assert manifest["spec"]["tls"]["client"]["source"] == "Generated"
    assert plan.notes == ()
    EtcdCluster.model_validate(manifest)


def test_a_bootstrap_of_the_source_is_replaced_not_merged() -> None:
    source = cluster()
    source["spec"]["bootstrap"] = {
        "backup": {
            "name": "ancient",
            "bumpRevision": 5,
            "encryptionKeySecret": {"name": "k", "key": "key"},
        }
    }
    plan = restore_manifest(source, etcd_backup(BACKUP), "fresh")
    assert plan.manifest["spec"]["bootstrap"] == {"backup": {"name": BACKUP}}


def test_selectors_of_the_sources_members_select_the_new_ones() -> None:
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"etcd.pyetcd.io/cluster": "main"}},
                        "topologyKey": "topology.kubernetes.io/zone",
                    },
                }
            ]
        }
    }
    source = cluster(
        podTemplate=PodTemplate(
            topologySpreadConstraints=[spread("main")],
            affinity=affinity,
            labels={"etcd.pyetcd.io/cluster-role": "main"},  # not a selector: left alone
        )
    )
    plan = restore_manifest(source, etcd_backup(BACKUP), "copy")
    template = plan.manifest["spec"]["podTemplate"]
    assert template["topologySpreadConstraints"] == [spread("copy")]
    term = template["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "etcd.pyetcd.io/cluster": "copy"
    }
    assert template["labels"] == {"etcd.pyetcd.io/cluster-role": "main"}
    assert plan.notes == (
        "spec.podTemplate: 3 label selector value(s) that selected main's members now select "
        "copy's",
    )


def test_auth_names_the_sources_root_secret_which_holds_the_restored_password() -> None:
    status = running_status()
    status.auth = None
    source = cluster(status=status, auth=AuthSpec())
    plan = restore_manifest(source, etcd_backup(BACKUP), "copy")
    assert plan.manifest["spec"]["auth"] == {"rootSecretName": "main-root-auth"}
    assert len(plan.notes) == 1 and "main-root-auth" in plan.notes[0]
    assert "copy it under a name of its own" in plan.notes[0]
    # As the status records it, when it does.
    source["status"]["auth"] = {"enabled": True, "rootSecretName": "recorded-root"}
    recorded = restore_manifest(source, etcd_backup(BACKUP), "copy")
    assert recorded.manifest["spec"]["auth"] == {"rootSecretName": "recorded-root"}
    # The user's own Secret: the same one, nothing to say.
    mine = restore_manifest(
        cluster(auth=AuthSpec(rootSecretName="my-root")), etcd_backup(BACKUP), "copy"
    )
    assert mine.manifest["spec"]["auth"] == {"rootSecretName": "my-root"}
    assert mine.notes == ()


def test_the_users_tls_secrets_and_a_shared_backup_prefix_are_pointed_out() -> None:
    source = cluster(
        tls=TLSSpec(
            client=ClientTLSSpec(
                source="Secret",  # type: ignore[arg-type]
                serverSecretName="main-server",
                clientSecretName="main-client",
            ),
            peer=PeerTLSSpec(source="Secret", secretName="main-peer"),  # type: ignore[arg-type]
        )
    )
    source["spec"]["backup"]["store"]["prefix"] = "prod/"
    notes = restore_manifest(source, etcd_backup(BACKUP), "copy").notes
    assert any("main-server" in n and "copy-client.prod.svc" in n for n in notes), notes
    assert any("main-peer" in n and "copy-N.copy-peer.prod.svc" in n for n in notes), notes
    assert any("'prod/'" in n and "start with copy-" in n for n in notes), notes


def test_a_hibernated_source_is_pointed_out() -> None:
    notes = restore_manifest(cluster(replicas=0), etcd_backup(BACKUP), "copy").notes
    assert notes == ("main is hibernated (replicas 0): copy starts no member until you set it",)


def test_an_encrypted_backup_needs_a_key() -> None:
    encrypted = etcd_backup(BACKUP, encrypted=True)
    with pytest.raises(RestoreRefusedError, match=r"encrypted.*encryptionKeySecret"):
        restore_manifest(cluster(), encrypted, "copy")
    source = cluster()
    key = Encryption(keySecret=SecretKeyRef(name="backup-key", key="key"))
    source["spec"]["backup"]["encryption"] = key.model_dump(mode="json")
    plan = restore_manifest(source, encrypted, "copy")
    assert plan.manifest["spec"]["backup"]["encryption"]["keySecret"]["name"] == "backup-key"


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("main", "a restore never modifies main"),
        ("Main-Copy", "DNS-1035 label"),
        ("1copy", "DNS-1035 label"),
        ("c" * 53, "at most 52 characters"),
    ],
)
def test_the_new_name_must_be_a_new_valid_cluster_name(new: str, message: str) -> None:
    with pytest.raises(RestoreRefusedError, match=message):
        restore_manifest(cluster(), etcd_backup(BACKUP), new)


def test_a_backup_of_another_cluster_or_one_that_failed_is_refused() -> None:
    with pytest.raises(RestoreRefusedError, match="a backup of other, not of main"):
        restore_manifest(cluster(), etcd_backup("other-1", cluster="other"), "copy")
    failed = etcd_backup(BACKUP, phase=OperationPhase.FAILED, reason="AccessDenied")
    with pytest.raises(RestoreRefusedError, match=r"is Failed \(AccessDenied\): nothing"):
        restore_manifest(cluster(), failed, "copy")
    rejected = etcd_backup(BACKUP, phase=OperationPhase.REJECTED)
    with pytest.raises(RestoreRefusedError, match="is Rejected"):
        restore_manifest(cluster(), rejected, "copy")


def test_a_backup_still_running_is_waited_for_by_the_new_cluster() -> None:
    running = etcd_backup(BACKUP, phase=OperationPhase.RUNNING)
    plan = restore_manifest(cluster(), running, "copy")
    assert plan.manifest["spec"]["bootstrap"] == {"backup": {"name": BACKUP}}
    assert plan.notes == (
        f"EtcdBackup {BACKUP} is Running: the new cluster waits for it to succeed "
        "(Progressing, WaitingForBackup)",
    )


def test_a_spec_the_models_refuse_is_refused_with_where() -> None:
    source = cluster()
    source["spec"]["someNewerField"] = True
    with pytest.raises(RestoreRefusedError, match=r"\(spec\.someNewerField: .*older than"):
        restore_manifest(source, etcd_backup(BACKUP), "copy")
