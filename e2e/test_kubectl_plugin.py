"""``kubectl etcd``, end to end: the installed ``kubectl-etcd`` run by the real kubectl as its
plugin (found on PATH, as kubectl finds plugins), against the operator of the chart, a real
cluster and the S3 server of ``test_backups``.

One scenario, in the order a person on call uses the commands: ``status`` of a cluster (and the
list) says what its status says; ``backup --wait`` asks the operator through the annotation,
waits and prints what the EtcdBackup records; ``backups`` lists it newest first; ``restore
--dry-run`` prints the manifest and creates nothing; ``restore --into`` makes a new cluster
that comes up with the keys written before the backup, while the source stays as it was. Then
the refusals, each one line on stderr with its exit code: ``keyspace`` of a cluster without
spec.analysis (saying how to enable it), a cluster that does not exist, and a backup that fails
(a bucket that does not exist), with the reason from its status. The plugin gets
``--kubeconfig`` itself, so the pass-through is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from e2e import test_backups
from e2e.chart import OperatorRelease
from e2e.kube import Json, Kubectl, PodExec, eventually
from e2e.test_backups import S3, backed_up_cluster, merge_patch, store_of
from e2e.test_operator import etcdctl_get, etcdctl_put, start_client, wait_available

pytestmark = pytest.mark.any_cluster

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "kubectl-etcd"
BACKUP_ANNOTATION = "etcd.pyetcd.io/backup"

# The S3 server of the backup scenarios, for this module too (a module-scoped fixture).
s3 = test_backups.s3


def installed_plugin() -> Path | None:
    """``kubectl-etcd`` as installing the package puts it: on PATH, or beside this Python."""
    found = shutil.which(PLUGIN)
    if found:
        return Path(found)
    for folder in (Path(sys.executable).parent, ROOT / ".venv" / "bin"):
        if (folder / PLUGIN).is_file() and os.access(folder / PLUGIN, os.X_OK):
            return folder / PLUGIN
    return None


@dataclass(frozen=True)
class Plugin:
    """``kubectl etcd ...`` through the real kubectl, with the plugin on its PATH."""

    kubectl: Kubectl
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl.binary), "etcd", *args, f"--kubeconfig={self.kubectl.kubeconfig}"]
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def ok(self, *args: str, timeout: float = 60) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"kubectl etcd {' '.join(args)}: {done.stderr}"
        return done.stdout

    def refused(self, code: int, *args: str, timeout: float = 60) -> str:
        """The one line a refusal prints on stderr, after checking its exit code."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        last: str = done.stderr.splitlines()[-1]
        assert last.startswith(f"kubectl etcd {args[0]}: "), done.stderr
        return last


@pytest.fixture(scope="module")
def plugin(kubectl: Kubectl) -> Plugin:
    found = installed_plugin()
    if found is None:
        pytest.fail(
            f"{PLUGIN} is not installed: `.venv/bin/pip install -e '.[dev]'` (make setup) puts "
            "the console script beside the venv's python",
            pytrace=False,
        )
    # kubectl finds plugins on PATH; the plugin runs the kubectl it finds there: this one.
    path = os.pathsep.join([str(found.parent), str(kubectl.binary.parent), os.environ["PATH"]])
    made = Plugin(kubectl, {**os.environ, "PATH": path})
    listed = subprocess.run(
        [str(kubectl.binary), "plugin", "list", "--name-only"],
        capture_output=True, text=True, env=made.env, timeout=60, check=False,
    )  # fmt: skip
    assert PLUGIN in listed.stdout.split(), listed
    helped = made.run("--help")
    if helped.returncode != 0:
        pytest.fail(f"{found} does not run: {helped.stderr.strip()}", pytrace=False)
    return made


def status_of(kubectl: Kubectl, namespace: str, name: str) -> Json:
    found: Json = kubectl.get("etcdcluster", name, namespace)
    return found


# One plane: the plugin talks to the API server as any client does, whatever its storage.
@pytest.mark.one_storage
@pytest.mark.timeout(600)  # two clusters come up, and two backups run
def test_kubectl_etcd_status_backup_backups_and_restore_into_a_new_cluster(
    pod_exec: PodExec,
    operator: OperatorRelease,
    namespace: str,
    s3: S3,
    plugin: Plugin,
) -> None:
    kubectl = plugin.kubectl
    cluster, bucket = backed_up_cluster(kubectl, namespace, s3)
    start_client(kubectl, namespace)
    eventually(
        "etcdctl put before the backup",
        lambda: etcdctl_put(pod_exec, namespace, cluster, "plugin-key", "before-the-backup"),
    )
    ns = f"--namespace={namespace}"

    # status: what the status says, at a glance and as data.
    current = status_of(kubectl, namespace, cluster)["status"]
    page = plugin.ok("status", cluster, ns)
    assert f"Cluster:    {namespace}/{cluster}" in page, page
    assert f"Phase:      {current['phase']}" in page, page
    assert f"Leader:     {current['leader']}" in page, page
    data = json.loads(plugin.ok("status", cluster, ns, "-o", "json"))
    assert data["leader"] == current["leader"] == f"{cluster}-0"
    assert [(m["name"], m["role"], m["healthy"]) for m in data["members"]] == [
        (f"{cluster}-0", "leader", True)
    ]
    assert {c["type"] for c in data["conditions"]} >= {"Available", "Progressing", "Degraded"}
    listing = plugin.ok("status", ns).splitlines()
    assert listing[0].split()[:3] == ["NAME", "PHASE", "VERSION"], listing
    assert [line.split()[0] for line in listing[1:]] == [cluster], listing

    # backup --wait: through the annotation, waited for, and what the EtcdBackup records.
    done = plugin.run("backup", cluster, ns, "--wait", "--timeout=3m", timeout=240)
    assert done.returncode == 0, done.stderr
    shown = dict(
        (key.strip(), value.strip())
        for key, value in (line.split(":", 1) for line in done.stdout.splitlines())
    )
    name = shown["EtcdBackup"]
    stored = kubectl.get("etcdbackup", name, namespace)["status"]
    assert shown["Phase"] == stored["phase"] == "Succeeded", stored
    assert shown["Revision"] == str(stored["revision"])
    assert shown["Location"] == stored["location"]
    assert stored["location"].startswith(f"s3://{bucket}/")
    request = status_of(kubectl, namespace, cluster)["metadata"]["annotations"][BACKUP_ANNOTATION]
    assert request.startswith("kubectl-etcd-") and request in done.stderr
    acted = status_of(kubectl, namespace, cluster)["status"]["backup"]
    assert acted["lastRequest"] == request

    # backups: newest first, as a table and as data.
    table = plugin.ok("backups", cluster, ns).splitlines()
    assert table[0].split() == [
        "NAME", "PHASE", "REVISION", "SIZE", "STARTED", "COMPLETED", "LOCATION",
    ]  # fmt: skip
    assert table[1].split()[:3] == [name, "Succeeded", str(stored["revision"])], table
    listed = json.loads(plugin.ok("backups", cluster, ns, "-o", "json"))
    assert listed[0]["name"] == name and listed[0]["sizeBytes"] == stored["sizeBytes"]

    # restore --dry-run: the manifest, nothing created.
    before = status_of(kubectl, namespace, cluster)
    restore = ["restore", cluster, f"--from={name}", "--into=restored", ns]
    manifest = yaml.safe_load(plugin.ok(*restore, "--dry-run"))
    assert manifest["metadata"] == {"name": "restored", "namespace": namespace}
    assert manifest["spec"]["bootstrap"] == {"backup": {"name": name}}
    assert manifest["spec"]["backup"]["store"] == before["spec"]["backup"]["store"]
    assert not kubectl.exists("etcdcluster", "restored", namespace)

    # restore --into: a new cluster from the backup, with the keys written before it.
    created = plugin.run(*restore)
    assert created.returncode == 0, created.stderr
    assert "EtcdCluster restored created" in created.stdout
    # The example's spread constraint selects its own members: the copy's selects the copy's.
    assert "now select restored's" in created.stderr, created.stderr
    wait_available(kubectl, namespace, "restored", 1)
    restored = status_of(kubectl, namespace, "restored")
    assert restored["status"]["restoredFrom"]["backup"] == name
    spread = restored["spec"]["podTemplate"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["etcd.pyetcd.io/cluster"] == "restored"
    got = eventually(
        "the key written before the backup, in the restored cluster",
        lambda: etcdctl_get(pod_exec, namespace, "restored", "plugin-key") or None,
    )
    assert got == "before-the-backup"
    assert f"Restored from: {name} (" in plugin.ok("status", "restored", ns)
    after = status_of(kubectl, namespace, cluster)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]

    # Refusals: one line on stderr each, with its exit code.
    line = plugin.refused(2, "keyspace", cluster, ns)
    assert line.startswith(
        f"kubectl etcd keyspace: EtcdCluster {cluster} has no keyspace analysis: set spec.analysis"
    ), line
    line = plugin.refused(1, "status", "no-such-cluster", ns)
    assert line == f"kubectl etcd status: no EtcdCluster no-such-cluster in namespace {namespace}"
    line = plugin.refused(1, *restore)
    assert "EtcdCluster restored already exists" in line, line

    # A backup that fails: exit 1 with the reason from its status.
    merge_patch(kubectl, namespace, cluster, {"store": store_of(s3, "no-such-bucket")})
    done = plugin.run("backup", cluster, ns, "--wait", "--timeout=3m", timeout=240)
    assert done.returncode == 1, (done.stdout, done.stderr)
    last = done.stderr.splitlines()[-1]
    assert last.startswith("kubectl etcd backup: EtcdBackup ") and "NoSuchBucket" in last, last
    assert "Phase:      Failed (NoSuchBucket)" in done.stdout, done.stdout
