"""``make demo`` end to end: its real entry point up (fresh, then reused), and down (twice).

Runs before every other e2e test (``own_control_plane``), as the demo brings up a control plane
and kubelet of its own; its state goes to a temporary directory and its network namespaces get
a prefix of their own, so a user's ``.demo`` is never touched. Below it, ``tools.demo etcdctl``'s
argument handling (``--cluster``, ``--namespace``, etcdctl's own flags) without a demo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from e2e import demo as e2e_demo
from e2e.demo import DemoState, alive
from e2e.kube import Json, Kubectl
from e2e.kubelet import netns
from tools import demo as tools_demo

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "kdtest"


def demo(state: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    # tools.demo's options first: after `etcdctl ARGS`, everything is etcdctl's.
    argv = [sys.executable, "-m", "tools.demo", f"--state={state}", f"--prefix={PREFIX}", *args]
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.own_control_plane
@pytest.mark.timeout(1500)
def test_demo_up_reuse_and_down(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    try:
        first = demo(state, "up")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        out = first.stdout
        info = json.loads((state / "demo.json").read_text())
        pids = [info["pid"], *info["pids"]]
        assert all(alive(p) for p in pids)
        assert "starting the control plane" in out
        # kubectl get etcdclusters,pods -o wide: the cluster, then its three members, Running.
        assert "etcdcluster.etcd.pyetcd.io/example-pyetcd" in out
        members = [line for line in out.splitlines() if line.startswith("pod/example-pyetcd-")]
        assert len(members) == 3 and all(" Running " in line for line in members), members
        # etcdctl endpoint status --cluster -w table: one row per member, one leader.
        rows = [line for line in out.splitlines() if line.startswith("| http://")]
        assert len(rows) == 3, out
        assert sum(" true " in row.split("|")[5] for row in rows) == 1, rows
        assert f"export KUBECONFIG={state / 'admin.kubeconfig'}" in out.splitlines()
        # kubectl get etcdbackups: the backup the annotation asked for, Succeeded, and the hints
        # to take another and to restore it into a new cluster.
        backups = [line.split() for line in out.splitlines() if "-ondemand-" in line]
        assert backups and backups[0][1:3] == ["example-pyetcd", "Succeeded"], out
        assert "etcd.pyetcd.io/backup=now" in out
        assert f"bootstrap: {{backup: {{name: {backups[0][0]}}}}}" in out

        # The second run finds it running and reuses it.
        second = demo(state, "up", timeout=300)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "reusing the running demo" in second.stdout
        assert "starting the control plane" not in second.stdout
        assert json.loads((state / "demo.json").read_text())["pid"] == info["pid"]

        got = demo(state, "etcdctl", "member", "list", timeout=60)
        assert got.returncode == 0, got.stderr
        assert sorted(line.split(", ")[2] for line in got.stdout.splitlines()) == [
            f"example-pyetcd-{i}" for i in range(3)
        ]
        # --cluster names the EtcdCluster; etcdctl's own --cluster flag comes after its command.
        named = demo(
            state, "etcdctl", "--cluster", "example-pyetcd", "endpoint", "health", "--cluster",
            timeout=60,
        )  # fmt: skip
        assert named.returncode == 0 and named.stdout.count("is healthy") == 3, named.stderr
        missing = demo(state, "etcdctl", "--cluster=nope", "member", "list", timeout=60)
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert "no EtcdCluster 'nope' in namespace 'default'" in missing.stderr
        assert "default/example-pyetcd" in missing.stderr
    finally:
        stopped = demo(state, "down", timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert "demo stopped" in stopped.stdout
    # Orderly: nothing had to be killed or deleted by force.
    assert "killed" not in stopped.stdout and "deleted" not in stopped.stdout, stopped.stdout
    assert not any(alive(p) for p in pids)
    assert netns.list_netns(PREFIX) == []
    assert not state.exists()
    again = demo(state, "down", timeout=120)
    assert again.returncode == 0 and "demo stopped" in again.stdout


@pytest.mark.parametrize(
    ("argv", "own", "etcdctl"),
    [
        (["up"], ["up"], None),
        (["etcdctl", "member", "list"], ["etcdctl"], ["member", "list"]),
        (
            ["--state=s", "etcdctl", "--cluster", "c", "--namespace=n", "get", "k", "--prefix"],
            ["--state=s", "etcdctl", "--cluster", "c", "--namespace=n"],
            ["get", "k", "--prefix"],
        ),
        (
            ["etcdctl", "--cluster=c", "endpoint", "status", "--cluster", "-w", "table"],
            ["etcdctl", "--cluster=c"],
            ["endpoint", "status", "--cluster", "-w", "table"],
        ),
        (["etcdctl", "--", "--cluster", "x"], ["etcdctl"], ["--cluster", "x"]),
    ],
)
def test_etcdctl_arguments_split_between_the_demo_and_etcdctl(
    argv: list[str], own: list[str], etcdctl: list[str] | None
) -> None:
    assert tools_demo.split_etcdctl(argv) == (own, etcdctl)


class StubKubectl:
    """The calls ``tools.demo etcdctl`` makes, answered from a fixed cluster list."""

    def __init__(
        self, clusters: dict[tuple[str, str], list[Json]], tls: frozenset[str] = frozenset()
    ) -> None:
        self.clusters = clusters
        self.tls = tls  # the clusters with client TLS

    def get(self, kind: str, name: str, namespace: str | None = None) -> Json:
        spec: Json = {"version": "3.5.17"}
        if name in self.tls:
            spec["tls"] = {"client": {"source": "Generated"}}
        return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        return (str(namespace), name) in self.clusters

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        listing = " ".join(f"{ns}/{name}" for ns, name in self.clusters)
        return subprocess.CompletedProcess(list(args), 0, listing, "")

    def json(self, *args: str) -> Any:
        namespace = next(a.split("=", 1)[1] for a in args if a.startswith("--namespace="))
        name = args[-1].rsplit("=", 1)[1]
        return {"items": self.clusters[namespace, name]}


def pod(name: str, phase: str) -> Json:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def test_etcdctl_cluster_picks_a_running_member_or_says_what_exists(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stub = StubKubectl(
        {
            ("default", "example-pyetcd"): [pod("example-pyetcd-0", "Running")],
            ("team", "big"): [pod("big-10", "Running"), pod("big-2", "Running")],
            ("team", "new"): [pod("new-0", "Pending")],
        },
        tls=frozenset({"big"}),
    )
    kubectl: Kubectl = stub  # type: ignore[assignment]
    assert tools_demo.member_pod(kubectl, "big", "team") == "big-2"
    with pytest.raises(tools_demo.NoSuchClusterError, match="no Running member pod"):
        tools_demo.member_pod(kubectl, "new", "team")

    state = DemoState(1, tmp_path / "admin.kubeconfig", "http://127.0.0.1:1", "kd", ())
    calls: list[tuple[str, str, str, bool]] = []

    def etcdctl_in_member(
        state: DemoState,
        namespace: str,
        args: list[str],
        cluster: str,
        pod: str,
        *,
        secure: bool = False,
    ) -> tuple[int, str]:
        calls.append((namespace, cluster, pod, secure))
        return 0, "ok\n"

    monkeypatch.setattr(e2e_demo, "running", lambda paths: state)
    monkeypatch.setattr(tools_demo, "ensure_tools", lambda: type("T", (), {"kubectl": "k"}))
    monkeypatch.setattr(tools_demo, "Kubectl", lambda binary, kubeconfig: stub)
    monkeypatch.setattr(tools_demo, "etcdctl_in_member", etcdctl_in_member)

    assert tools_demo.main(["etcdctl", "member", "list"]) == 0  # the example, as before
    assert tools_demo.main(["etcdctl", "--cluster", "big", "--namespace", "team", "get", "k"]) == 0
    # A cluster with client TLS is asked over https with the member's client certificate.
    assert calls == [
        ("default", "example-pyetcd", "example-pyetcd-0", False),
        ("team", "big", "big-2", True),
    ]
    assert tools_demo.main(["etcdctl", "--cluster", "nope", "member", "list"]) == 1
    err = capsys.readouterr().err
    assert "tools.demo etcdctl: no EtcdCluster 'nope' in namespace 'default'" in err
    assert "default/example-pyetcd, team/big, team/new" in err and "Traceback" not in err
