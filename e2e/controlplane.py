"""A real Kubernetes control plane on loopback: storage, apiserver, controller-manager, scheduler.

``ControlPlane(workdir).start()`` generates a CA, certificates, service-account keys and kubeconfigs
in ``workdir``, then starts, each on free loopback ports and waiting on its health endpoint with a
deadline:

1. the storage: upstream etcd (Debian's ``/usr/bin/etcd``) or, with ``storage="pyetcd"``, the
   project's ``pyetcd`` server (single member);
2. kube-apiserver (waits for ``/readyz``);
3. kube-controller-manager and kube-scheduler, each with its own client certificate
   (``system:kube-controller-manager`` / ``system:kube-scheduler``), ``--leader-elect=false``.

``stop()`` stops them in reverse order (SIGTERM, then SIGKILL after a grace period); ``start()``
calls it itself when it fails midway. Each process logs to ``workdir/logs/<name>.log``; the API
server also writes an audit log of what service accounts asked (``audit_log``, read by
:mod:`e2e.rbac`).
The binaries come from :mod:`e2e.k8s.build` (built once per Kubernetes version, then cached).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from e2e import pki
from e2e.k8s.build import Binaries, ensure_binaries
from tools.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
SA_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
DEBIAN_ETCD = Path("/usr/bin/etcd")
DEBIAN_ETCDCTL = Path("/usr/bin/etcdctl")
PYETCD = ROOT / ".venv" / "bin" / "pyetcd"

Storage = Literal["etcd", "pyetcd"]

# Added to the API server's default admission chain (which already holds NamespaceLifecycle,
# LimitRanger, ServiceAccount, DefaultStorageClass, ResourceQuota, PodSecurity, the webhooks, ...).
# OwnerReferencesPermissionEnforcement (on in OpenShift, off upstream) authorises owner references:
# one with blockOwnerDeletion needs `update` on the owner's finalizers subresource, a check made
# inside the request that is refused (403) without it, so e2e.rbac sees a missing permission.
ADMISSION_PLUGINS = "NodeRestriction,OwnerReferencesPermissionEnforcement"

# The API server's audit policy: the requests of service accounts (the operator's, the pods'),
# not those of the controllers (kube-system's, thousands a minute) nor of certificate users
# (admin, kubelet, scheduler). Level Metadata: user, verb, resource, name, the authoriser's
# decision and the response code, no bodies; from the moment the response starts (a watch's
# event is written when it opens). JSON is YAML.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


class ControlPlaneError(RuntimeError):
    """A component failed to start or to become healthy."""


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (pytest killed, runner crashed).

    ``stop()`` is the normal path; this only keeps a dead parent from leaving servers behind.
    The death signal survives exec and works whatever the child does with SIGTERM. Strictly, it
    fires when the thread that started the child ends: start control planes from a thread that
    outlives them (pytest's main thread does).
    """
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


@dataclass
class Process:
    """One component: a child process in its own session, logging to a file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
        )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            code = self.popen.returncode
            raise ControlPlaneError(
                f"{self.name} exited with code {code}; log {self.log_path}:\n{_tail(self.log_path)}"
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; signals only this process group."""
        popen = self.popen
        if popen is not None and popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                popen.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, signum: signal.Signals) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            # start_new_session made the child the leader of a group whose id is its pid.
            os.killpg(self.popen.pid, signum)


def wait_until(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    *,
    alive: Callable[[], None] = lambda: None,
    interval: float = 0.2,
) -> None:
    """Poll ``probe`` until it returns True; fail after ``timeout`` s or when ``alive`` raises."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        alive()
        try:
            if probe():
                return
        except (OSError, ValueError) as exc:  # connection refused, TLS not up yet, bad reply
            last_error = f" (last error: {exc})"
        if time.monotonic() >= deadline:
            raise ControlPlaneError(
                f"timed out after {timeout:.0f}s waiting for {what}{last_error}"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class Identity:
    """A user of the API server: kubeconfig plus the client certificate behind it."""

    user: str
    kubeconfig: Path
    cert: pki.KeyPair


@dataclass
class ControlPlane:
    """The control plane of the end-to-end tests: ``start()``/``stop()`` or a context manager."""

    workdir: Path
    storage: Storage = "etcd"
    start_timeout: float = 120.0
    stop_grace: float = 10.0
    binaries: Binaries | None = None
    verbosity: int = 1
    # The API server compacts its storage this often (upstream default: 5m). Short, so that every
    # run exercises compaction underneath live watches.
    compaction_interval: str = "10s"
    # Extra flags appended to each component's command line (e.g. feature gates).
    apiserver_args: list[str] = field(default_factory=list)
    controller_manager_args: list[str] = field(default_factory=list)
    scheduler_args: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    apiserver_port: int = 0
    storage_url: str = ""
    admin: Identity | None = None
    _identities: dict[str, Identity] = field(default_factory=dict)

    # -- public surface -------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.admin is not None, "start() first"
        return self.admin.kubeconfig

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines; see ``AUDIT_POLICY``)."""
        return self.log_dir / "audit.log"

    def env(self) -> dict[str, str]:
        """The environment for kubectl/helm subprocesses: ``KUBECONFIG`` of the admin user."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def identity(self, name: str) -> Identity:
        return self._identities[name]

    def start(self) -> ControlPlane:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every started process, newest first. Safe to call more than once.

        ``processes`` keeps the stopped processes (for their exit codes) until the next ``start()``.
        """
        errors: list[str] = []
        for process in reversed(self.processes):
            try:
                process.stop(self.stop_grace)
            except Exception as exc:  # keep stopping the others
                errors.append(f"{process.name}: {exc}")
        if errors:
            raise ControlPlaneError("failed to stop: " + "; ".join(errors))

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET ``path`` from the API server as the admin user: (status, body)."""
        return _https_get(self.server + path, self._admin_context(), timeout)

    # -- start-up -------------------------------------------------------------------------------

    def _start(self) -> None:
        self.processes = []
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.binaries is None:
            self.binaries = ensure_binaries()
        started = time.monotonic()
        self._make_pki()
        self._start_storage()
        self._start_apiserver()
        self._start_controller_manager()
        self._start_scheduler()
        self._write_info(time.monotonic() - started)

    def _make_pki(self) -> None:
        directory = self.pki_dir
        self.ca = pki.make_ca(directory)
        self.sa_keys = pki.make_service_account_keys(directory)
        self.apiserver_port = free_port()
        self.serving = pki.issue(
            self.ca,
            "apiserver",
            "kube-apiserver",
            client=False,
            server=True,
            hosts=(
                LOOPBACK,
                KUBERNETES_SERVICE_IP,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ),
        )
        # The aggregation layer: the API server proxies to extension API servers with this client
        # certificate; they, and the controller-manager and scheduler, trust it through the
        # extension-apiserver-authentication ConfigMap the API server publishes.
        self.front_proxy_ca = pki.make_ca(directory, "pyetcd-e2e-front-proxy-ca", "front-proxy-ca")
        self.front_proxy_client = pki.issue(
            self.front_proxy_ca, "front-proxy-client", "front-proxy-client"
        )
        # The API server's client certificate towards kubelets (logs, exec, port-forward).
        self.kubelet_client = pki.issue(
            self.ca,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
        )
        for name, user, groups in (
            ("admin", "kubernetes-admin", ("system:masters",)),
            ("controller-manager", "system:kube-controller-manager", ()),
            ("scheduler", "system:kube-scheduler", ()),
        ):
            cert = pki.issue(self.ca, name, user, organizations=groups)
            kubeconfig = self.workdir / f"{name}.kubeconfig"
            write_kubeconfig(kubeconfig, server=self.server, ca=self.ca.cert, cert=cert, user=user)
            self._identities[name] = Identity(user, kubeconfig, cert)
        self.admin = self._identities["admin"]

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(name, argv, self.log_dir / f"{name}.log", env)
        self.processes.append(process)
        process.start()
        return process

    def _start_storage(self) -> None:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://{LOOPBACK}:{client_port}"
        peer_url = f"http://{LOOPBACK}:{peer_port}"
        name = "e2e"
        binary = PYETCD if self.storage == "pyetcd" else DEBIAN_ETCD
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(f"storage binary {binary} not found")
        argv = [
            str(binary),
            f"--name={name}",
            f"--data-dir={self.workdir / 'storage'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={name}={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",  # etcd 3.4 defaults to the deprecated capnslog; pyetcd takes zap only
        ]
        # Keep the environment clean of ETCD_* variables that both servers would honour.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        process = self._spawn(self.storage, argv, env)
        self.storage_url = client_url

        def healthy() -> bool:
            status, body = _http_get(client_url + "/health", timeout=2.0)
            return status == 200 and json.loads(body).get("health") in (True, "true")

        wait_until(
            f"{self.storage} /health at {client_url}",
            healthy,
            self.start_timeout,
            alive=process.check_alive,
        )

    def _start_apiserver(self) -> None:
        assert self.binaries is not None
        audit_policy = self.workdir / "audit-policy.json"
        audit_policy.write_text(json.dumps(AUDIT_POLICY, indent=2) + "\n")
        argv = [
            str(self.binaries.path("kube-apiserver")),
            f"--v={self.verbosity}",
            f"--advertise-address={LOOPBACK}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.apiserver_port}",
            f"--etcd-servers={self.storage_url}",
            f"--etcd-compaction-interval={self.compaction_interval}",
            f"--client-ca-file={self.ca.cert}",
            f"--tls-cert-file={self.serving.cert}",
            f"--tls-private-key-file={self.serving.key}",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            f"--kubelet-certificate-authority={self.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={self.sa_keys.cert}",
            f"--service-account-signing-key-file={self.sa_keys.key}",
            f"--api-audiences={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={self.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={self.front_proxy_client.cert}",
            f"--proxy-client-key-file={self.front_proxy_client.key}",
            # The lease reconciler would publish --advertise-address in the "kubernetes" Endpoints,
            # and Endpoints refuse loopback addresses (every 10 s: "may not be in the loopback
            # range"). The Service and its ClusterIP exist regardless.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            *self.apiserver_args,
        ]
        process = self._spawn("kube-apiserver", argv)
        context = self._admin_context()

        def ready() -> bool:
            status, _ = _https_get(self.server + "/readyz", context, timeout=5.0)
            return status == 200

        wait_until(
            f"kube-apiserver /readyz at {self.server}",
            ready,
            self.start_timeout,
            alive=process.check_alive,
        )

    def _component_flags(self, name: str, port: int) -> list[str]:
        kubeconfig = self.identity(name).kubeconfig
        return [
            f"--v={self.verbosity}",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / (name + '-certs')}",
            "--leader-elect=false",
        ]

    def _start_controller_manager(self) -> None:
        assert self.binaries is not None
        port = free_port()
        argv = [
            str(self.binaries.path("kube-controller-manager")),
            *self._component_flags("controller-manager", port),
            f"--service-account-private-key-file={self.sa_keys.key}",
            f"--root-ca-file={self.ca.cert}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={self.ca.cert}",
            f"--cluster-signing-key-file={self.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
            "--cluster-name=pyetcd-e2e",
            "--controllers=*,tokencleaner",
            # The process kubelet renews its node's Lease every 10 s: a node is NotReady after
            # three missed renewals (Kubernetes' default waits 50 s), which is what the
            # node-loss scenarios wait for.
            "--node-monitor-grace-period=30s",
            *self.controller_manager_args,
        ]
        process = self._spawn("kube-controller-manager", argv)
        self._wait_component_healthy(process, port)

    def _start_scheduler(self) -> None:
        assert self.binaries is not None
        port = free_port()
        argv = [
            str(self.binaries.path("kube-scheduler")),
            *self._component_flags("scheduler", port),
            *self.scheduler_args,
        ]
        process = self._spawn("kube-scheduler", argv)
        self._wait_component_healthy(process, port)

    def _wait_component_healthy(self, process: Process, port: int) -> None:
        # Components serve with a self-signed certificate of their own (in --cert-dir).
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        url = f"https://{LOOPBACK}:{port}/healthz"

        def healthy() -> bool:
            status, _ = _https_get(url, context, timeout=5.0)
            return status == 200

        wait_until(f"{process.name} {url}", healthy, self.start_timeout, alive=process.check_alive)

    def _admin_context(self) -> ssl.SSLContext:
        assert self.admin is not None
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(self.admin.cert.cert), str(self.admin.cert.key))
        return context

    def _write_info(self, seconds: float) -> None:
        info = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "storage": self.storage,
            "storage_url": self.storage_url,
            "kubernetes": self.binaries.version if self.binaries else None,
            "start_seconds": round(seconds, 2),
            "pids": {p.name: p.pid for p in self.processes},
            "logs": {p.name: str(p.log_path) for p in self.processes},
            "audit_log": str(self.audit_log),
        }
        (self.workdir / "controlplane.json").write_text(json.dumps(info, indent=2) + "\n")


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, cert: pki.KeyPair, user: str, context: str = "pyetcd-e2e"
) -> None:
    """A kubeconfig with one cluster, one user (client certificate files) and one context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert.cert), "client-key": str(cert.key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    # JSON is YAML: kubectl, helm and client-go read it as a kubeconfig.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _http_get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _https_get(url: str, context: ssl.SSLContext, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def running(workdir: Path, storage: Storage = "etcd") -> Iterator[ControlPlane]:
    """``with running(dir) as cp:`` - a started control plane, always stopped afterwards."""
    plane = ControlPlane(workdir, storage=storage)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m e2e.controlplane [--storage pyetcd] DIR``: start; run until SIGINT/SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(description="run the e2e control plane until interrupted")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--storage", choices=["etcd", "pyetcd"], default="etcd")
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds start() or the wait below; both stop every process

    # Installed before start(), so a SIGTERM during start-up also stops what already runs.
    signal.signal(signal.SIGTERM, terminate)
    try:
        with running(args.workdir.resolve(), args.storage) as plane:
            print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
            while True:
                plane.check_alive()
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
