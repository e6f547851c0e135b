"""Each command's flow against a fake kubectl: what it reads and writes, what it prints; the
backup wait against a simulated operator that moves between polls, with a fake clock."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from etcd_operator.api.analysis import (
    AnalysisSpec,
    AnalysisTrigger,
    BiggestKey,
    HottestKey,
    KeyspaceAnalysisPhase,
    KeyspaceAnalysisRun,
    KeyspacePrefix,
    KeyspaceStatus,
    KeyWrites,
    PrefixWrites,
    WritesStatus,
)
from etcd_operator.api.backup import PointInTime
from etcd_operator.api.operation import OperationPhase
from etcd_operator.plugin import commands
from etcd_operator.plugin.commands import POLL_INTERVAL
from etcd_operator.plugin.errors import (
    AlreadyExistsError,
    NotAvailableError,
    NotFoundError,
    PluginError,
)
from etcd_operator.plugin.kubectl import BACKUPS, CLUSTERS
from etcd_operator.plugin.restore import RestoreRefusedError
from etcd_operator.reconcile.backup_requests import BACKUP_ANNOTATION, on_demand_backup_name

from tests.unit.operator.plugin.fake import FakeClock, FakeKubectl, session
from tests.unit.operator.plugin.objects import cluster, etcd_backup, running_status

Json = dict[str, Any]

# What `backup` annotates with, given the fake session's clock and token.
REQUEST = "kubectl-etcd-20261206-120530-abcd1234"
REQUESTED = on_demand_backup_name("main", REQUEST)


def world(*clusters: Json, backups: tuple[Json, ...] = ()) -> FakeKubectl:
    fake = FakeKubectl()
    for obj in clusters:
        fake.add(CLUSTERS, obj)
    for obj in backups:
        fake.add(BACKUPS, obj)
    return fake


def writes(fake: FakeKubectl) -> list[list[str]]:
    return [call for call in fake.calls if call[0] != "get"]


def test_status_of_one_cluster() -> None:
    fake = world(cluster(status=running_status()))
    run = session(fake)
    assert commands.status(run.session, "main") == 0
    assert fake.calls == [
        ["get", "etcdclusters.etcd.pyetcd.io", "main", "--namespace=prod", "--output=json"]
    ]
    page = run.out.getvalue()
    assert "Phase:      Running" in page and "Leader:     main-1" in page
    assert "main-2   fd422379fda50e48   learner" in page
    assert run.err.getvalue() == ""


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_status_of_one_cluster_as_data(fmt: str) -> None:
    run = session(world(cluster(status=running_status())), output=fmt)
    commands.status(run.session, "main")
    data = json.loads(run.out.getvalue()) if fmt == "json" else yaml.safe_load(run.out.getvalue())
    assert data["phase"] == "Running" and data["leader"] == "main-1"
    assert [(m["name"], m["role"]) for m in data["members"]] == [
        ("main-0", "follower"),
        ("main-1", "leader"),
        ("main-2", "learner"),
    ]
    assert data["backup"]["lastFailure"]["message"] == "AccessDenied: the store refused the upload"


def test_status_lists_the_namespaces_clusters_or_every_namespaces() -> None:
    fake = world(
        cluster("zeta", status=running_status("zeta")),
        cluster("alpha"),
        cluster("elsewhere", "dev"),
    )
    here = session(fake)
    commands.status(here.session, None)
    lines = here.out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "alpha", "zeta"]
    every = session(fake)
    commands.status(every.session, None, all_namespaces=True)
    assert fake.calls[-1] == ["get", CLUSTERS, "--all-namespaces", "--output=json"]
    rows = [line.split()[:2] for line in every.out.getvalue().splitlines()]
    assert rows == [
        ["NAMESPACE", "NAME"],
        ["dev", "elsewhere"],
        ["prod", "alpha"],
        ["prod", "zeta"],
    ]


def test_status_of_an_empty_namespace_says_so_on_stderr() -> None:
    run = session(world(), namespace="empty")
    assert commands.status(run.session, None) == 0
    assert run.out.getvalue() == ""
    assert run.err.getvalue() == "no EtcdClusters in namespace empty\n"
    as_json = session(world(), output="json")
    commands.status(as_json.session, None)
    assert json.loads(as_json.out.getvalue()) == []


def test_status_of_a_missing_cluster() -> None:
    with pytest.raises(NotFoundError, match="no EtcdCluster nope in namespace prod"):
        commands.status(session(world()).session, "nope")


def test_backup_without_wait_annotates_with_a_fresh_value_and_names_the_backup() -> None:
    source = cluster(status=running_status())
    fake = world(source)
    run = session(fake)
    assert commands.backup(run.session, "main", wait=False, timeout=600) == 0
    assert writes(fake) == [
        ["annotate", CLUSTERS, "main", f"{BACKUP_ANNOTATION}={REQUEST}", "--overwrite",
         "--namespace=prod"],
    ]  # fmt: skip
    annotations = fake.object(CLUSTERS, "main")["metadata"]["annotations"]
    assert annotations[BACKUP_ANNOTATION] == REQUEST != source["status"]["backup"]["lastRequest"]
    assert run.out.getvalue() == (
        f"EtcdBackup {REQUESTED} requested; follow it with: kubectl etcd backups main\n"
    )
    assert f"{BACKUP_ANNOTATION}={REQUEST}" in run.err.getvalue()


def test_backup_refuses_a_cluster_without_a_backup_store() -> None:
    fake = world(cluster(backup=False))
    with pytest.raises(PluginError, match=r"main has no spec\.backup"):
        commands.backup(session(fake).session, "main", wait=True, timeout=600)
    assert writes(fake) == []


class Operator:
    """What the operator does with a backup request, one step per poll interval: records the
    request and creates the EtcdBackup, runs it, ends it as told."""

    def __init__(self, fake: FakeKubectl, end: Json) -> None:
        self.fake = fake
        self.end = end
        self.steps: list[Callable[[], None]] = [self.create, self.run, self.finish]

    def __call__(self) -> None:
        annotations = self.fake.object(CLUSTERS, "main")["metadata"].get("annotations") or {}
        if annotations.get(BACKUP_ANNOTATION) == REQUEST and self.steps:
            self.steps.pop(0)()

    def create(self) -> None:
        main = self.fake.object(CLUSTERS, "main")
        main["status"]["backup"]["lastRequest"] = REQUEST
        self.fake.add(BACKUPS, etcd_backup(REQUESTED, phase=OperationPhase.PENDING))

    def run(self) -> None:
        self.fake.object(BACKUPS, REQUESTED)["status"]["phase"] = "Running"

    def finish(self) -> None:
        self.fake.add(BACKUPS, self.end)


def test_backup_waits_for_success_and_prints_what_it_stored() -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()
    clock.world = Operator(fake, etcd_backup(REQUESTED))
    run = session(fake, clock)
    assert commands.backup(run.session, "main", wait=True, timeout=600) == 0
    out = run.out.getvalue()
    assert f"EtcdBackup: {REQUESTED}" in out
    assert "Revision:   48213" in out and "Size:       892.0KiB" in out
    assert f"Location:   s3://etcd-backups/prod/main/{REQUESTED}.db.zst" in out
    progress = run.err.getvalue().splitlines()[1:]
    assert progress == [
        f"waiting: the operator has not acted on the request yet (EtcdBackup {REQUESTED} does "
        "not exist): it waits for the cluster to have formed; is the operator running?",
        f"waiting: EtcdBackup {REQUESTED} is Pending",
        f"waiting: EtcdBackup {REQUESTED} is Running",
    ]
    assert clock.sleeps == [POLL_INTERVAL] * 3  # one poll per step of the operator
    assert writes(fake)[0][0] == "annotate" and len(writes(fake)) == 1


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_backup_wait_as_data(fmt: str) -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()
    clock.world = Operator(fake, etcd_backup(REQUESTED))
    run = session(fake, clock, output=fmt)
    commands.backup(run.session, "main", wait=True, timeout=600)
    data = yaml.safe_load(run.out.getvalue())  # JSON is YAML too
    assert (data["name"], data["phase"], data["revision"]) == (REQUESTED, "Succeeded", 48213)
    assert data["sizeBytes"] == 913408 and data["location"].endswith(f"{REQUESTED}.db.zst")


def test_a_failed_backup_exits_non_zero_with_the_reason_from_its_status() -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()
    failed = etcd_backup(
        REQUESTED,
        phase=OperationPhase.FAILED,
        reason="NoSuchBucket",
        message="bucket etcd-backups does not exist",
    )
    clock.world = Operator(fake, failed)
    run = session(fake, clock)
    with pytest.raises(PluginError) as raised:
        commands.backup(run.session, "main", wait=True, timeout=600)
    assert str(raised.value) == (
        f"EtcdBackup {REQUESTED} Failed: NoSuchBucket: bucket etcd-backups does not exist"
    )
    assert "Phase:      Failed (NoSuchBucket)" in run.out.getvalue()


def test_a_wait_that_times_out_says_where_it_stuck_and_polls_until_the_deadline() -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()  # no operator: nothing ever acts on the request
    start = clock.now
    run = session(fake, clock)
    with pytest.raises(PluginError) as raised:
        commands.backup(run.session, "main", wait=True, timeout=61, timeout_text="61s")
    assert str(raised.value).startswith("timed out after 61s: the operator has not acted")
    assert clock.now == start + 61  # the last sleep is cut to the deadline
    assert clock.sleeps == [POLL_INTERVAL] * 30 + [1.0]
    polls = [c for c in fake.calls if c[:2] == ["get", BACKUPS]]
    assert len(polls) == 32
    assert run.out.getvalue() == ""


def test_a_wait_for_a_backup_stuck_running_times_out_naming_its_phase() -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()
    operator = Operator(fake, etcd_backup(REQUESTED))
    operator.steps = operator.steps[:2]  # created and running, never ends
    clock.world = operator
    with pytest.raises(
        PluginError, match=f"timed out after 10m: EtcdBackup {REQUESTED} is Running"
    ):
        commands.backup(session(fake, clock).session, "main", wait=True, timeout=600)


def test_a_cluster_deleted_during_the_wait_ends_it() -> None:
    fake = world(cluster(status=running_status()))
    clock = FakeClock()

    def delete() -> None:
        del fake.objects[(CLUSTERS, "prod", "main")]

    clock.world = delete
    with pytest.raises(PluginError, match="EtcdCluster was deleted before EtcdBackup"):
        commands.backup(session(fake, clock).session, "main", wait=True, timeout=600)
    assert len(clock.sleeps) == 1


def test_backups_lists_the_clusters_backups_newest_first() -> None:
    fake = world(
        backups=(
            etcd_backup("main-20261206-0600", created="2026-12-06T06:00:00Z"),
            etcd_backup("other-1", cluster="other"),
            etcd_backup("by-hand", created="2026-12-06T09:00:00Z", trigger=None),
            etcd_backup("main-elsewhere", namespace="dev"),
        )
    )
    run = session(fake)
    assert commands.backups(run.session, "main") == 0
    names = [line.split()[0] for line in run.out.getvalue().splitlines()]
    assert names == ["NAME", "by-hand", "main-20261206-0600"]
    as_json = session(fake, output="json")
    commands.backups(as_json.session, "main")
    assert [b["name"] for b in json.loads(as_json.out.getvalue())] == [
        "by-hand",
        "main-20261206-0600",
    ]


def test_backups_of_a_cluster_without_any_says_so_and_needs_no_cluster() -> None:
    fake = world()
    run = session(fake)
    assert commands.backups(run.session, "gone") == 0
    assert run.err.getvalue() == "no EtcdBackups of cluster gone in namespace prod\n"
    assert fake.verbs() == ["get"]


def restore_world() -> FakeKubectl:
    return world(
        cluster(status=running_status()),
        cluster("taken", backup=False),
        backups=(etcd_backup("main-20261206-1200"),),
    )


def test_restore_dry_run_prints_the_manifest_and_creates_nothing() -> None:
    fake = restore_world()
    run = session(fake)
    assert commands.restore(run.session, "main", "main-20261206-1200", "copy", True) == 0
    manifest = yaml.safe_load(run.out.getvalue())
    assert manifest["metadata"] == {"name": "copy", "namespace": "prod"}
    assert manifest["spec"]["bootstrap"] == {"backup": {"name": "main-20261206-1200"}}
    assert manifest["spec"]["backup"]["schedule"] == "0 */6 * * *"
    assert writes(fake) == []
    as_json = session(fake, output="json")
    commands.restore(as_json.session, "main", "main-20261206-1200", "copy", True)
    assert json.loads(as_json.out.getvalue()) == manifest


def test_restore_creates_the_new_cluster_and_leaves_the_source_alone() -> None:
    fake = restore_world()
    before = copy.deepcopy(fake.objects)
    run = session(fake)
    assert commands.restore(run.session, "main", "main-20261206-1200", "copy", False) == 0
    assert writes(fake) == [["create", "--filename=-", "--namespace=prod", "--output=json"]]
    created = json.loads(fake.inputs[-1] or "")
    assert created["metadata"]["name"] == "copy"
    assert created["spec"]["bootstrap"] == {"backup": {"name": "main-20261206-1200"}}
    del fake.objects[(CLUSTERS, "prod", "copy")]
    assert fake.objects == before
    assert run.out.getvalue() == (
        "EtcdCluster copy created from EtcdBackup main-20261206-1200 with the spec of main; "
        "follow it with: kubectl etcd status copy\n"
    )


def test_restore_prints_its_notes_on_stderr() -> None:
    fake = world(
        cluster(replicas=0),
        backups=(etcd_backup("main-1", phase=OperationPhase.RUNNING),),
    )
    run = session(fake)
    commands.restore(run.session, "main", "main-1", "copy", True)
    notes = run.err.getvalue().splitlines()
    assert len(notes) == 2 and all(n.startswith("note: ") for n in notes)
    assert "is Running" in notes[0] and "hibernated" in notes[1]


def test_restore_into_an_existing_cluster_is_refused_by_the_api_server() -> None:
    fake = restore_world()
    with pytest.raises(AlreadyExistsError, match="EtcdCluster taken already exists"):
        commands.restore(session(fake).session, "main", "main-20261206-1200", "taken", False)
    assert fake.object(CLUSTERS, "taken")["spec"].get("bootstrap") is None


def test_restore_needs_the_source_and_the_backup_and_refuses_a_failed_one() -> None:
    fake = restore_world()
    fake.add(BACKUPS, etcd_backup("main-bad", phase=OperationPhase.FAILED))
    with pytest.raises(NotFoundError, match="no EtcdCluster gone"):
        commands.restore(session(fake).session, "gone", "main-20261206-1200", "copy", False)
    with pytest.raises(NotFoundError, match="no EtcdBackup nope"):
        commands.restore(session(fake).session, "main", "nope", "copy", False)
    with pytest.raises(RestoreRefusedError, match="is Failed"):
        commands.restore(session(fake).session, "main", "main-bad", "copy", False)
    assert writes(fake) == []


KEYSPACE = KeyspaceStatus(
    backup="main-20261206-1200",
    revision=48213,
    analyzedAt="2026-12-06T12:01:30Z",
    liveKeys=1200,
    liveBytes=3 * 1024 * 1024,
    dbSize=20 * 1024 * 1024,
    dbSizeInUse=16 * 1024 * 1024,
    prefixes=[
        KeyspacePrefix(
            prefix="/registry/events/", liveKeys=900, liveBytes=2 << 20, storedBytes=9 << 20
        ),
        KeyspacePrefix(
            prefix="/registry/pods/", liveKeys=300, liveBytes=1 << 20, storedBytes=3 << 20
        ),
    ],
    leasesWithoutKeys=2,
    biggestKey=BiggestKey(key="/registry/configmaps/default/big", valueSize=1 << 20),
    hottestKey=HottestKey(key="/registry/leases/kube-system/scheduler", revisions=300),
    report="s3://etcd-backups/prod/main/main-20261206-1200.db.zst.keyspace.json",
    lastRun=KeyspaceAnalysisRun(
        phase=KeyspaceAnalysisPhase.SUCCEEDED,
        trigger=AnalysisTrigger.SCHEDULE,
        backup="main-20261206-1200",
        startedAt="2026-12-06T12:01:00Z",
        completedAt="2026-12-06T12:01:30Z",
        reason="Analyzed",
        message="revision 48213: 1200 live keys",
    ),
    nextScheduledTime="2026-12-07T00:00:00Z",
)


def analysed(keyspace: KeyspaceStatus | None = KEYSPACE) -> Json:
    status = running_status().model_copy(update={"keyspace": keyspace})
    return cluster(status=status, analysis=AnalysisSpec(schedule="@daily"))


def test_keyspace_prints_the_last_analysis() -> None:
    fake = world(analysed())
    run = session(fake)
    assert commands.keyspace(run.session, "main") == 0
    assert writes(fake) == []
    page = run.out.getvalue()
    assert "Cluster:             prod/main" in page
    assert "Backup:              main-20261206-1200 (revision 48213)" in page
    assert "Analyzed:            2026-12-06T12:01:30Z (4m ago)" in page
    assert "Live keys:           1200, 3.0MiB (keys and values)" in page
    assert "DB size:             20.0MiB, 16.0MiB in use" in page
    assert "Leases without keys: 2" in page
    assert "Biggest key:         /registry/configmaps/default/big (1.0MiB value)" in page
    assert "Hottest key:         /registry/leases/kube-system/scheduler (300 revisions)" in page
    assert "Report:              s3://etcd-backups/prod/main/main-20261206-1200" in page
    assert "Last run:            Succeeded (Analyzed), Schedule, backup main-20261206-1200" in page
    lines = page.splitlines()
    head = lines.index("PREFIX              LIVE KEYS   LIVE BYTES   STORED BYTES")
    assert lines[head + 1].split() == ["/registry/events/", "900", "2.0MiB", "9.0MiB"]
    assert lines[head + 2].split() == ["/registry/pods/", "300", "1.0MiB", "3.0MiB"]


WRITES = WritesStatus(
    sampledAt="2026-12-06T12:04:00Z",
    windowSeconds=30,
    fromRevision=48300,
    toRevision=48900,
    writes=600,
    prefixes=[
        PrefixWrites(prefix="/registry/leases/", writes=450),
        PrefixWrites(prefix="/registry/events/", writes=150),
    ],
    hottestKey=KeyWrites(key="/registry/leases/kube-node-lease/node-1", writes=150),
)


def test_keyspace_shows_the_live_clusters_last_write_window() -> None:
    page = session(world(analysed(KEYSPACE.model_copy(update={"writes": WRITES}))))
    assert commands.keyspace(page.session, "main") == 0
    text = page.out.getvalue()
    assert "Writes on the live cluster (last window of its sampled watch):" in text
    assert "Window:      30s from 2026-12-06T12:04:00Z (90s ago), revisions 48300 to 48900" in text
    assert "Hottest key: /registry/leases/kube-node-lease/node-1 (150 writes)" in text
    lines = text.splitlines()
    head = lines.index("PREFIX              WRITES   PER SECOND")
    assert lines[head + 1].split() == ["/registry/leases/", "450", "15.0"]
    assert lines[head + 2].split() == ["/registry/events/", "150", "5.0"]
    # Sampling alone (no backup analysed yet) is shown too, not refused.
    alone = session(world(analysed(KeyspaceStatus(writes=WRITES))))
    assert commands.keyspace(alone.session, "main") == 0
    assert "Writes:      600" in alone.out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_keyspace_as_json_and_yaml(fmt: str) -> None:
    fake = world(analysed())
    run = session(fake, output=fmt)
    assert commands.keyspace(run.session, "main") == 0
    text = run.out.getvalue()
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert (data["cluster"], data["backup"], data["liveKeys"]) == ("main", KEYSPACE.backup, 1200)
    assert data["prefixes"][0] == {
        "prefix": "/registry/events/",
        "liveKeys": 900,
        "liveBytes": 2 << 20,
        "storedBytes": 9 << 20,
    }
    assert data["hottestKey"] == "/registry/leases/kube-system/scheduler"
    assert data["hottestRevisions"] == 300
    assert data["lastRun"]["phase"] == "Succeeded"


def test_a_failed_run_after_a_success_is_shown_beside_the_summary() -> None:
    assert KEYSPACE.lastRun is not None
    failed = KEYSPACE.lastRun.model_copy(
        update={
            "phase": KeyspaceAnalysisPhase.FAILED,
            "reason": "CorruptBackup",
            "message": "s3://etcd-backups/x is corrupt",
            "backup": "main-20261206-1800",
            "completedAt": "2026-12-06T12:04:30Z",
        }
    )
    run = session(world(analysed(KEYSPACE.model_copy(update={"lastRun": failed}))))
    commands.keyspace(run.session, "main")
    page = run.out.getvalue()
    assert "Backup:              main-20261206-1200 (revision 48213)" in page
    assert (
        "Last run:            Failed (CorruptBackup), Schedule, backup main-20261206-1800, at "
        "2026-12-06T12:04:30Z (60s ago): s3://etcd-backups/x is corrupt"
    ) in page


def test_keyspace_is_refused_saying_how_to_enable_it() -> None:
    fake = world(cluster())
    with pytest.raises(NotAvailableError) as raised:
        commands.keyspace(session(fake).session, "main")
    assert raised.value.exit_code == 2
    message = str(raised.value)
    assert message.startswith("EtcdCluster main has no keyspace analysis: set spec.analysis")
    assert "kubectl patch etcdcluster main --type=merge" in message
    assert "kubectl annotate etcdcluster main etcd.pyetcd.io/analyze=now --overwrite" in message
    assert writes(fake) == []


@pytest.mark.parametrize(
    ("run", "says"),
    [
        (None, "no keyspace analysis of main yet (none has run yet)"),
        (
            KeyspaceAnalysisRun(
                phase=KeyspaceAnalysisPhase.FAILED,
                trigger=AnalysisTrigger.ANNOTATION,
                startedAt="2026-12-06T12:00:00Z",
                completedAt="2026-12-06T12:00:00Z",
                reason="NoSuccessfulBackup",
                message="no successful EtcdBackup of main yet",
            ),
            "(the last run Failed: NoSuccessfulBackup: no successful EtcdBackup of main yet)",
        ),
        (
            KeyspaceAnalysisRun(
                phase=KeyspaceAnalysisPhase.RUNNING,
                trigger=AnalysisTrigger.ANNOTATION,
                backup="main-20261206-1200",
                startedAt="2026-12-06T12:05:00Z",
            ),
            "(one is running since 2026-12-06T12:05:00Z (backup main-20261206-1200))",
        ),
    ],
)
def test_keyspace_before_the_first_success_says_what_happened(
    run: KeyspaceAnalysisRun | None, says: str
) -> None:
    keyspace = KeyspaceStatus(lastRun=run) if run is not None else None
    with pytest.raises(NotAvailableError) as raised:
        commands.keyspace(session(world(analysed(keyspace))).session, "main")
    assert says in str(raised.value)
    assert str(raised.value).endswith(
        "; ask for one with kubectl annotate etcdcluster main etcd.pyetcd.io/analyze=now "
        "--overwrite"
    )


def pitr_world() -> FakeKubectl:
    return world(
        cluster(status=running_status()),
        backups=(
            etcd_backup("main-0600", created="2026-12-06T06:00:00Z", revision=100),
            etcd_backup("main-1200", created="2026-12-06T12:00:00Z", revision=200),
            etcd_backup("main-1800", created="2026-12-06T18:00:00Z", revision=300),
            etcd_backup("main-1900", created="2026-12-06T19:00:00Z", phase=OperationPhase.FAILED),
        ),
    )


@pytest.mark.parametrize(
    ("point", "picked"),
    [
        (PointInTime(revision=250), "main-1200"),
        (PointInTime(revision=300), "main-1800"),
        (PointInTime(time="2026-12-06T12:30:00Z"), "main-1200"),
        (PointInTime(time="2026-12-06T13:30:00+01:00"), "main-1200"),
        (PointInTime(time="2026-12-06T20:00:00Z"), "main-1800"),
    ],
)
def test_a_point_in_time_restore_starts_from_the_newest_backup_before_it(
    point: PointInTime, picked: str
) -> None:
    run = session(pitr_world())
    assert commands.restore(run.session, "main", None, "copy", True, point=point) == 0
    manifest = yaml.safe_load(run.out.getvalue())
    want = point.model_dump(mode="json", exclude_none=True)
    assert manifest["spec"]["bootstrap"] == {"backup": {"name": picked, "pointInTime": want}}
    assert f"restoring from EtcdBackup {picked}, the newest before {point}" in run.err.getvalue()


def test_a_point_before_every_backup_is_refused_saying_what_there_is() -> None:
    with pytest.raises(RestoreRefusedError) as refused:
        commands.restore(
            session(pitr_world()).session, "main", None, "copy", True,
            point=PointInTime(revision=50),
        )  # fmt: skip
    assert str(refused.value) == (
        "no backup of main was taken before revision 50: the oldest Succeeded backup is "
        "main-0600 (revision 100, 2026-12-06T06:00:04Z)"
    )


def test_a_named_backup_with_a_point_is_used_as_named() -> None:
    run = session(pitr_world())
    point = PointInTime(revision=350)
    assert commands.restore(run.session, "main", "main-1200", "copy", True, point=point) == 0
    bootstrap = yaml.safe_load(run.out.getvalue())["spec"]["bootstrap"]["backup"]
    assert bootstrap == {"name": "main-1200", "pointInTime": {"revision": 350}}
