"""`make demo-local`: start a one-member pyetcd on loopback and show Debian's etcdctl using it.

No Kubernetes: the quick look at the server alone (`make demo` is the operator on a control
plane). The member keeps running after the demo exits (its pid and data dir are printed, with
the command that stops it), so that a user can keep exploring with etcdctl. State: `.demo-local/`.
`python -m tools.demo_local down` (run by `make demo-down`) stops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo-local"
PYETCD = Path(sys.executable).parent / "pyetcd"


def etcdctl(
    endpoint: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ETCDCTL_API="3")
    cmd = ["etcdctl", f"--endpoints={endpoint}", *args]
    print("$ " + " ".join(cmd[:1] + list(args)), flush=True)
    out = subprocess.run(
        cmd, env=env, input=stdin, text=True, capture_output=True, timeout=30, check=False
    )
    sys.stdout.write(out.stdout)
    sys.stdout.write(out.stderr)
    return out


def stop_previous() -> None:
    pid_file = STATE / "pyetcd.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    if STATE.exists():
        shutil.rmtree(STATE)


def main() -> None:
    if sys.argv[1:] == ["down"]:
        stop_previous()
        return
    if shutil.which("etcdctl") is None:
        sys.exit("etcdctl not found: run `make setup` (installs Debian's etcd-client)")
    stop_previous()
    STATE.mkdir()
    client, peer = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{client}"
    peer_url = f"http://127.0.0.1:{peer}"
    log = (STATE / "pyetcd.log").open("w")
    proc = subprocess.Popen(
        [
            str(PYETCD),
            "--name=demo",
            f"--data-dir={STATE / 'data'}",
            f"--listen-client-urls={endpoint}",
            f"--advertise-client-urls={endpoint}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=demo={peer_url}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (STATE / "pyetcd.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            sys.exit(f"pyetcd exited with {proc.returncode}; see {STATE / 'pyetcd.log'}")
        probe = subprocess.run(
            ["etcdctl", f"--endpoints={endpoint}", "endpoint", "health"],
            env=dict(os.environ, ETCDCTL_API="3"),
            capture_output=True,
            timeout=10,
            check=False,
        )
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"pyetcd did not become healthy in 30 s; see {STATE / 'pyetcd.log'}")
        time.sleep(0.2)
    print(f"pyetcd (pid {proc.pid}) is serving {endpoint}\n", flush=True)
    etcdctl(endpoint, "put", "/demo/greeting", "hello")
    etcdctl(endpoint, "put", "/demo/name", "pyetcd")
    etcdctl(endpoint, "get", "/demo/", "--prefix")
    etcdctl(
        endpoint,
        "txn",
        stdin='value("/demo/name") = "pyetcd"\n\nput /demo/txn ok\n\nput /demo/txn failed\n\n',
    )
    etcdctl(endpoint, "get", "/demo/txn", "-w", "json")
    etcdctl(endpoint, "lease", "grant", "60")
    etcdctl(endpoint, "endpoint", "status", "-w", "table")
    etcdctl(endpoint, "member", "list", "-w", "table")
    print(
        "\nKeep exploring:\n"
        f"  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS={endpoint}\n"
        "  etcdctl get / --prefix\n"
        f"Stop it with: make demo-down   (pid {proc.pid}, data dir: {STATE / 'data'})"
    )


if __name__ == "__main__":
    main()
