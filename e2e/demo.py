"""The demo's environment: the control plane and the process kubelet, detached, in one directory.

``make demo`` must leave a cluster running after it exits, while every component of the e2e
control plane dies with its parent (``PR_SET_PDEATHSIG``). So one detached supervisor process
(``python -m e2e.demo serve DIR``, its own session, no death signal) owns them: it starts a
:class:`~e2e.controlplane.ControlPlane` (storage: Debian's etcd) with ``DIR`` as its workdir and a
:class:`~e2e.kubelet.faults.KubeletHandle` with ``DIR/kubelet``, exactly as the test fixtures do,
and moto's S3 server on loopback (the demo cluster's backups go there), writes ``DIR/demo.json``
once all are up, and stops them on SIGTERM (or when the control plane or the kubelet dies).

Layout of ``DIR``: ``demo.pid`` (the supervisor), ``demo.json`` (its state once up),
``admin.kubeconfig``, ``logs/`` (``demo.log``, the components' and the kubelet's logs),
``kubelet/pods/<ns>_<pod>_<uid>/logs/`` (container logs), ``kubelet/volumes/`` (claims).

:func:`stop` is idempotent: SIGTERM to the supervisor, SIGKILL after a grace period (its children
then die of their death signal, and the pods with the kubelet), any network namespace of the
prefix deleted, ``DIR`` removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.controlplane import ControlPlane, ControlPlaneError, wait_until
from e2e.kubelet import netns
from e2e.kubelet.faults import KubeletHandle
from tools.s3server import S3ServerError, moto_server

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PREFIX = "kdemo"
# Five SSD nodes (the tests' kubelet has three and a plain one): members need one node each
# (required anti-affinity) on SSD nodes (the default placement), and the demo suggests
# scaling the 3-member example to 5.
NODES = ",".join(f"node-{c}:etcd.pyetcd.io/disk=ssd" for c in "abcde")


class DemoError(RuntimeError):
    """The environment did not come up; the message says where to look."""


@dataclass(frozen=True)
class DemoDir:
    """The paths of one demo environment."""

    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "demo.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "demo.json"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"  # also the control plane's (its workdir is root)

    @property
    def supervisor_log(self) -> Path:
        return self.log_dir / "demo.log"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> str:
        return str(self.kubelet_dir / "pods" / "<namespace>_<pod>_<uid>" / "logs")


@dataclass(frozen=True)
class DemoState:
    """What the supervisor writes once the environment is up."""

    pid: int
    kubeconfig: Path
    control: str
    prefix: str
    pids: tuple[int, ...]
    # The demo's S3 server (moto) on loopback, and its admin user's keys (moto's own, local).
    s3_url: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""

    @staticmethod
    def read(path: Path) -> DemoState:
        data = json.loads(path.read_text())
        return DemoState(
            int(data["pid"]),
            Path(data["kubeconfig"]),
            str(data["control"]),
            str(data["prefix"]),
            tuple(int(p) for p in data["pids"]),
            str(data.get("s3_url", "")),
            str(data.get("s3_access_key", "")),
            str(data.get("s3_secret_key", "")),
        )

    def write(self, path: Path) -> None:
        data = {
            "pid": self.pid,
            "kubeconfig": str(self.kubeconfig),
            "control": self.control,
            "prefix": self.prefix,
            "pids": list(self.pids),
            "s3_url": self.s3_url,
            "s3_access_key": self.s3_access_key,
            "s3_secret_key": self.s3_secret_key,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, exited but not reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


# -- the supervisor -------------------------------------------------------------------------------


def serve(directory: Path, prefix: str) -> int:
    """Run the environment until SIGTERM/SIGINT, or until a component dies (exit status 1)."""
    paths = DemoDir(directory)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds start() or the wait below; the finally stops all

    signal.signal(signal.SIGTERM, terminate)
    plane = ControlPlane(directory, storage="etcd")
    kubelet = KubeletHandle(plane, paths.kubelet_dir, prefix=prefix, nodes=NODES)
    s3_server = contextlib.ExitStack()
    try:
        plane.start()
        kubelet.start()
        s3 = s3_server.enter_context(moto_server(paths.log_dir))
        assert kubelet.process is not None and kubelet.process.pid is not None
        processes = [*plane.processes, kubelet.process]
        pids = tuple(p.pid for p in processes if p.pid is not None)
        pids += (s3.pid,) if s3.pid is not None else ()
        state = DemoState(
            os.getpid(),
            plane.kubeconfig,
            kubelet.control,
            prefix,
            pids,
            s3.url,
            s3.admin.access_key_id,
            s3.admin.secret_access_key,
        )
        state.write(paths.state_file)
        print(f"demo up: kubeconfig {plane.kubeconfig}, kubelet {kubelet.control}", flush=True)
        while True:
            plane.check_alive()
            kubelet.process.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("demo: stopping", flush=True)
        return 0
    except (ControlPlaneError, S3ServerError) as exc:
        print(f"demo: {exc}", flush=True)
        return 1
    finally:
        # A second SIGTERM must not cut the orderly stop short (stop() kills after its grace).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        paths.state_file.unlink(missing_ok=True)
        try:
            kubelet.stop()
        finally:
            s3_server.close()
            plane.stop()
        print("demo: stopped", flush=True)


# -- the front end's calls ------------------------------------------------------------------------


def running(paths: DemoDir) -> DemoState | None:
    """The environment's state when its supervisor is up and running, else None."""
    try:
        state = DemoState.read(paths.state_file)
    except (OSError, ValueError, KeyError):
        return None
    return state if alive(state.pid) and all(alive(p) for p in state.pids) else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(paths: DemoDir, prefix: str = DEFAULT_PREFIX, timeout: float = 300.0) -> DemoState:
    """Start the supervisor, detached, and wait until it reports the environment up."""
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    with paths.supervisor_log.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "e2e.demo", "serve", str(paths.root), f"--prefix={prefix}"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `make demo`, and its terminal's signals
        )
    paths.pid_file.write_text(f"{process.pid}\n")

    def supervisor_alive() -> None:
        if process.poll() is not None:
            raise DemoError(
                f"the demo's supervisor exited with code {process.returncode}; "
                f"logs in {paths.log_dir}:\n{_tail(paths.supervisor_log)}"
            )

    try:
        wait_until("the demo environment", paths.state_file.exists, timeout, alive=supervisor_alive)
    except DemoError:
        stop(paths, remove=False)
        raise
    except ControlPlaneError as exc:
        stop(paths, remove=False)
        raise DemoError(f"{exc}; logs in {paths.log_dir}") from None
    return DemoState.read(paths.state_file)


def stop(paths: DemoDir, grace: float = 120.0, *, remove: bool = True) -> list[str]:
    """Stop everything of the environment and remove its directory (unless ``remove`` is false:
    after a failed start, for its logs); idempotent.

    Returns what had to be cleaned up by force (a supervisor killed, namespaces deleted here).
    """
    forced: list[str] = []
    state: DemoState | None = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        state = DemoState.read(paths.state_file)
    pid: int | None = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(paths.pid_file.read_text())
    if pid is not None and alive(pid) and _is_supervisor(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until("the demo's supervisor to stop", lambda: not alive(pid), grace)
        except ControlPlaneError:
            forced.append(f"supervisor {pid} killed after {grace:.0f}s")
            os.kill(pid, signal.SIGKILL)
    children = state.pids if state is not None else ()
    # Their death signal fires with the supervisor; give them a moment to go.
    with contextlib.suppress(ControlPlaneError):
        wait_until("the components to stop", lambda: not any(map(alive, children)), 30.0)
    for child in children:
        if alive(child):
            forced.append(f"process {child} killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    prefix = state.prefix if state is not None else DEFAULT_PREFIX
    left = netns.list_netns(prefix)
    if left:
        forced.append(f"network namespaces deleted: {', '.join(left)}")
        netns.delete_all(prefix)
    if remove:
        shutil.rmtree(paths.root, ignore_errors=True)
    else:
        paths.pid_file.unlink(missing_ok=True)
    return forced


def _is_supervisor(pid: int) -> bool:
    """The pid still belongs to a demo supervisor (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"e2e.demo" in cmdline and b"serve" in cmdline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the demo's supervisor (see tools/demo.py)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="run the environment until SIGTERM")
    serve_parser.add_argument("directory", type=Path)
    serve_parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    args = parser.parse_args(argv)
    return serve(args.directory.resolve(), args.prefix)


if __name__ == "__main__":
    raise SystemExit(main())
