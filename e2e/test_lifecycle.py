"""The control plane's own promises: a failed start leaves nothing running; stop ends in SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.controlplane import ControlPlane, ControlPlaneError, Process, wait_until


@pytest.mark.own_control_plane
def test_failed_start_stops_what_already_runs(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, apiserver_args=["--no-such-flag"], start_timeout=60)
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited with code") as failure:
        plane.start()
    assert "unknown flag: --no-such-flag" in str(failure.value)
    names = [p.name for p in plane.processes]
    assert names == ["etcd", "kube-apiserver"]
    for process in plane.processes:
        assert process.popen is not None
        assert process.popen.returncode is not None, f"{process.name} still runs"
    # etcd got SIGTERM and shut down cleanly.
    assert plane.processes[0].popen is not None
    assert plane.processes[0].popen.returncode in (0, -signal.SIGTERM)
    assert (tmp_path / "logs" / "kube-apiserver.log").read_text().count("no-such-flag") >= 1


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = Process("stubborn", [sys.executable, "-c", script], tmp_path / "stubborn.log")
    process.start()
    try:
        # The log's first line is the command, which contains the word too: wait for the output.
        def ready() -> bool:
            return "ready" in process.log_path.read_text().splitlines()

        wait_until("the child to ignore SIGTERM", ready, 30)
        process.stop(grace=1.0)
    finally:
        process.stop(grace=0.0)
    assert process.popen is not None
    assert process.popen.returncode == -signal.SIGKILL


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}  # exited, waiting for init to reap it


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    """A SIGKILLed test run (no finalizers) must not leave servers behind."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from e2e.controlplane import Process\n"
        f"p = Process('sleeper', ['sleep', '300'], Path({str(tmp_path / 'sleeper.log')!r}))\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    wait_until(f"sleeper {child} to die with its parent", lambda: _gone(child), 10)
