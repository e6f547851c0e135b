"""The plugin's only way to the cluster: ``kubectl``, run as a subprocess, and the few JSON verbs
the commands need over it.

Running kubectl (rather than a Kubernetes client library) is what a kubectl plugin is expected
to do: kubectl launched it, so kubectl is there and already honours the user's kubeconfig,
context, exec credential plugins and proxies; ``--context`` and ``--kubeconfig`` are passed
through. The ``Runner`` protocol is the seam the tests replace with a fake.

kubectl's failures become one ``PluginError`` each, with one line a user can act on
(``classify``): the object does not exist, RBAC refuses, the CRD is not installed, kubectl is
not on PATH. Resources are named with their API group (``etcdclusters.etcd.pyetcd.io``): other
etcd operators have ``etcdclusters`` of their own, and a short name would pick whichever
kubectl finds first.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from etcd_operator.api import etcdbackup, v1alpha1
from etcd_operator.plugin.errors import (
    AlreadyExistsError,
    ForbiddenError,
    KubectlMissingError,
    NotFoundError,
    PluginError,
)

Json = dict[str, Any]

CLUSTERS = f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}"
BACKUPS = f"{etcdbackup.PLURAL}.{v1alpha1.GROUP}"

# The kinds as users know them, for messages.
KINDS = {CLUSTERS: v1alpha1.KIND, BACKUPS: etcdbackup.KIND}

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Completed:
    """What one kubectl run returned."""

    code: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs ``kubectl ARGS`` (with ``stdin`` as its input) against the user's cluster."""

    def run(self, args: Sequence[str], stdin: str | None = None) -> Completed: ...


@dataclass(frozen=True)
class KubectlProcess:
    """The real runner: the ``kubectl`` on PATH, with the plugin's --context/--kubeconfig."""

    binary: str = "kubectl"
    context: str | None = None
    kubeconfig: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def command(self, args: Sequence[str]) -> list[str]:
        passed = [f"--context={self.context}"] if self.context else []
        passed += [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return [self.binary, *passed, *args]

    def run(self, args: Sequence[str], stdin: str | None = None) -> Completed:
        try:
            done = subprocess.run(
                self.command(args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise KubectlMissingError(
                f"{self.binary} not found on PATH: the plugin runs kubectl to reach the cluster"
            ) from None
        except subprocess.TimeoutExpired:
            raise PluginError(
                f"kubectl {' '.join(args[:2])} gave no answer in {self.timeout:.0f}s"
            ) from None
        return Completed(done.returncode, done.stdout, done.stderr)


def _error_line(stderr: str) -> str:
    """The line of kubectl's stderr that says what failed (warnings come before it)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error"):
            return line
    return lines[-1] if lines else ""


def classify(args: Sequence[str], done: Completed) -> PluginError:
    """The error a failed kubectl run stands for, with one line saying it."""
    line = _error_line(done.stderr)
    verb = args[0] if args else "kubectl"
    if "(NotFound)" in line:
        return NotFoundError(line.split("): ", 1)[-1])
    if "(Forbidden)" in line:
        return ForbiddenError(f"not allowed: {line.split('): ', 1)[-1]}")
    if "(AlreadyExists)" in line:
        return AlreadyExistsError(line.split("): ", 1)[-1])
    if "doesn't have a resource type" in line:
        return PluginError(
            f"{line.removeprefix('error: ')}: the etcd-operator's CRDs are not installed in this "
            "cluster (or the context points at another cluster)"
        )
    said = line.removeprefix("error: ") or f"exit code {done.code}"
    return PluginError(f"kubectl {verb} failed: {said}")


@dataclass(frozen=True)
class Kube:
    """The JSON verbs of the commands, in one namespace (kubectl's current one when None)."""

    runner: Runner
    namespace: str | None = None

    def _ns(self) -> list[str]:
        return [f"--namespace={self.namespace}"] if self.namespace else []

    def where(self) -> str:
        """The namespace, as a message names it."""
        return f"namespace {self.namespace}" if self.namespace else "the current namespace"

    def _json(self, args: Sequence[str], stdin: str | None = None) -> Json:
        done = self.runner.run(args, stdin)
        if done.code != 0:
            raise classify(args, done)
        try:
            found = json.loads(done.stdout)
        except ValueError:
            raise PluginError(f"kubectl {args[0]} returned no JSON") from None
        if not isinstance(found, dict):
            raise PluginError(f"kubectl {args[0]} returned no object")
        return found

    def get(self, resource: str, name: str) -> Json:
        try:
            return self._json(["get", resource, name, *self._ns(), "--output=json"])
        except NotFoundError:
            raise NotFoundError(
                f"no {KINDS.get(resource, resource)} {name} in {self.where()}"
            ) from None

    def find(self, resource: str, name: str) -> Json | None:
        """The object, or None when it does not exist."""
        try:
            return self.get(resource, name)
        except NotFoundError:
            return None

    def items(self, resource: str, all_namespaces: bool = False) -> list[Json]:
        scope = ["--all-namespaces"] if all_namespaces else self._ns()
        found = self._json(["get", resource, *scope, "--output=json"])
        items = found.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def annotate(self, resource: str, name: str, key: str, value: str) -> None:
        args = ["annotate", resource, name, f"{key}={value}", "--overwrite", *self._ns()]
        done = self.runner.run(args)
        if done.code != 0:
            error = classify(args, done)
            if isinstance(error, NotFoundError):
                raise NotFoundError(f"no {KINDS.get(resource, resource)} {name} in {self.where()}")
            raise error

    def create(self, manifest: Json) -> Json:
        args = ["create", "--filename=-", *self._ns(), "--output=json"]
        return self._json(args, json.dumps(manifest))
