"""Rebuilding a cluster whose quorum is lost for good, from its survivor: consent, the order of
the steps, the crash points between them, the end (Succeeded or Failed) and growing back."""

from __future__ import annotations

import dataclasses
from typing import Any

from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.v1alpha1 import RECOVER_QUORUM_ANNOTATION, EtcdCluster
from etcd_operator.components.bootstrap import KEY_FORCE_NEW_CLUSTER, KEY_RESTORE_FOR_RECOVERY
from etcd_operator.reconcile.actions import DeletePod
from etcd_operator.reconcile.observed import EtcdMember, Observed
from etcd_operator.reconcile.plan import Action, Apply, DeletePVC, PatchStatus, plan

from tests.unit.operator.reconcile.builders import (
    NAME,
    SETTINGS,
    at,
    condition,
    converge,
    events,
    execute,
    formed,
    member,
    reasons,
    settle,
    status_of,
    view,
)


def quorum_lost(observed: Observed, alive: dict[int, int], replicas: int = 3) -> Observed:
    """No leader; the members in ``alive`` answer their status with that raft index, the others
    do not answer at all, and their pods are not ready."""
    members = tuple(
        dataclasses.replace(
            member(i, healthy=False),
            raft_index=alive.get(i),
            revision=40 + alive[i] if i in alive else None,
        )
        for i in range(replicas)
    )
    pod_list = tuple(
        dataclasses.replace(p, ready=False) if int(p.name.rsplit("-", 1)[1]) not in alive else p
        for p in observed.pods
    )
    return dataclasses.replace(observed, etcd=view(*members), pods=pod_list)


def consenting(desired: EtcdCluster, token: str = "t1") -> EtcdCluster:
    meta: dict[str, Any] = {**desired.metadata, "annotations": {RECOVER_QUORUM_ANNOTATION: token}}
    return desired.model_copy(update={"metadata": meta})


def rebuilt(observed: Observed, survivor: int, revision: int = 60) -> Observed:
    """The survivor after member-init's surgery: a one-member cluster that leads."""
    alone = dataclasses.replace(member(survivor, leader=True), raft_index=99, revision=revision)
    return dataclasses.replace(observed, etcd=view(alone))


def key_applied(actions: list[Action]) -> str | None:
    found = [a for a in actions if isinstance(a, Apply) and a.manifest["kind"] == "ConfigMap"]
    assert len(found) == 1, found
    value = found[0].manifest["data"].get(KEY_FORCE_NEW_CLUSTER)
    return str(value) if value is not None else None


def kube_changes(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, DeletePVC | DeletePod | Apply)]


def test_without_consent_a_lost_quorum_is_reported_with_the_way_out() -> None:
    desired, observed = formed()
    observed = quorum_lost(observed, {0: 50})
    actions = plan(desired, observed, SETTINGS, at(100))
    assert not [a for a in actions if isinstance(a, DeletePVC | DeletePod)]
    available = condition(actions, "Available")
    assert available["reason"] == "QuorumLost"
    assert "gone demo-1, demo-2; surviving demo-0 (raft index 50)" in available["message"]
    assert RECOVER_QUORUM_ANNOTATION in available["message"]


def test_consent_rebuilds_from_the_survivor_with_the_highest_raft_index_in_order() -> None:
    desired, observed = formed(replicas=5)
    observed = quorum_lost(observed, {1: 70, 3: 90}, replicas=5)
    actions = plan(consenting(desired), observed, SETTINGS, at(100))
    # The others' volumes go first, then the key names the survivor, then its pod restarts.
    assert kube_changes(actions)[:8] == [
        DeletePVC("data-demo-0", "ns"),
        DeletePod("demo-0", "ns"),
        DeletePVC("data-demo-1", "ns"),
        DeletePod("demo-1", "ns"),
        DeletePVC("data-demo-2", "ns"),
        DeletePod("demo-2", "ns"),
        DeletePVC("data-demo-4", "ns"),
        DeletePod("demo-4", "ns"),
    ]
    assert key_applied(actions) == "demo-3:t1"
    # The survivor keeps its node until the others' new pods are placed elsewhere.
    assert DeletePod("demo-3", "ns") not in actions
    assert "QuorumRecoveryStarted" in reasons(actions)
    record = status_of(actions)["quorumRecovery"]
    assert record["phase"] == "Running" and record["member"] == "demo-3"
    assert (record["raftIndex"], record["revisionBefore"]) == (90, 130)
    assert record["removed"] == ["demo-0", "demo-1", "demo-2", "demo-4"]
    assert status_of(actions)["recoverQuorumToken"] == "t1"
    assert condition(actions, "Progressing")["reason"] == "RecoveringQuorum"
    desired, observed = execute(consenting(desired), observed, actions)
    # The StatefulSet makes the others' pods anew; one is not placed yet: the survivor waits.
    settled = settle(observed)
    unplaced = tuple(
        dataclasses.replace(p, node=None) if p.name == "demo-4" else p for p in settled.pods
    )
    wait = plan(desired, dataclasses.replace(settled, pods=unplaced), SETTINGS, at(101))
    assert not [a for a in wait if isinstance(a, DeletePod | DeletePVC)]
    restart = plan(desired, settled, SETTINGS, at(102))
    assert [a for a in restart if isinstance(a, DeletePod | DeletePVC)] == [
        DeletePod("demo-3", "ns")
    ]


def test_the_rebuild_ends_when_the_survivor_leads_alone_then_grows_back() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    observed = quorum_lost(observed, {0: 50})
    actions = plan(desired, observed, SETTINGS, at(100))
    desired, observed = execute(desired, observed, actions)
    # Until the survivor has been through member-init, nothing else changes the membership.
    waiting = plan(desired, observed, SETTINGS, at(101))
    assert not [a for a in waiting if isinstance(a, DeletePVC)]
    assert status_of(waiting)["quorumRecovery"]["phase"] == "Running"
    observed = rebuilt(settle(observed), 0)
    done = plan(desired, observed, SETTINGS, at(102))
    assert "QuorumRecovered" in reasons(done)
    assert key_applied(done) is None
    record = status_of(done)["quorumRecovery"]
    assert record["phase"] == "Succeeded"
    assert (record["revisionBefore"], record["revisionAfter"]) == (90, 60)
    message = next(e.message for e in events(done) if e.reason == "QuorumRecovered")
    assert "revision 90 before, 60 after" in message
    desired, observed = execute(desired, observed, done)
    desired, observed, _ = converge(desired, settle(observed), start=103)
    assert observed.etcd is not None
    assert sorted(m.name for m in observed.etcd.members) == [f"{NAME}-{i}" for i in range(3)]
    assert not observed.etcd.learners
    assert observed.force_new_cluster is None
    # The annotation stays on the object: it never acts again.
    again = quorum_lost(observed, {2: 10})
    assert not [a for a in plan(desired, again, SETTINGS, at(200)) if isinstance(a, DeletePVC)]


def test_a_survivor_at_the_top_ordinal_grows_back_through_the_gaps() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    observed = quorum_lost(observed, {2: 50})
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    observed = rebuilt(settle(observed), 2)
    desired, observed, _ = converge(desired, observed, start=101)
    assert observed.etcd is not None
    assert sorted(m.name for m in observed.etcd.members) == [f"{NAME}-{i}" for i in range(3)]
    assert all(m.healthy and not m.learner for m in observed.etcd.members)


def test_a_pass_that_stopped_before_its_status_is_finished_by_the_next() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    observed = quorum_lost(observed, {0: 50})
    actions = plan(desired, observed, SETTINGS, at(100))
    # The executor ran everything up to the status, then the operator died.
    upto = next(i for i, a in enumerate(actions) if isinstance(a, PatchStatus))
    desired_after, observed = execute(desired, observed, actions[:upto])
    assert desired_after.status == desired.status and observed.force_new_cluster == "demo-0:t1"
    again = plan(desired, settle(observed), SETTINGS, at(101))
    # The survivor still answers with the old membership: its pod is restarted now.
    assert [a for a in again if isinstance(a, DeletePod)] == [DeletePod("demo-0", "ns")]
    assert not [a for a in again if isinstance(a, DeletePVC)]
    record = status_of(again)["quorumRecovery"]
    assert (record["phase"], record["member"], record["token"]) == ("Running", "demo-0", "t1")


def test_a_survivor_whose_surgery_fails_ends_the_recovery_as_failed() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    observed = quorum_lost(observed, {0: 50})
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    observed = settle(observed)
    failing = tuple(
        dataclasses.replace(
            p,
            ready=False,
            init_failed="force-new-cluster t1 failed: /var/lib/etcd/data: no WAL",
        )
        if p.name == "demo-0"
        else p
        for p in observed.pods
    )
    observed = dataclasses.replace(observed, pods=failing, etcd=None)
    actions = plan(desired, observed, SETTINGS, at(101))
    assert "QuorumRecoveryFailed" in reasons(actions)
    assert key_applied(actions) is None
    record = status_of(actions)["quorumRecovery"]
    assert record["phase"] == "Failed" and "no WAL" in record["message"]


def test_a_consent_that_finds_the_quorum_intact_is_refused_and_spent() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    actions = plan(desired, observed, SETTINGS, at(100))
    assert "QuorumRecoveryRejected" in reasons(actions)
    assert not [a for a in actions if isinstance(a, DeletePVC | DeletePod)]
    assert status_of(actions)["recoverQuorumToken"] == "t1"
    desired, observed = execute(desired, observed, actions)
    later = plan(desired, quorum_lost(observed, {0: 50}), SETTINGS, at(500))
    assert not [a for a in later if isinstance(a, DeletePVC | DeletePod)]
    assert "QuorumRecoveryRejected" not in reasons(later)


def test_the_record_is_only_written_by_passes_that_change_it() -> None:
    desired, observed = formed()
    desired = consenting(desired)
    observed = quorum_lost(observed, {0: 50})
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    first = desired.status
    assert first is not None and first.quorumRecovery is not None
    waiting = plan(desired, observed, SETTINGS, at(101))
    last = waiting[-1]
    assert isinstance(last, PatchStatus)
    assert last.status["quorumRecovery"] == first.quorumRecovery.model_dump(mode="json")


_ = EtcdMember  # (the type of the members the helpers build)


# -- spec.recovery.quorumLoss: Automatic --------------------------------------------------------


def emptied(observed: Observed, *gone: int) -> Observed:
    """The pods of ``gone`` came back on new volumes, and member-init refuses them."""
    refusal = "member 10{} has already been bootstrapped: its data dir is empty, yet ..."
    return dataclasses.replace(
        observed,
        pods=tuple(
            dataclasses.replace(p, ready=False, init_failed=refusal.format(p.name[-1]))
            if int(p.name.rsplit("-", 1)[1]) in gone
            else p
            for p in observed.pods
        ),
    )


def planned(desired: EtcdCluster, observed: Observed, seconds: int) -> list[Action]:
    """A pass at ``seconds``, with the clock the runtime gives the observation."""
    return plan(desired, dataclasses.replace(observed, now=at(seconds)), SETTINGS, at(seconds))


def automatic_cluster() -> tuple[EtcdCluster, Observed]:
    desired, observed = formed(recovery={"quorumLoss": "Automatic", "quorumLostAfterSeconds": 300})
    observed = quorum_lost(observed, {0: 50})
    # The pass that sees the loss first: Available turns False now.
    desired, observed = execute(desired, observed, planned(desired, observed, 100))
    return desired, observed


def test_automatic_rebuilds_once_the_loss_lasted_and_every_gone_member_says_its_data_is_lost() -> (
    None
):
    desired, observed = automatic_cluster()
    observed = emptied(observed, 1, 2)
    early = planned(desired, observed, 300)
    assert not [a for a in early if isinstance(a, DeletePVC)]
    assert "rebuilds from the survivor in 100s" in condition(early, "Available")["message"]
    actions = planned(desired, observed, 400)
    assert key_applied(actions) == f"demo-0:automatic-{int(at(400).timestamp())}"
    assert DeletePVC("data-demo-1", "ns") in actions and DeletePVC("data-demo-2", "ns") in actions
    assert "QuorumRecoveryStarted" in reasons(actions)


def test_automatic_never_acts_on_members_that_may_only_be_unreachable() -> None:
    desired, observed = automatic_cluster()
    observed = emptied(observed, 1)  # demo-2 is just gone: down, or behind a partition
    actions = planned(desired, observed, 5000)
    assert not [a for a in actions if isinstance(a, DeletePVC | DeletePod)]
    message = condition(actions, "Available")["message"]
    assert "demo-2 may only be unreachable" in message


def test_without_automatic_the_evidence_alone_does_nothing() -> None:
    desired, observed = formed()
    observed = emptied(quorum_lost(observed, {0: 50}), 1, 2)
    desired, observed = execute(desired, observed, planned(desired, observed, 100))
    actions = planned(desired, observed, 100_000)
    assert not [a for a in actions if isinstance(a, DeletePVC | DeletePod)]


# -- from the latest backup, when no member survives -------------------------------------------

STORE = {"bucket": "backups", "endpoint": "http://s3:9000", "credentialsSecret": "creds"}
BACKUP = EtcdBackup.model_validate(
    {
        "metadata": {"name": "demo-20250102", "namespace": "ns"},
        "spec": {"clusterName": NAME},
        "status": {
            "phase": "Succeeded",
            "location": "s3://backups/ns/demo/demo-20250102.db.zst",
            "store": STORE,
            "sha256": "ab" * 32,
            "encrypted": False,
            "revision": 812,
        },
    }
)


def all_gone(observed: Observed) -> Observed:
    """No member answers and no member pod is Ready; the newest backup is known."""
    return dataclasses.replace(
        observed,
        etcd=None,
        pods=tuple(dataclasses.replace(p, ready=False) for p in observed.pods),
        latest_backup=BACKUP,
    )


def restore_key(actions: list[Action]) -> str | None:
    found = [a for a in actions if isinstance(a, Apply) and a.manifest["kind"] == "ConfigMap"]
    assert len(found) == 1, found
    value = found[0].manifest["data"].get(KEY_RESTORE_FOR_RECOVERY)
    return str(value) if value is not None else None


def restore_container(actions: list[Action]) -> dict[str, Any] | None:
    for a in actions:
        if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet":
            spec = a.manifest["spec"]["template"]["spec"]
            return next((c for c in spec["initContainers"] if c["name"] == "restore"), None)
    return None


def test_with_no_member_left_the_consent_rebuilds_every_member_from_the_newest_backup() -> None:
    desired, observed = formed()
    desired = consenting(desired, "b1")
    observed = all_gone(observed)
    first = plan(desired, observed, SETTINGS, at(100))
    # Step 1: the key and the restore container, no deletion yet.
    assert not [a for a in first if isinstance(a, DeletePVC | DeletePod)]
    assert restore_key(first) == "b1"
    container = restore_container(first)
    assert container is not None
    assert "--location=s3://backups/ns/demo/demo-20250102.db.zst" in container["args"]
    status = status_of(first)
    assert status["restoredFrom"]["backup"] == "demo-20250102"
    assert status["quorumRecovery"]["backup"] == "demo-20250102"
    assert status["quorumRecovery"]["revisionBefore"] == 812
    started = next(e for e in events(first) if e.reason == "QuorumRecoveryStarted")
    assert "every write after it is lost" in started.message
    desired, observed = execute(desired, observed, first)
    # Step 2: the key is live: every claim and pod goes, once.
    second = plan(desired, observed, SETTINGS, at(101))
    assert [a for a in second if isinstance(a, DeletePVC | DeletePod)] == [
        DeletePVC("data-demo-0", "ns"),
        DeletePod("demo-0", "ns"),
        DeletePVC("data-demo-1", "ns"),
        DeletePod("demo-1", "ns"),
        DeletePVC("data-demo-2", "ns"),
        DeletePod("demo-2", "ns"),
    ]
    desired, observed = execute(desired, observed, second)
    third = plan(desired, settle(observed), SETTINGS, at(102))
    assert not [a for a in third if isinstance(a, DeletePVC | DeletePod)]
    # Step 3: the restored members form the cluster again.
    restored = dataclasses.replace(
        settle(observed),
        etcd=view(
            *(dataclasses.replace(member(i, leader=i == 1), revision=10**9 + 812) for i in range(3))
        ),
    )
    done = plan(desired, restored, SETTINGS, at(103))
    assert restore_key(done) is None
    record = status_of(done)["quorumRecovery"]
    assert record["phase"] == "Succeeded"
    assert (record["revisionBefore"], record["revisionAfter"]) == (812, 10**9 + 812)
    assert "QuorumRecovered" in reasons(done)


def test_a_ready_member_pod_or_no_backup_refuses_the_rebuild_from_a_backup() -> None:
    desired, observed = formed()
    desired = consenting(desired, "b2")
    ready = dataclasses.replace(observed, etcd=None, latest_backup=BACKUP)
    refused = plan(desired, ready, SETTINGS, at(100))
    assert not [a for a in refused if isinstance(a, DeletePVC | DeletePod)]
    message = next(e.message for e in events(refused) if e.reason == "QuorumRecoveryRejected")
    assert "are Ready: the operator may only be cut off" in message
    none = dataclasses.replace(all_gone(observed), latest_backup=None)
    refused = plan(consenting(desired, "b3"), none, SETTINGS, at(101))
    message = next(e.message for e in events(refused) if e.reason == "QuorumRecoveryRejected")
    assert "no member answers, and the cluster has no Succeeded EtcdBackup" in message
    assert not [a for a in refused if isinstance(a, DeletePVC | DeletePod | Apply)]


def test_automatic_never_rebuilds_from_a_backup() -> None:
    desired, observed = formed(recovery={"quorumLoss": "Automatic", "quorumLostAfterSeconds": 60})
    observed = all_gone(observed)
    desired, observed = execute(desired, observed, planned(desired, observed, 100))
    actions = planned(desired, observed, 100_000)
    assert not [a for a in actions if isinstance(a, DeletePVC | DeletePod | Apply)]
