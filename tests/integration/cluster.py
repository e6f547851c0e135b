"""Real server processes on loopback: one etcd-flag-compatible member of either flavour.

A :class:`Member` runs one server process, either upstream etcd (``/usr/bin/etcd``) or pyetcd
(``.venv/bin/pyetcd``), with the same etcd flags, on free loopback ports, in its own directory
(data dir + log file). It knows how to wait until the member serves requests (polling with a
deadline, never a fixed sleep), how to stop, kill and restart it on the same data dir, and how to
run ``etcdctl`` against it. :class:`Cluster` starts several members as one Raft cluster.

Used by the integration fixtures (``tests/integration/conftest.py``) and by ``bench.compare``;
it has no pytest dependency.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tools.ports import free_port

Flavour = Literal["etcd", "pyetcd"]
FLAVOURS: tuple[Flavour, ...] = ("etcd", "pyetcd")

REPO_ROOT = Path(__file__).resolve().parents[2]
# pyetcd's etcdutl, for snapshot restores (PYETCDUTL_BIN overrides it, like the other binaries).
PYETCDUTL_BIN = Path(
    os.environ.get("PYETCDUTL_BIN", str(REPO_ROOT / ".venv" / "bin" / "pyetcdutl"))
)
ETCD_BIN = Path(os.environ.get("ETCD_BIN", "/usr/bin/etcd"))
ETCDCTL_BIN = Path(os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl"))
PYETCD_BIN = Path(os.environ.get("PYETCD_BIN", str(REPO_ROOT / ".venv" / "bin" / "pyetcd")))

LOG_TAIL_LINES = 40


class MemberError(RuntimeError):
    """A member could not be started, became unready, or exited when it should not have."""


class BinaryMissingError(MemberError):
    """The server binary of a flavour is not installed; the message says how to get it."""


def as_flavour(name: str) -> Flavour:
    """Validate a flavour name (from an environment variable or a parameter)."""
    for flavour in FLAVOURS:
        if name == flavour:
            return flavour
    raise ValueError(f"unknown flavour {name!r}; expected one of {', '.join(FLAVOURS)}")


def binary_for(flavour: Flavour) -> Path:
    """The server executable of a flavour; raise :class:`BinaryMissingError` if it is not there."""
    if flavour == "etcd":
        path = ETCD_BIN
        hint = "install upstream etcd: `make system-deps` (apt-get install etcd-server etcd-client)"
    else:
        path = PYETCD_BIN
        hint = "build the pyetcd console script: run `make setup` (pip install -e '.[dev]')"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BinaryMissingError(f"{flavour} server binary not found at {path}; {hint}")
    return path


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Timing:
    """Raft timing flags; the fixtures use short ones so a fresh member elects itself quickly."""

    heartbeat_ms: int = 100
    election_ms: int = 1000


FAST = Timing(heartbeat_ms=50, election_ms=500)


class Member:
    """One server process (upstream etcd or pyetcd) started with etcd's own flags.

    Ports are chosen once, at construction, so a restart reuses the same URLs and data dir.
    """

    def __init__(
        self,
        flavour: Flavour,
        workdir: Path,
        *,
        name: str = "default",
        timing: Timing = FAST,
        extra_flags: Sequence[str] = (),
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        cluster_token: str = "pyetcd-test",
        env: Mapping[str, str] | None = None,
        initial_cluster_state: Literal["new", "existing"] = "new",
        client_scheme: Literal["http", "https"] = "http",
        peer_scheme: Literal["http", "https"] = "http",
        etcdctl_flags: Sequence[str] = (),
    ) -> None:
        self.flavour: Flavour = flavour
        self.client_scheme = client_scheme
        self.peer_scheme = peer_scheme
        # How etcdctl reaches it (--cacert, --cert, --key for a TLS member).
        self.etcdctl_flags = tuple(etcdctl_flags)
        self.workdir = workdir
        self.name = name
        self.timing = timing
        self.extra_flags = tuple(extra_flags)
        self.client_port = client_port if client_port is not None else free_port()
        self.peer_port = peer_port if peer_port is not None else free_port()
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_token = cluster_token
        self.initial_cluster_state: Literal["new", "existing"] = initial_cluster_state
        self.env = dict(env or {})
        self.data_dir = workdir / "data"
        self.log_path = workdir / "member.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    # -- addresses -------------------------------------------------------------------------
    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.client_scheme}://{self.host_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://127.0.0.1:{self.peer_port}"

    def __repr__(self) -> str:
        return f"Member({self.flavour}, {self.name}, {self.client_url})"

    # -- process control -------------------------------------------------------------------
    def command(self) -> list[str]:
        """The full command line: the same etcd flags for both flavours."""
        state = self.initial_cluster_state
        return [
            str(binary_for(self.flavour)),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self.cluster_token}",
            f"--heartbeat-interval={self.timing.heartbeat_ms}",
            f"--election-timeout={self.timing.election_ms}",
            *self.extra_flags,
        ]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process (returns at once; see :meth:`wait_ready`)."""
        if self.running:
            raise MemberError(f"{self} is already running")
        cmd = self.command()  # raises BinaryMissingError first, before creating anything
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.starts += 1
        self._log.write(f"==== start #{self.starts}: {' '.join(cmd)}\n".encode())
        self._log.flush()
        env = {**os.environ, **self.env}
        # etcd reads ETCD_* variables as flags: keep the caller's environment from leaking in.
        for key in [k for k in env if k.startswith("ETCD_") and k not in self.env]:
            del env[key]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def _exited_error(self, what: str) -> MemberError:
        code = self.proc.returncode if self.proc is not None else None
        return MemberError(
            f"{self} {what} (exit code {code}); last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        """Raise :class:`MemberError` with the log tail if the process has exited."""
        if self.proc is None:
            raise MemberError(f"{self} was never started")
        if self.proc.poll() is not None:
            raise self._exited_error("exited early")

    def is_ready(self) -> bool:
        """One readiness probe: port open, then ``etcdctl endpoint health`` (a quorum read)."""
        if not port_open("127.0.0.1", self.client_port):
            return False
        result = self.etcdctl(
            "endpoint",
            "health",
            "-w",
            "json",
            "--dial-timeout=1s",
            "--command-timeout=2s",
            timeout=5.0,
        )
        return result.returncode == 0 and '"health":true' in result.stdout

    def wait_ready(self, deadline: float | None = None) -> None:
        """Poll until the member serves a linearizable read, or ``deadline`` (time.monotonic()).

        Raises :class:`MemberError` (with the log tail) if the process exits or the deadline
        passes first.
        """
        if deadline is None:
            deadline = time.monotonic() + 30.0
        delay = 0.02
        while True:
            self.check_alive()
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise MemberError(
                    f"{self} not ready before the deadline; last lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            # Back off between probes (a poll interval, not a synchronisation sleep).
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def start_and_wait(self, timeout: float = 30.0) -> None:
        self.start()
        self.wait_ready(time.monotonic() + timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process; for SIGKILL also reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()
        return self.proc.returncode

    def restart(self, timeout: float = 30.0, *, sig: int | None = None) -> None:
        """Stop (or kill with ``sig``) and start again on the same data dir and ports."""
        if sig is None:
            self.stop()
        else:
            self.kill(sig)
            if self.proc is not None:
                self.proc.wait(timeout=30)
        self.start_and_wait(timeout)

    def wipe(self) -> None:
        """Remove the data dir (member must be stopped)."""
        if self.running:
            raise MemberError(f"{self} is running; stop it before wiping")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- etcdctl ---------------------------------------------------------------------------
    def etcdctl_cmd(self, *args: str) -> list[str]:
        endpoint = self.client_url if self.client_scheme == "https" else self.host_port
        return [str(ETCDCTL_BIN), f"--endpoints={endpoint}", *self.etcdctl_flags, *args]

    def etcdctl(
        self,
        *args: str,
        input: str | bytes | None = None,
        timeout: float = 30.0,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ETCDCTL_API=3 etcdctl --endpoints=<this member> *args`` and capture text output.

        ``input`` is fed to stdin; keyword arguments are extra environment variables.
        """
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            self.etcdctl_cmd(*args),
            input=data if data is not None else b"",
            capture_output=True,
            timeout=timeout,
            env=etcdctl_env(**env),
            check=False,
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def etcdctl_bytes(
        self, *args: str, input: bytes | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Like :meth:`etcdctl`, but keeps stdout as bytes (``-w protobuf``)."""
        return subprocess.run(
            self.etcdctl_cmd(*args),
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
            env=etcdctl_env(),
            check=False,
        )

    def etcdctl_popen(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a long-running etcdctl (``watch``) with piped stdout/stderr."""
        return subprocess.Popen(
            self.etcdctl_cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=etcdctl_env(),
            start_new_session=True,
        )


def etcdctl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    env.update(extra)
    return env


class Cluster:
    """``size`` members of one flavour forming one Raft cluster on loopback.

    Members can be added later (:meth:`new_member`: a member that joins with
    ``--initial-cluster-state=existing``, after ``member add``) and are then part of
    :attr:`members` for :meth:`stop` and :attr:`endpoints`.
    """

    def __init__(
        self,
        flavour: Flavour,
        workdir: Path,
        size: int = 3,
        *,
        timing: Timing = FAST,
        extra_flags: Sequence[str] = (),
        cluster_token: str = "pyetcd-test",
        client_scheme: Literal["http", "https"] = "http",
        peer_scheme: Literal["http", "https"] = "http",
        etcdctl_flags: Sequence[str] = (),
    ) -> None:
        self.flavour: Flavour = flavour
        self.workdir = workdir
        self.timing = timing
        self.extra_flags = tuple(extra_flags)
        self.cluster_token = cluster_token
        self._schemes: dict[str, Any] = {
            "client_scheme": client_scheme,
            "peer_scheme": peer_scheme,
            "etcdctl_flags": tuple(etcdctl_flags),
        }
        names = [f"m{i}" for i in range(size)]
        peer_ports = [free_port() for _ in names]
        initial = ",".join(
            f"{n}={peer_scheme}://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True)
        )
        self.members = [
            Member(
                flavour,
                workdir / name,
                name=name,
                timing=timing,
                extra_flags=extra_flags,
                peer_port=port,
                initial_cluster=initial,
                cluster_token=cluster_token,
                **self._schemes,
            )
            for name, port in zip(names, peer_ports, strict=True)
        ]

    def start(self, timeout: float = 60.0) -> None:
        for member in self.members:
            member.start()
        deadline = time.monotonic() + timeout
        for member in self.members:
            member.wait_ready(deadline)
        # etcd serves clients only once a member's attributes are applied (ReadyNotify); pyetcd
        # serves from its start, so a member list can catch a member still publishing.
        wait_for(
            "every member to list every member's name and client URLs",
            self._all_published,
            max(deadline - time.monotonic(), 1.0),
            *self.members,
        )

    def _all_published(self) -> bool | None:
        for member in self.members:
            listed = member.etcdctl("member", "list", "-w", "json", timeout=5.0)
            if listed.returncode != 0:
                return None
            members = json.loads(listed.stdout).get("members", [])
            if len(members) != len(self.members):
                return None
            if not all(m.get("name") and m.get("clientURLs") for m in members):
                return None
        return True

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def new_member(self, name: str, *, peer_port: int | None = None) -> Member:
        """A member to join this cluster (not started): ``--initial-cluster`` lists the running
        members and this one, ``--initial-cluster-state=existing``. Add it with ``etcdctl member
        add`` (its :attr:`Member.peer_url`) before starting it."""
        member = Member(
            self.flavour,
            self.workdir / name,
            name=name,
            timing=self.timing,
            extra_flags=self.extra_flags,
            peer_port=peer_port,
            cluster_token=self.cluster_token,
            initial_cluster_state="existing",
            **self._schemes,
        )
        listed = [m for m in self.members if m.running] + [member]
        member.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in listed)
        self.members.append(member)
        return member

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    @property
    def endpoints(self) -> str:
        return ",".join(m.host_port for m in self.members)


@contextlib.contextmanager
def running(member: Member, timeout: float = 30.0) -> Iterator[Member]:
    """Start a member, wait until ready, and always stop it (used outside pytest: bench)."""
    try:
        member.start_and_wait(timeout)
        yield member
    finally:
        member.stop()


def describe_failure(member: Member) -> str:
    """A short post-mortem of a member for failure messages."""
    state = "running" if member.running else f"exited ({member.proc and member.proc.returncode})"
    return f"{member} is {state}; last lines of its log:\n{member.log_tail()}"


if __name__ == "__main__":  # manual smoke check: python -m tests.integration.cluster etcd
    import tempfile

    with (
        tempfile.TemporaryDirectory() as tmp,
        running(Member(as_flavour(sys.argv[1] if len(sys.argv) > 1 else "etcd"), Path(tmp))) as m,
    ):
        print(m.etcdctl("endpoint", "status", "-w", "table").stdout)


def status(member: Member, timeout: float = 2.0) -> rpc_pb2.StatusResponse | None:
    """The member's Maintenance.Status, or None while it does not answer."""
    try:
        with grpc.insecure_channel(member.host_port) as channel:
            resp: rpc_pb2.StatusResponse = rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=timeout
            )
            return resp
    except grpc.RpcError:
        return None


T = TypeVar("T")
WAIT_POLL = 0.05


class WaitTimeoutError(AssertionError):
    """A condition polled with :func:`wait_for` did not hold before its deadline."""


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, *alive: Member) -> T:
    """Call ``fn`` until it returns something other than None; WaitTimeoutError after
    ``timeout`` seconds. Fails at once (with the log tail) if one of ``alive`` exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        for member in alive:
            member.check_alive()
        value = fn()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(WAIT_POLL)
