"""``make demo`` end to end: its real entry point up (fresh, then reused), and down (twice).

Runs before every other e2e test (``own_control_plane``), as the demo brings up a control plane
and kubelet of its own; its state goes to a temporary directory and its network namespaces get
a prefix of their own, so a user's ``.demo`` is never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.demo import alive
from e2e.kubelet import netns

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "kdtest"


def demo(state: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tools.demo", *args, f"--state={state}", f"--prefix={PREFIX}"]
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
