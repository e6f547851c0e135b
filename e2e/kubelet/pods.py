"""One pod on one node: sandbox, volumes, init containers, containers, probes, status, stop.

A :class:`PodWorker` owns everything of a pod: its network namespace and address
(:mod:`e2e.kubelet.netns`), its directory ``<pods>/<ns>_<name>_<uid>/`` (hosts file, resolv.conf,
volumes, container logs, launch specs), and one supervisor task per container that starts the
process through :mod:`e2e.kubelet.launch`, waits for it, and restarts it per ``restartPolicy``
with exponential back-off (CrashLoopBackOff). Probes run from the cluster network, as a kubelet
probes from its node. Every change marks the status dirty; one writer task patches
``pods/<name>/status`` with the phase, conditions and container statuses it derives.

Deletion (``deletionTimestamp``): SIGTERM to every container's process group, SIGKILL after
the grace period, a final status, then the kubelet's own DELETE with grace 0, then the sandbox
is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from e2e.kubelet import images, netns, podspec
from e2e.kubelet.api import Api, ApiError, Json
from e2e.kubelet.services import DNS_SERVICE_IP, KUBERNETES_SERVICE_IP, ServiceView

log = logging.getLogger(__name__)

LAUNCHER = str(Path(__file__).with_name("launch.py"))
BACKOFF_CAP = 300.0
BACKOFF_RESET = 600.0
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# How often Secret and ConfigMap volumes are brought up to date with their source: a real
# kubelet takes up to its sync period plus its cache's TTL (a minute or two); shorter here, so
# that scenarios waiting for a renewed certificate do not wait as long.
VOLUME_SYNC_SECONDS = 5.0


def iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


class ConfigError(RuntimeError):
    """The pod cannot start yet (a missing ConfigMap key, an unbound claim, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class PodContext:
    """What a pod worker needs from its node and kubelet."""

    node: str
    api: Api
    network: netns.ClusterNetwork
    services: ServiceView
    pods_dir: Path
    domain: str
    allocate_ip: Callable[[], str]
    release_ip: Callable[[str], None]
    backoff_base: float = 10.0
    allocatable: dict[str, str] = field(default_factory=dict)


# What a kubelet keeps of a failed container's log as its termination message.
TERMINATION_MESSAGE_LINES = 80
TERMINATION_MESSAGE_BYTES = 2048


@dataclass
class LogRun:
    """One run of a container in its log file ``logs/<container>.log``: where its ``--- start``
    line begins and where its output begins. Every run appends to the same file; the next run's
    ``marker`` is where this one's output ends, so ``kubectl logs [--previous]`` can serve a
    run alone (:mod:`e2e.kubelet.logs`)."""

    marker: int
    start: int
    process: asyncio.subprocess.Process | None = None

    @property
    def live(self) -> bool:
        """Its process may still write (not started yet, or not reaped)."""
        return self.process is None or self.process.returncode is None


@dataclass
class Container:
    """Runtime state of one container."""

    spec: Json
    init: bool
    restart_count: int = 0
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    started_once: bool = False
    ready: bool = False
    process: asyncio.subprocess.Process | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    started_at: float = 0.0
    stopping: bool = False
    runs: list[LogRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self, pod_uid: str) -> Json:
        state = {k: v for k, v in self.state.items() if not k.startswith("_")}
        out: Json = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"e2e://{images.repository(self.spec.get('image', ''))}",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": "running" in self.state,
            "state": state,
            "lastState": self.last_state,
        }
        if self.started_once:
            out["containerID"] = f"e2e://{pod_uid}/{self.name}/{self.restart_count}"
        return out


class PodWorker:
    """Runs one pod until it is deleted, stopped with its node, or finished."""

    def __init__(self, ctx: PodContext, pod: Json) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.netns = ""
        self.veth = ""
        self.ip = ""
        self.volumes: dict[str, Path] = {}
        # Secret and ConfigMap volumes: (API kind, reference, directory), refreshed while the
        # pod runs (``_refresh_volumes``).
        self._synced: list[tuple[str, Json, Path]] = []
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        previous = {
            s["name"]: int(s.get("restartCount", 0))
            for s in (pod.get("status") or {}).get("containerStatuses") or []
        }
        self.init_containers = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [
            Container(c, False, restart_count=previous.get(c["name"], 0))
            for c in spec["containers"]
        ]
        self.sandbox_ready = False
        self.initialized = not self.init_containers
        self.init_failed = False
        self.start_time = iso()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.waiting_reason: tuple[str, str] | None = None
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self._grace: float = float(spec.get("terminationGracePeriodSeconds", 30))

    # -- public ------------------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: Json) -> None:
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self._stop.is_set():
            self._grace = float(meta.get("deletionGracePeriodSeconds", self._grace))
            self._stop.set()

    def all_containers(self) -> list[Container]:
        return [*self.init_containers, *self.containers]

    def container(self, name: str) -> Container:
        for container in self.all_containers():
            if container.name == name:
                return container
        raise KeyError(f"pod {self.namespace}/{self.name} has no container {name!r}")

    async def abandon(self) -> None:
        """The node died: kill everything at once, tell the API server nothing."""
        self.finished = True
        for task in self._tasks:
            task.cancel()
        if self.task is not None:
            self.task.cancel()
        for container in self.all_containers():
            _signal(container, signal.SIGKILL)
        for container in self.all_containers():
            if container.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    await container.process.wait()
        await self._teardown()

    async def deleted(self) -> None:
        """The pod object is gone (force-deleted): stop now, no more status."""
        self.finished = True
        self._grace = min(self._grace, 2.0)
        self._stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def info(self) -> Json:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "node": self.ctx.node,
            "ip": self.ip,
            "netns": self.netns,
            "veth": self.veth,
            "dir": str(self.dir),
            "volumes": {k: str(v) for k, v in self.volumes.items()},
            "containers": {
                c.name: {
                    "pid": c.process.pid if c.process and c.process.returncode is None else None,
                    "restartCount": c.restart_count,
                    "ready": c.ready,
                    "argv": c.argv,
                }
                for c in self.all_containers()
            },
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        writer = asyncio.create_task(self._status_writer())
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s failed", self.namespace, self.name)
        finally:
            await self._stop_containers()
            if not self.finished:
                await self._final_status()
                await self._delete_from_api()
            writer.cancel()
            await self._teardown()

    async def _lifecycle(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                await self._make_sandbox()
                break
            except (ConfigError, ApiError, aiohttp.ClientError, TimeoutError) as exc:
                # Also a 403: the Node authoriser learns of a new pod's claims a moment later.
                reason = exc.reason if isinstance(exc, ConfigError) else "ContainerCreating"
                self.waiting_reason = (reason, str(exc))
                self._dirty.set()
                attempt += 1
                if await self._wait_stop(min(0.5 * attempt, 5.0)):
                    return
        if self._stop.is_set():
            return
        self.waiting_reason = None
        self.sandbox_ready = True
        self._dirty.set()
        if self._synced:
            self._tasks.append(asyncio.create_task(self._refresh_volumes()))
        for container in self.init_containers:
            if not await self._run_init(container):
                return
        self.initialized = True
        self._dirty.set()
        for container in self.containers:
            self._tasks.append(asyncio.create_task(self._supervise(container)))
        await self._stop.wait()

    async def _wait_stop(self, seconds: float) -> bool:
        """Sleep, unless the pod is stopping; True when it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    # -- sandbox -----------------------------------------------------------------------------------

    async def _make_sandbox(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        await self._make_volumes()
        if not self.netns:
            self.ip = self.ctx.allocate_ip()
            self.netns, self.veth = self.ctx.network.pod_namespace()
            await self.ctx.network.add_pod(self.netns, self.veth, self.ip)
        spec = self.pod["spec"]
        hostname = spec.get("hostname") or self.name
        subdomain = spec.get("subdomain")
        fqdn = (
            f"{hostname}.{subdomain}.{self.namespace}.svc.{self.ctx.domain}" if subdomain else None
        )
        (self.dir / "hosts").write_text(podspec.hosts_file(self.ip, hostname, fqdn))
        (self.dir / "resolv.conf").write_text(
            podspec.resolv_conf(self.namespace, self.ctx.domain, DNS_SERVICE_IP)
        )

    async def _teardown(self) -> None:
        if self.netns:
            await self.ctx.network.remove_pod(self.netns)
            self.netns = ""
        if self.ip:
            self.ctx.release_ip(self.ip)
            self.ip = ""
        # Volumes of claims live elsewhere (the provisioner's directories) and stay.
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _get(self, kind: str, name: str, optional: bool) -> Json | None:
        obj = await self.ctx.api.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        if obj is None and not optional:
            raise ConfigError("CreateContainerConfigError", f"{kind} {name!r} not found")
        return obj

    async def _source_files(self, kind: str, ref: Json) -> dict[str, bytes]:
        obj = await self._get(kind, ref["name"], bool(ref.get("optional")))
        if obj is None:
            return {}
        data = podspec.decode_data(obj, kind == "secrets")
        return podspec.select_items(data, ref.get("items"))

    def _field_files(self, items: list[Json]) -> dict[str, bytes]:
        return {
            item["path"]: podspec.field_ref(
                self.pod, item["fieldRef"]["fieldPath"], self.ip
            ).encode()
            for item in items
            if "fieldRef" in item
        }

    async def _token(self, source: Json) -> bytes:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        audience = source.get("audience")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": int(source.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.name,
                    "uid": self.uid,
                },
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        try:
            reply = await self.ctx.api.request("POST", path, body)
        except ApiError as exc:
            raise ConfigError("CreateContainerConfigError", f"token: {exc}") from exc
        return str(reply["status"]["token"]).encode()

    async def _make_volumes(self) -> None:
        root = self.dir / "volumes"
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            target = root / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume:
                podspec.write_files(
                    target, await self._source_files("configmaps", volume["configMap"])
                )
                self._synced.append(("configmaps", volume["configMap"], target))
            elif "secret" in volume:
                ref = {**volume["secret"], "name": volume["secret"]["secretName"]}
                podspec.write_files(target, await self._source_files("secrets", ref), 0o600)
                self._synced.append(("secrets", ref, target))
            elif "downwardAPI" in volume:
                podspec.write_files(target, self._field_files(volume["downwardAPI"]["items"]))
            elif "projected" in volume:
                files: dict[str, bytes] = {}
                for source in volume["projected"].get("sources") or []:
                    if "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        files[token["path"]] = await self._token(token)
                    elif "configMap" in source:
                        files.update(await self._source_files("configmaps", source["configMap"]))
                    elif "secret" in source:
                        files.update(await self._source_files("secrets", source["secret"]))
                    elif "downwardAPI" in source:
                        files.update(self._field_files(source["downwardAPI"]["items"]))
                podspec.write_files(target, files)
            elif "persistentVolumeClaim" in volume:
                target = await self._claim_path(volume["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in volume:
                target = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") == "DirectoryOrCreate":
                    target.mkdir(parents=True, exist_ok=True)
            else:
                raise ConfigError("CreateContainerConfigError", f"unsupported volume {name!r}")
            self.volumes[name] = target

    async def _refresh_volumes(self) -> None:
        """Rewrite the files of Secret and ConfigMap volumes whose source changed, as the real
        kubelet does on its sync (every minute or so; here every ``VOLUME_SYNC_SECONDS``): a
        renewed certificate reaches a running member without a restart. Not ``subPath``
        mounts, which a real kubelet never updates either. Changed files are written aside
        first and then renamed into place one after the other (the real kubelet swaps a
        directory symlink: one step), so a reader sees the new set within microseconds."""
        while not await self._wait_stop(VOLUME_SYNC_SECONDS):
            for kind, ref, target in self._synced:
                try:
                    files = await self._source_files(kind, ref)
                except (ConfigError, ApiError, aiohttp.ClientError, TimeoutError) as exc:
                    log.info("volume sync of %s/%s: %s", self.namespace, self.name, exc)
                    continue
                mode = 0o600 if kind == "secrets" else 0o644
                podspec.update_files(target, files, mode)

    async def _claim_path(self, claim_name: str) -> Path:
        claim = await self._get("persistentvolumeclaims", claim_name, optional=False)
        assert claim is not None
        volume_name = claim["spec"].get("volumeName")
        if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise ConfigError("ContainerCreating", f"claim {claim_name!r} is not bound yet")
        volume = await self.ctx.api.get(f"/api/v1/persistentvolumes/{volume_name}")
        source = volume["spec"].get("local") or volume["spec"].get("hostPath")
        if not source:
            raise ConfigError("CreateContainerConfigError", f"volume {volume_name} has no path")
        path = Path(source["path"])
        path.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one directory
        return path

    # -- environment -------------------------------------------------------------------------------

    async def _env(self, container: Json) -> dict[str, str]:
        spec = self.pod["spec"]
        hostname = spec.get("hostname") or self.name
        env: dict[str, str] = {"PATH": podspec.DEFAULT_PATH, "HOSTNAME": hostname}
        if spec.get("enableServiceLinks", True):
            env.update(self.ctx.services.service_env(self.namespace))
        env.update(
            {
                "KUBERNETES_SERVICE_HOST": KUBERNETES_SERVICE_IP,
                "KUBERNETES_SERVICE_PORT": "443",
                "KUBERNETES_SERVICE_PORT_HTTPS": "443",
                "KUBERNETES_PORT": f"tcp://{KUBERNETES_SERVICE_IP}:443",
                "KUBERNETES_PORT_443_TCP": f"tcp://{KUBERNETES_SERVICE_IP}:443",
                "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
                "KUBERNETES_PORT_443_TCP_PORT": "443",
                "KUBERNETES_PORT_443_TCP_ADDR": KUBERNETES_SERVICE_IP,
            }
        )
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key in source:
                    ref = source[key]
                    obj = await self._get(kind, ref["name"], bool(ref.get("optional")))
                    if obj is not None:
                        for k, v in podspec.decode_data(obj, kind == "secrets").items():
                            env[prefix + k] = v.decode(errors="replace")
        for item in container.get("env") or []:
            value = await self._env_value(container, item, env)
            if value is not None:
                env[item["name"]] = value
        env.setdefault("HOME", "/root")
        return env

    async def _env_value(self, container: Json, item: Json, env: dict[str, str]) -> str | None:
        if "valueFrom" not in item:
            return podspec.expand(str(item.get("value", "")), env)
        source = item["valueFrom"]
        if "fieldRef" in source:
            return podspec.field_ref(self.pod, source["fieldRef"]["fieldPath"], self.ip)
        if "resourceFieldRef" in source:
            return podspec.resource_ref(
                container, source["resourceFieldRef"]["resource"], self.ctx.allocatable
            )
        for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
            if key in source:
                ref = source[key]
                optional = bool(ref.get("optional"))
                obj = await self._get(kind, ref["name"], optional)
                data = podspec.decode_data(obj, kind == "secrets") if obj else {}
                if ref["key"] not in data:
                    if optional:
                        return None
                    raise ConfigError(
                        "CreateContainerConfigError",
                        f"couldn't find key {ref['key']} in {kind[:-1]} {ref['name']}",
                    )
                return data[ref["key"]].decode(errors="replace")
        raise ConfigError("CreateContainerConfigError", f"unsupported env source {item}")

    def _mounts(self, container: Json) -> list[Json]:
        mounts: list[Json] = []
        for mount in container.get("volumeMounts") or []:
            source = self.volumes.get(mount["name"])
            if source is None:
                raise ConfigError("CreateContainerConfigError", f"no volume {mount['name']!r}")
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            mounts.append(
                {
                    "source": str(source),
                    "target": mount["mountPath"],
                    "readOnly": bool(mount.get("readOnly")),
                }
            )
        mounts.append({"source": str(self.dir / "hosts"), "target": "/etc/hosts"})
        mounts.append({"source": str(self.dir / "resolv.conf"), "target": "/etc/resolv.conf"})
        return mounts

    def _launch_spec(self, container: Container, argv: list[str], tag: str) -> Path:
        staging = self.dir / "staging" / f"{container.name}-{tag}"
        staging.mkdir(parents=True, exist_ok=True)
        spec = {
            "netns": os.path.join(netns.NETNS_DIR, self.netns),
            "hostname": self.pod["spec"].get("hostname") or self.name,
            "mounts": self._mounts(container.spec),
            "keep": list(images.RUNTIME_PATHS),
            "staging": str(staging),
            "workingDir": container.spec.get("workingDir") or "/",
            "argv": argv,
            "env": container.env,
        }
        path = self.dir / f"{container.name}-{tag}.launch.json"
        path.write_text(json.dumps(spec))
        return path

    # -- containers --------------------------------------------------------------------------------

    async def _prepare(self, container: Container) -> None:
        container.env = await self._env(container.spec)
        command = [podspec.expand(a, container.env) for a in container.spec.get("command") or []]
        args = [podspec.expand(a, container.env) for a in container.spec.get("args") or []]
        try:
            container.argv = images.resolve(container.spec.get("image", ""), command, args)
        except images.ImageNotMappedError as exc:
            raise ConfigError("ErrImagePull", str(exc)) from exc

    async def _start(self, container: Container) -> asyncio.subprocess.Process:
        spec_path = self._launch_spec(container, container.argv, "run")
        log_path = self.dir / "logs" / f"{container.name}.log"
        read_end, write_end = os.pipe()
        try:
            with open(log_path, "ab") as log_file:  # noqa: ASYNC230 - a local file, once
                marker = os.fstat(log_file.fileno()).st_size
                line = f"--- start {iso()} {container.argv}\n".encode()
                log_file.write(line)
                log_file.flush()
                run = LogRun(marker, marker + len(line))
                container.runs.append(run)
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", LAUNCHER, str(spec_path), str(write_end),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                    start_new_session=True, pass_fds=(write_end,),
                )  # fmt: skip
        finally:
            os.close(write_end)
        # EOF once the launcher's exec succeeded (close-on-exec), else its error message.
        error = await asyncio.get_running_loop().run_in_executor(None, _read_all, read_end)
        if error:
            log.info("%s/%s %s: %s", self.namespace, self.name, container.name, error)
        container.process = process
        run.process = process
        container.started_at = time.time()
        container.started_once = True
        container.state = {"running": {"startedAt": iso(container.started_at)}}
        self._dirty.set()
        return process

    def _terminated(self, container: Container, code: int) -> Json:
        exit_code = code if code >= 0 else 128 - code
        state: Json = {
            "exitCode": exit_code,
            "reason": podspec.exit_reason(exit_code),
            "startedAt": iso(container.started_at),
            "finishedAt": iso(),
            "containerID": f"e2e://{self.uid}/{container.name}/{container.restart_count}",
        }
        if code < 0:
            state["signal"] = -code
        policy = container.spec.get("terminationMessagePolicy")
        if exit_code != 0 and policy == "FallbackToLogsOnError" and container.runs:
            message = self._log_tail(container)
            if message:
                state["message"] = message
        return state

    def _log_tail(self, container: Container) -> str:
        """The kubelet's FallbackToLogsOnError message: the end of the run's output, at most
        80 lines and 2048 bytes (this kubelet has no termination-log file to read first)."""
        path = self.dir / "logs" / f"{container.name}.log"
        try:
            with open(path, "rb") as f:
                f.seek(container.runs[-1].start)
                output = f.read()
        except OSError:
            return ""
        tail = b"\n".join(output.splitlines()[-TERMINATION_MESSAGE_LINES:])
        return tail[-TERMINATION_MESSAGE_BYTES:].decode(errors="replace")

    async def _run_once(self, container: Container) -> int | None:
        """Start the container and wait for it; None when it could not start."""
        try:
            await self._prepare(container)
        except (ConfigError, ApiError, aiohttp.ClientError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, ConfigError) else "CreateContainerConfigError"
            container.state = {"waiting": {"reason": reason, "message": str(exc)}}
            self._dirty.set()
            return None
        process = await self._start(container)
        probes = [
            asyncio.create_task(self._probe_loop(container, kind))
            for kind in ("readinessProbe", "livenessProbe")
            if container.spec.get(kind)
        ]
        if not container.spec.get("readinessProbe") and not container.init:
            container.ready = True
            self._dirty.set()
        try:
            code = await process.wait()
        finally:
            for probe in probes:
                probe.cancel()
            container.ready = False
        container.state = {"terminated": self._terminated(container, code)}
        self._dirty.set()
        log.info("%s/%s %s exited %s", self.namespace, self.name, container.name, code)
        return code

    async def _run_init(self, container: Container) -> bool:
        failures = 0
        while not self._stop.is_set():
            code = await self._run_once(container)
            if code == 0:
                return True
            if self._stop.is_set():
                return False
            if code is not None and self.restart_policy == "Never":
                self.init_failed = True
                self._dirty.set()
                return False
            if code is not None:
                failures += 1
                container.last_state = container.state
                container.restart_count += 1
            if await self._backoff(container, failures):
                return False
        return False

    async def _supervise(self, container: Container) -> None:
        failures = 0
        while not self._stop.is_set():
            code = await self._run_once(container)
            if self._stop.is_set():
                return
            if code is None:
                if await self._wait_stop(1.0):
                    return
                continue
            if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
                return
            failures = 0 if time.time() - container.started_at > BACKOFF_RESET else failures + 1
            container.last_state = container.state
            container.restart_count += 1
            if await self._backoff(container, failures):
                return

    async def _backoff(self, container: Container, failures: int) -> bool:
        delay = min(self.ctx.backoff_base * 2 ** max(failures - 1, 0), BACKOFF_CAP)
        message = f"back-off {delay:.0f}s restarting failed container={container.name}"
        container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        self._dirty.set()
        return await self._wait_stop(delay)

    async def _stop_containers(self) -> None:
        for task in self._tasks:
            task.cancel()
        running = [c for c in self.all_containers() if c.process and c.process.returncode is None]
        for container in running:
            container.stopping = True
            _signal(container, signal.SIGTERM)
        if running:
            waits = [c.process.wait() for c in running if c.process is not None]
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=max(self._grace, 0.0)
            )
            for container in running:
                if container.process is not None and container.process.returncode is None:
                    _signal(container, signal.SIGKILL)
            for future in pending:
                await future
        for container in running:
            assert container.process is not None
            code = container.process.returncode
            if code is not None:
                container.state = {"terminated": self._terminated(container, code)}
            container.ready = False

    # -- probes ------------------------------------------------------------------------------------

    def _port(self, container: Json, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for item in container.get("ports") or []:
            if item.get("name") == port:
                return int(item["containerPort"])
        raise ValueError(f"no port named {port!r}")

    async def probe(self, container: Container, probe: Json) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                http = probe["httpGet"]
                port = self._port(container.spec, http["port"])
                return await _http_probe(
                    self.ctx.network.name, http.get("host") or self.ip, port,
                    http.get("path", "/"), timeout,
                )  # fmt: skip
            if "tcpSocket" in probe:
                port = self._port(container.spec, probe["tcpSocket"]["port"])
                _, writer = await netns.open_connection_in(
                    self.ctx.network.name, self.ip, port, timeout
                )
                writer.close()
                return True
            if "exec" in probe:
                code, _, _ = await self.exec(container.name, probe["exec"]["command"], timeout)
                return code == 0
        except (OSError, TimeoutError, ValueError, ConfigError, images.ImageNotMappedError):
            return False
        return False

    async def _probe_loop(self, container: Container, kind: str) -> None:
        probe = container.spec[kind]
        period = float(probe.get("periodSeconds", 10))
        success_needed = int(probe.get("successThreshold", 1))
        failure_needed = int(probe.get("failureThreshold", 3))
        successes = failures = 0
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        while True:
            ok = await self.probe(container, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "readinessProbe":
                if ok and successes >= success_needed and not container.ready:
                    container.ready = True
                    self._dirty.set()
                elif not ok and failures >= failure_needed and container.ready:
                    container.ready = False
                    self._dirty.set()
            elif failures >= failure_needed:
                log.info("%s/%s %s failed liveness", self.namespace, self.name, container.name)
                grace = probe.get("terminationGracePeriodSeconds", self._grace)
                await _kill(container, float(grace))
                return
            await asyncio.sleep(period)

    @contextlib.asynccontextmanager
    async def exec_process(
        self, container_name: str, argv: list[str], *, stdin: bool = False
    ) -> AsyncIterator[asyncio.subprocess.Process]:
        """Start ``argv`` in a container's namespaces, mounts and environment (stdout and stderr
        piped, stdin piped when asked); killed, with its process group, if still running when
        the block ends."""
        container = self.container(container_name)
        if not self.netns:
            raise ConfigError("NotRunning", "the pod has no sandbox")
        if not container.env:
            container.env = await self._env(container.spec)
        row = images.lookup(container.spec.get("image", ""))
        local = [images.map_command(row, argv[0]), *argv[1:]]
        spec_path = self._launch_spec(container, local, f"exec{time.monotonic_ns()}")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", LAUNCHER, str(spec_path),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            try:
                yield process
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
        finally:
            spec_path.unlink(missing_ok=True)

    async def exec(
        self, container_name: str, argv: list[str], seconds: float
    ) -> tuple[int, str, str]:
        """Run ``argv`` in a container to its end (killed after ``seconds``: TimeoutError)."""
        async with self.exec_process(container_name, argv) as process:
            out, err = await asyncio.wait_for(process.communicate(), seconds)
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    # -- status ------------------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool) -> Json:
        status = "True" if ok else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, iso())
        return {"type": kind, "status": status, "lastTransitionTime": self.transitions[kind][1]}

    def status(self) -> Json:
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        phase = podspec.pod_phase(
            self.restart_policy,
            self.init_failed,
            self.initialized,
            [
                (
                    next(iter(c.state)),
                    c.state.get("terminated", {}).get("exitCode"),
                    c.started_once,
                )
                for c in self.containers
            ],
        )
        scheduled = [
            c
            for c in (self.pod.get("status") or {}).get("conditions") or []
            if c["type"] == "PodScheduled"
        ]
        conditions = [
            *scheduled,
            self._condition("PodReadyToStartContainers", self.sandbox_ready),
            self._condition("Initialized", self.initialized),
            self._condition("ContainersReady", ready),
            self._condition("Ready", ready),
        ]
        if self.waiting_reason:
            reason, message = self.waiting_reason
            for container in self.all_containers():
                if not container.started_once:
                    container.state = {"waiting": {"reason": reason, "message": message}}
        status: Json = {
            "phase": phase,
            "conditions": conditions,
            "startTime": self.start_time,
            "containerStatuses": [c.status(self.uid) for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status(self.uid) for c in self.init_containers]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        return status

    async def _patch_status(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        await self.ctx.api.patch_merge(path, {"status": self.status()})

    async def _status_writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._patch_status()
            except ApiError as exc:
                if exc.status == 404:
                    return
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
                self._dirty.set()
                await asyncio.sleep(1.0)
            except Exception as exc:
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
                self._dirty.set()
                await asyncio.sleep(1.0)

    async def _final_status(self) -> None:
        with contextlib.suppress(Exception):
            await self._patch_status()

    async def _delete_from_api(self) -> None:
        if not self.pod["metadata"].get("deletionTimestamp"):
            return
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        try:
            await self.ctx.api.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("delete %s/%s: %s", self.namespace, self.name, exc)


def _read_all(fd: int) -> str:
    """Read a pipe to EOF and close it."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _signal(container: Container, signum: signal.Signals) -> None:
    process = container.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


async def _kill(container: Container, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (a liveness failure, a fault)."""
    process = container.process
    if process is None or process.returncode is not None:
        return
    _signal(container, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        _signal(container, signal.SIGKILL)


async def _http_probe(network: str, host: str, port: int, path: str, seconds: float) -> bool:
    reader, writer = await netns.open_connection_in(network, host, port, seconds)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        writer.write((request + "User-Agent: kube-probe/1.34\r\n\r\n").encode())
        line = await asyncio.wait_for(reader.readline(), seconds)
    finally:
        writer.close()
    parts = line.split()
    return len(parts) >= 2 and 200 <= int(parts[1]) < 400
