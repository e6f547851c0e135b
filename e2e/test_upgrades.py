"""Changes that restart members roll one member at a time, health-gated, end to end.

One scenario per plane, on the plane's own engine (as the replacement scenarios): on the etcd
plane an upstream etcd cluster is upgraded 3.4 -> 3.5 (Debian's etcd 3.4.23, then the etcd
3.5.36 that `make etcd35` builds; the process kubelet picks the binary by image tag); on the
pyetcd plane a pyetcd cluster gets a changed flag. Both under a writer, while a watcher polls
``Available`` all along. Mid-rollout a member that still runs the old template is cut off the
network: the rollout restarts nobody while it is down, reports ``RolloutStuck`` past its
deadline, and goes on by itself once the member is back. In the end every member runs the new
template, the leader was restarted last, no acknowledged write is lost and the cluster never
stopped being Available. On the pyetcd plane the cluster is then hibernated (``replicas: 0``)
and woken: the same member IDs come back with every key.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from e2e.chart import OperatorRelease
from e2e.kube import Kubectl, PodExec, eventually
from e2e.kubelet.faults import KubeletHandle
from e2e.test_backups import events_of
from e2e.test_operator import example, member_pods, wait_available
from e2e.test_replacement import (
    Writer,
    assert_nothing_lost,
    diagnostics,
    member_ids,
    running,
)

Json = dict[str, Any]
DEADLINE = 30  # spec.rollout.progressDeadlineSeconds: the smallest accepted


class AvailableWatch:
    """Polls the cluster's Available condition until stopped; remembers every time it was
    not True."""

    def __init__(self, kubectl: Kubectl, namespace: str, name: str) -> None:
        self.kubectl, self.namespace, self.name = kubectl, namespace, name
        self.lapses: list[Json] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            status = self.kubectl.get("etcdcluster", self.name, self.namespace).get("status") or {}
            self.polls += 1
            for c in status.get("conditions") or []:
                if c["type"] == "Available" and c["status"] != "True":
                    self.lapses.append(c)

    def __enter__(self) -> AvailableWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def revisions(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    """Each member pod's StatefulSet revision."""
    return {
        str(p["metadata"]["name"]): str(p["metadata"]["labels"].get("controller-revision-hash"))
        for p in member_pods(kubectl, namespace, name)
    }


def restarts(kubectl: Kubectl, namespace: str, name: str) -> list[str]:
    """The operator's RestartingMember messages, oldest first."""
    found = [
        e for e in events_of(kubectl, namespace, name) if e.get("reason") == "RestartingMember"
    ]
    found.sort(key=lambda e: str(e.get("firstTimestamp") or e.get("eventTime") or ""))
    return [str(e.get("message")) for e in found]


def progressing(cluster: Json) -> Json:
    for c in (cluster.get("status") or {}).get("conditions") or []:
        if c["type"] == "Progressing":
            return dict(c)
    return {}


# The change each plane's engine rolls: (example, spec before, patch).
CHANGES = {
    "etcd": ("etcdcluster-etcd.yaml", {"version": "3.4.23"}, {"version": "3.5.36"}),
    "pyetcd": ("etcdcluster-pyetcd.yaml", {}, {"etcd": {"snapshotCount": 20000}}),
}


def test_a_change_rolls_one_member_at_a_time_leader_last_and_pauses_on_a_sick_member(
    engine: str,
    *,
    kubectl: Kubectl,
    pod_exec: PodExec,
    kubelet: KubeletHandle,
    operator: OperatorRelease,
    namespace: str,
) -> None:
    example_file, before, change = CHANGES[engine]
    manifest = example(example_file, namespace)
    name = manifest["metadata"]["name"]
    manifest["spec"].update(before)
    manifest["spec"]["rollout"] = {"progressDeadlineSeconds": DEADLINE}
    ids = running(kubectl, pod_exec, manifest)
    old = revisions(kubectl, namespace, name)
    assert len(set(old.values())) == 1, old

    with (
        Writer(pod_exec, namespace, name) as writer,
        AvailableWatch(kubectl, namespace, name) as watch,
    ):
        eventually("a first acknowledged write", lambda: len(writer.acked) > 3)
        kubectl.run(
            "patch", "etcdcluster", name, f"--namespace={namespace}", "--type=merge",
            "--patch", json.dumps({"spec": change}),
        )  # fmt: skip

        # The first member restarted and back: then a member still on the old template is cut
        # off the network.
        def first_back() -> str | None:
            now = revisions(kubectl, namespace, name)
            updated = [n for n, r in now.items() if r != old[n]]
            cluster = kubectl.get("etcdcluster", name, namespace)
            healthy = {m["name"] for m in cluster["status"]["members"] if m.get("healthy")}
            return updated[0] if len(updated) == 1 and updated[0] in healthy else None

        first = eventually("the first member restarted and healthy", first_back, timeout=180)
        leader = str(kubectl.get("etcdcluster", name, namespace)["status"]["leader"])
        sick = next(n for n in sorted(old) if n not in (first, leader))
        kubelet.cut(namespace, sick)
        try:
            frozen = revisions(kubectl, namespace, name)

            def stuck() -> Json | None:
                cluster = kubectl.get("etcdcluster", name, namespace)
                return cluster if progressing(cluster).get("reason") == "RolloutStuck" else None

            cluster = eventually("RolloutStuck", stuck, timeout=DEADLINE + 90, interval=2)
            assert sick in progressing(cluster)["message"], progressing(cluster)
            assert progressing(cluster)["status"] == "False"
            # Nobody else was restarted while the member was down.
            assert revisions(kubectl, namespace, name) == frozen
            assert any(
                e.get("reason") == "RolloutStuck" for e in events_of(kubectl, namespace, name)
            )
        finally:
            kubelet.plug(namespace, sick)

        def complete() -> Json | None:
            cluster = kubectl.get("etcdcluster", name, namespace)
            rollout = (cluster.get("status") or {}).get("rollout") or {}
            now = revisions(kubectl, namespace, name)
            done = rollout.get("completedAt") and all(now[n] != old[n] for n in old)
            return cluster if done else None

        try:
            cluster = eventually("the rollout to complete", complete, timeout=300, interval=2)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{diagnostics(kubectl, namespace, name)}") from None
        acked_at_end = len(writer.acked)
        eventually("writes after the rollout", lambda: len(writer.acked) > acked_at_end + 3)

    assert watch.polls > 10
    assert watch.lapses == [], f"Available lapsed during the rollout: {watch.lapses[:3]}"
    messages = restarts(kubectl, namespace, name)
    assert len(messages) == 3, messages
    assert "the leader, last" in messages[-1], messages
    assert all("the leader" not in m for m in messages[:-1]), messages
    assert cluster["status"]["rollout"]["updatedMembers"] == 3
    assert_nothing_lost(pod_exec, namespace, name, writer)
    if engine == "etcd":
        versions = {m["version"] for m in cluster["status"]["members"]}
        assert versions == {"3.5.36"}, versions
        assert cluster["status"]["currentVersion"] == "3.5.36"
        # etcd moves the cluster version up by itself once every member runs 3.5.

        def at_35() -> bool:
            status: Json = kubectl.get("etcdcluster", name, namespace)["status"]
            return bool(status.get("clusterVersion") == "3.5.0")

        eventually("clusterVersion 3.5.0", at_35, timeout=60)
    # Reported, not asserted: a put through the Service can meet a member as it stops.
    print(f"writer: {len(writer.acked)} acknowledged, {writer.failed} failed")
    if engine == "pyetcd":
        # One plane is enough for hibernation: nothing in it depends on the engine.
        hibernate_and_wake(kubectl, pod_exec, namespace, name, ids=ids, writer=writer)


def hibernate_and_wake(
    kubectl: Kubectl,
    pod_exec: PodExec,
    namespace: str,
    name: str,
    *,
    ids: dict[str, int],
    writer: Writer,
) -> None:
    """3 -> 0 -> 3: every member stops, the claims stay, and the same members come back with
    every key."""
    kubectl.run("scale", "etcdcluster", name, f"--namespace={namespace}", "--replicas=0")

    def asleep() -> Json | None:
        cluster = kubectl.get("etcdcluster", name, namespace)
        status = cluster.get("status") or {}
        return (
            cluster
            if status.get("phase") == "Hibernated" and not member_pods(kubectl, namespace, name)
            else None
        )

    eventually("Hibernated, no member pod", asleep, timeout=120, interval=2)
    claims = kubectl.json("get", "pvc", f"--namespace={namespace}")["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == [f"data-{name}-{i}" for i in range(3)]
    kubectl.run("scale", "etcdcluster", name, f"--namespace={namespace}", "--replicas=3")
    wait_available(kubectl, namespace, name, 3)
    assert eventually("the member list", lambda: member_ids(pod_exec, namespace, name)) == ids
    assert_nothing_lost(pod_exec, namespace, name, writer)
