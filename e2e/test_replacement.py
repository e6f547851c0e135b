"""Members whose data is gone are replaced, end to end, with a writer running throughout.

On the built control plane with the process kubelet's faults: a member's volume wiped under it
(and its process killed, as a disk swap or a node rebuilt from scratch would), and a member's
volume claim deleted with its pod (a local volume lost with its node). Each time the member
stops by itself (pyetcd refuses to rejoin under its old ID with an empty data dir), the
operator removes it from etcd, deletes its claim and pod, adds it back as a learner on the new
volume and promotes it. The cluster ends Available with three voters, every member holds the
same data (HashKV), and no write the writer saw acknowledged is missing.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest

from e2e.chart import OperatorRelease
from e2e.etcdclusters import CLIENT_POD, client_endpoint
from e2e.kube import Kubectl, PodExec, eventually
from e2e.kubelet.faults import KubeletHandle
from e2e.test_operator import etcdctl_put, example, start_client, wait_available

Json = dict[str, Any]


class Writer:
    """Puts ``w<n>`` keys through the client Service until stopped; remembers the
    acknowledged ones."""

    def __init__(self, pod_exec: PodExec, namespace: str, name: str) -> None:
        self.pod_exec, self.namespace, self.name = pod_exec, namespace, name
        self.acked: list[str] = []
        self.acked_at: list[float] = []  # time.monotonic() of each acknowledgement
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        endpoint = client_endpoint(self.name, self.namespace)
        while not self._stop.is_set():
            key = f"w{n:05d}"
            argv = ["etcdctl", endpoint, "--command-timeout=5s", "put", key, str(n)]
            done = self.pod_exec.exec(self.namespace, CLIENT_POD, argv, timeout=20)
            if done.code == 0:
                self.acked.append(key)
                self.acked_at.append(time.monotonic())
            else:
                self.failed += 1
            n += 1

    def longest_gap(self, outside: tuple[float, float] | None = None) -> float:
        """The longest time (s) between two acknowledged writes: how long the cluster took no
        write, at most; ``outside``: ignoring gaps that overlap that (monotonic) window."""
        pairs = list(zip(self.acked_at, self.acked_at[1:], strict=False))
        if outside is not None:
            start, end = outside
            pairs = [(a, b) for a, b in pairs if b < start or a > end]
        return max((b - a for a, b in pairs), default=0.0)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


# etcdctl's words when it reached no member through the client Service: its endpoints follow
# pods that just became Ready (or just went), so a read right after a wait is retried on these.
NOT_CONNECTED = ("waiting for connections to become ready", "connection refused", "Unavailable")


def etcdctl_json(pod_exec: PodExec, namespace: str, name: str, *args: str) -> Any:
    """etcdctl's JSON answer through the client Service; retried for up to a minute while it
    reaches no member, and any other failure fails the test."""
    argv = ["etcdctl", client_endpoint(name, namespace), *args, "-w", "json"]

    def answered() -> Any:
        done = pod_exec.exec(namespace, CLIENT_POD, argv, timeout=30)
        if done.code != 0 and any(words in done.stderr for words in NOT_CONNECTED):
            return None
        assert done.code == 0, done.stderr
        return json.loads(done.stdout)

    return eventually(f"an answer to etcdctl {' '.join(args)}", answered, interval=2)


def assert_nothing_lost(pod_exec: PodExec, namespace: str, name: str, writer: Writer) -> None:
    """Every write the writer saw acknowledged is there, and the three members hold the same
    data (HashKV)."""
    stored = etcdctl_json(pod_exec, namespace, name, "get", "w", "--prefix", "--keys-only")
    keys = {base64.b64decode(kv["key"]).decode() for kv in stored.get("kvs") or []}
    missing = [k for k in writer.acked if k not in keys]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:10]}"
    hashes = etcdctl_json(pod_exec, namespace, name, "endpoint", "hashkv", "--cluster")
    assert len(hashes) == 3, hashes
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1, hashes


def replaced(kubectl: Kubectl, namespace: str, name: str, count: int) -> Json | None:
    cluster: Json = kubectl.get("etcdcluster", name, namespace)
    status = cluster.get("status") or {}
    return cluster if int(status.get("membersReplaced") or 0) >= count else None


def diagnostics(kubectl: Kubectl, namespace: str, name: str) -> str:
    """The cluster's status and its pods' container states: what a failed wait shows."""
    cluster = kubectl.get("etcdcluster", name, namespace)
    pods = kubectl.json("get", "pods", f"--namespace={namespace}")["items"]
    states = {
        p["metadata"]["name"]: [
            {k: c.get(k) for k in ("name", "state", "lastState", "restartCount")}
            for c in [
                *((p.get("status") or {}).get("initContainerStatuses") or []),
                *((p.get("status") or {}).get("containerStatuses") or []),
            ]
        ]
        for p in pods
    }
    return json.dumps({"status": cluster.get("status"), "pods": states}, indent=1)[:12000]


def wait_replaced(kubectl: Kubectl, namespace: str, name: str, count: int) -> Json:
    try:
        found: Json = eventually(
            f"{count} member(s) replaced",
            lambda: replaced(kubectl, namespace, name, count),
            timeout=150,
            interval=2,
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnostics(kubectl, namespace, name)}") from None
    return found


def victim(kubectl: Kubectl, namespace: str, name: str, engine: str, spare: str = "") -> str:
    """The member to break: for pyetcd the leader (its refusal does not depend on who leads);
    for upstream etcd a follower. etcd 3.4 only notices a lost log when the leader that sends it
    heartbeats remembers how far it had replicated to it; a member that led loses its data
    with a leader change, and the new leader's fresh progress (match 0) lets the empty member
    rejoin under its old ID unnoticed: an etcd gap that docs/operations.md describes."""
    status = kubectl.get("etcdcluster", name, namespace)["status"]
    leader = str(status.get("leader") or "")
    names = sorted(str(m["name"]) for m in status["members"] if m["name"] != spare)
    if engine == "pyetcd" and leader in names:
        return leader
    return next(n for n in names if n != leader)


def member_ids(pod_exec: PodExec, namespace: str, name: str) -> dict[str, int]:
    listed = etcdctl_json(pod_exec, namespace, name, "member", "list")["members"]
    assert all(not m.get("isLearner") for m in listed), listed
    return {str(m.get("name")): int(m["ID"]) for m in listed}


def running(kubectl: Kubectl, pod_exec: PodExec, manifest: Json) -> dict[str, int]:
    """Apply a three-member cluster, wait until it is Available, start the client pod; the
    member IDs by name."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, name, 3)
    start_client(kubectl, namespace)
    return member_ids(pod_exec, namespace, name)


# The example to run and what its members say when they stop on lost data.
ENGINES = {
    "pyetcd": ("etcdcluster-pyetcd.yaml", "has already been bootstrapped"),
    "etcd": ("etcdcluster-etcd.yaml", "Was the raft log corrupted, truncated, or lost?"),
}


def test_members_that_lost_their_data_are_replaced_under_a_writer(
    engine: str,
    *,
    kubectl: Kubectl,
    pod_exec: PodExec,
    kubelet: KubeletHandle,
    operator: OperatorRelease,
    namespace: str,
) -> None:
    example_file, evidence = ENGINES[engine]
    manifest = example(example_file, namespace)
    name = manifest["metadata"]["name"]
    before = running(kubectl, pod_exec, manifest)

    with Writer(pod_exec, namespace, name) as writer:
        eventually("a first acknowledged write", lambda: len(writer.acked) > 3)

        # 1. The volume of member 1 wiped under it, then its process killed: it restarts on
        # an empty data dir.
        wiped = victim(kubectl, namespace, name, engine)
        kubelet.wipe(namespace, wiped, "data")
        kubelet.kill(namespace, wiped, "etcd")
        cluster = wait_replaced(kubectl, namespace, name, 1)
        last = cluster["status"]["lastReplacement"]
        assert last["member"] == wiped, last
        assert evidence in last["reason"], last
        assert int(last["oldID"], 16) == before[wiped]
        wait_available(kubectl, namespace, name, 3)

        # 2. Under the Manual policy, the volume claim of another member deleted with its pod:
        # the StatefulSet makes both anew, the new pod starts on an empty volume, and the
        # operator reports it and waits for the annotation.
        kubectl.run(
            "patch", "etcdcluster", name, f"--namespace={namespace}", "--type=merge",
            "--patch", json.dumps({"spec": {"replacement": {"policy": "Manual"}}}),
        )  # fmt: skip
        lost = victim(kubectl, namespace, name, engine, spare=wiped)
        kubectl.run("delete", "pvc", f"data-{lost}", f"--namespace={namespace}", "--wait=false")
        kubectl.run("delete", "pod", lost, f"--namespace={namespace}", "--wait=false")

        def waiting() -> str | None:
            cluster = kubectl.get("etcdcluster", name, namespace)
            for c in (cluster.get("status") or {}).get("conditions") or []:
                if c["type"] == "Degraded" and c["reason"] == "MemberDataLost":
                    return str(c["message"])
            return None

        message = eventually("Degraded/MemberDataLost", waiting, timeout=150, interval=2)
        assert f"etcd.pyetcd.io/replace-member={lost}" in message, message
        assert replaced(kubectl, namespace, name, 2) is None  # it waited
        kubectl.run(
            "annotate", "etcdcluster", name, f"--namespace={namespace}",
            f"etcd.pyetcd.io/replace-member={lost}",
        )  # fmt: skip
        cluster = wait_replaced(kubectl, namespace, name, 2)
        assert cluster["status"]["lastReplacement"]["approval"] == lost
        wait_available(kubectl, namespace, name, 3)
        acked_during = len(writer.acked)
        eventually("writes after the replacements", lambda: len(writer.acked) > acked_during + 3)

    after = member_ids(pod_exec, namespace, name)
    assert sorted(after) == sorted(before), after
    (kept,) = set(before) - {wiped, lost}
    assert after[kept] == before[kept]
    for replaced_member in (wiped, lost):
        assert after[replaced_member] != before[replaced_member], (before, after)

    assert_nothing_lost(pod_exec, namespace, name, writer)

    events = kubectl.json(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name},reason=MemberReplaced",
    )["items"]  # fmt: skip
    messages = [str(e["message"]) for e in events]
    for member in (wiped, lost):
        assert any(member in m for m in messages), messages


SSD_LABEL = "etcd.pyetcd.io/disk"


def pod_nodes(kubectl: Kubectl, namespace: str, selector: str | None = None) -> dict[str, str]:
    args = ["get", "pods", f"--namespace={namespace}"]
    if selector:
        args += ["-l", selector]
    return {
        p["metadata"]["name"]: str(p["spec"].get("nodeName") or "")
        for p in kubectl.json(*args)["items"]
    }


@pytest.mark.one_storage
@pytest.mark.timeout(480)  # the node's NotReady (about 30 s) and the grace (30 s) come on top
def test_a_member_whose_node_is_gone_with_its_local_volume_is_replaced_on_another_node(
    kubectl: Kubectl,
    pod_exec: PodExec,
    kubelet: KubeletHandle,
    operator: OperatorRelease,
    namespace: str,
) -> None:
    manifest = example("etcdcluster-pyetcd.yaml", namespace)
    manifest["spec"]["replacement"] = {"nodeLostAfterSeconds": 30}
    name = manifest["metadata"]["name"]
    # A fourth SSD node for the replacement to go to (one member per node).
    kubectl.run("label", "node", "node-d", f"{SSD_LABEL}=ssd", "--overwrite")
    stopped: str | None = None
    try:
        before = running(kubectl, pod_exec, manifest)
        members = pod_nodes(kubectl, namespace, f"app.kubernetes.io/instance={name}")
        # Not the node of the operator or of the client pod: they must outlive the fault.
        busy = set(pod_nodes(kubectl, operator.namespace).values())
        busy |= {pod_nodes(kubectl, namespace)[CLIENT_POD]}
        victim = next(m for m in sorted(members) if members[m] not in busy)
        stopped = members[victim]
        with Writer(pod_exec, namespace, name) as writer:
            eventually("a first acknowledged write", lambda: len(writer.acked) > 3)
            kubelet.stop_node(stopped)
            cluster = wait_replaced(kubectl, namespace, name, 1)
            last = cluster["status"]["lastReplacement"]
            assert last["member"] == victim, last
            assert f"node {stopped} not Ready" in last["reason"], last
            wait_available(kubectl, namespace, name, 3)
            acked = len(writer.acked)
            eventually("writes after the replacement", lambda: len(writer.acked) > acked + 3)
        moved = pod_nodes(kubectl, namespace, f"app.kubernetes.io/instance={name}")[victim]
        assert moved not in ("", stopped), moved
        after = member_ids(pod_exec, namespace, name)
        assert after[victim] != before[victim]
        assert {k: v for k, v in after.items() if k != victim} == {
            k: v for k, v in before.items() if k != victim
        }
        assert_nothing_lost(pod_exec, namespace, name, writer)
    finally:
        if stopped is not None:
            kubelet.start_node(stopped)
        kubectl.run("label", "node", "node-d", f"{SSD_LABEL}-")


def raft_indexes(pod_exec: PodExec, namespace: str, name: str) -> dict[int, int]:
    statuses = etcdctl_json(pod_exec, namespace, name, "endpoint", "status", "--cluster")
    return {
        int(s["Status"]["header"]["member_id"]): int(s["Status"]["raftIndex"]) for s in statuses
    }


def condition_of(kubectl: Kubectl, namespace: str, name: str, type_: str) -> Json:
    cluster = kubectl.get("etcdcluster", name, namespace)
    for c in (cluster.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


@pytest.mark.timeout(600)
def test_a_cluster_that_lost_two_of_three_members_is_rebuilt_from_the_survivor_with_consent(
    engine: str,
    *,
    kubectl: Kubectl,
    pod_exec: PodExec,
    operator: OperatorRelease,
    namespace: str,
) -> None:
    example_file, _ = ENGINES[engine]
    manifest = example(example_file, namespace)
    # Manual: the first member to come back empty must not be replaced before the second goes.
    manifest["spec"]["replacement"] = {"policy": "Manual"}
    name = manifest["metadata"]["name"]
    before = running(kubectl, pod_exec, manifest)
    keys = [f"q{i:03d}" for i in range(20)]
    for key in keys:
        assert etcdctl_put(pod_exec, namespace, name, key, key)
    # Every member holds every write (one raft index): whichever survives has them all.
    eventually(
        "every member at the same raft index",
        lambda: len(set(raft_indexes(pod_exec, namespace, name).values())) == 1,
    )
    status = kubectl.get("etcdcluster", name, namespace)["status"]
    survivor = next(m for m in sorted(before) if m != status.get("leader"))
    lost = sorted(m for m in before if m != survivor)
    # Two volumes lost for good, the leader's among them: the new pods start empty, and
    # member-init refuses them (their cluster lists them as started).
    for member in lost:
        kubectl.run("delete", "pvc", f"data-{member}", f"--namespace={namespace}", "--wait=false")
        kubectl.run("delete", "pod", member, f"--namespace={namespace}", "--wait=false")

    def quorum_lost() -> str | None:
        # (A survivor may name the old leader for an election timeout: "0 of 3 healthy" first.)
        available = condition_of(kubectl, namespace, name, "Available")
        message = str(available.get("message"))
        lost = available.get("reason") == "QuorumLost" and "surviving" in message
        return message if lost else None

    message = eventually("Available/QuorumLost", quorum_lost, timeout=180, interval=2)
    assert f"surviving {survivor}" in message and "etcd.pyetcd.io/recover-quorum" in message
    kubectl.run(
        "annotate", "etcdcluster", name, f"--namespace={namespace}",
        "etcd.pyetcd.io/recover-quorum=e2e-1",
    )  # fmt: skip

    def recovered() -> Json | None:
        cluster = kubectl.get("etcdcluster", name, namespace)
        record = (cluster.get("status") or {}).get("quorumRecovery") or {}
        assert record.get("phase") != "Failed", record
        return record if record.get("phase") == "Succeeded" else None

    try:
        record = eventually("the quorum recovered", recovered, timeout=240, interval=2)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnostics(kubectl, namespace, name)}") from None
    assert record["member"] == survivor and record["token"] == "e2e-1", record
    assert record["removed"] == lost, record
    assert record["revisionAfter"] == record["revisionBefore"], record
    wait_available(kubectl, namespace, name, 3, timeout=300)

    stored = etcdctl_json(pod_exec, namespace, name, "get", "q", "--prefix", "--keys-only")
    assert sorted(base64.b64decode(kv["key"]).decode() for kv in stored["kvs"]) == keys
    hashes = etcdctl_json(pod_exec, namespace, name, "endpoint", "hashkv", "--cluster")
    assert len(hashes) == 3 and len({h["HashKV"]["hash"] for h in hashes}) == 1, hashes
    after = member_ids(pod_exec, namespace, name)
    assert after[survivor] == before[survivor]
    assert all(after[m] != before[m] for m in lost), (before, after)
    events = kubectl.json(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name},reason=QuorumRecovered",
    )["items"]  # fmt: skip
    assert events and survivor in events[0]["message"], events
