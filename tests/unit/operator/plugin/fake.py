"""A fake kubectl: objects in memory, answering the argv the plugin sends as kubectl would
(JSON on stdout, kubectl's error lines on stderr), and recording every call; and a fake clock
whose sleep advances it and lets the world (a simulated operator) move on."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from etcd_operator.plugin.commands import Session
from etcd_operator.plugin.kubectl import Completed, Kube

Json = dict[str, Any]
Key = tuple[str, str, str]  # resource, namespace, name

CURRENT_NAMESPACE = "prod"
# The wall clock of every session: ages are measured from it.
NOW = datetime(2026, 12, 6, 12, 5, 30, tzinfo=UTC)


def not_found(resource: str, name: str) -> Completed:
    return Completed(1, "", f'Error from server (NotFound): {resource} "{name}" not found\n')


@dataclass
class FakeKubectl:
    objects: dict[Key, Json] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    inputs: list[str | None] = field(default_factory=list)
    # verb -> what kubectl answers to it instead (RBAC refusals and the like).
    refuse: dict[str, Completed] = field(default_factory=dict)

    def add(self, resource: str, obj: Json) -> None:
        meta = obj["metadata"]
        self.objects[(resource, meta.get("namespace", CURRENT_NAMESPACE), meta["name"])] = obj

    def object(self, resource: str, name: str, namespace: str = CURRENT_NAMESPACE) -> Json:
        return self.objects[(resource, namespace, name)]

    def verbs(self) -> list[str]:
        return [call[0] for call in self.calls]

    def run(self, args: Sequence[str], stdin: str | None = None) -> Completed:
        self.calls.append(list(args))
        self.inputs.append(stdin)
        verb, *rest = args
        if verb in self.refuse:
            return self.refuse[verb]
        namespace = CURRENT_NAMESPACE
        every = False
        positional = []
        for arg in rest:
            if arg.startswith("--namespace="):
                namespace = arg.split("=", 1)[1]
            elif arg == "--all-namespaces":
                every = True
            elif not arg.startswith("-"):
                positional.append(arg)
        if verb == "get":
            return self._get(positional, namespace, every)
        if verb == "annotate":
            resource, name, pair = positional
            key = (resource, namespace, name)
            if key not in self.objects:
                return not_found(resource, name)
            annotation, value = pair.split("=", 1)
            self.objects[key]["metadata"].setdefault("annotations", {})[annotation] = value
            return Completed(0, f"{resource}/{name} annotated\n", "")
        if verb == "create":
            return self._create(json.loads(stdin or "{}"), namespace)
        raise AssertionError(f"the plugin ran kubectl {verb}, which the fake does not know")

    def _get(self, positional: list[str], namespace: str, every: bool) -> Completed:
        resource, *name = positional
        if name:
            found = self.objects.get((resource, namespace, name[0]))
            if found is None:
                return not_found(resource, name[0])
            return Completed(0, json.dumps(found), "")
        items = [
            obj
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == resource and (every or ns == namespace)
        ]
        return Completed(0, json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), "")

    def _create(self, manifest: Json, namespace: str) -> Completed:
        resource = f"{manifest['kind'].lower()}s.etcd.pyetcd.io"
        name = manifest["metadata"]["name"]
        key = (resource, manifest["metadata"].get("namespace", namespace), name)
        if key in self.objects:
            return Completed(
                1,
                "",
                f'Error from server (AlreadyExists): error when creating "STDIN": {resource} '
                f'"{name}" already exists\n',
            )
        created = {**manifest, "metadata": {**manifest["metadata"], "uid": "new-uid"}}
        self.objects[key] = created
        return Completed(0, json.dumps(created), "")


@dataclass
class FakeClock:
    """Monotonic time that only sleeping moves; each sleep first runs ``world`` (the next
    thing the operator does), so a poll after a sleep sees it."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    world: Callable[[], None] = lambda: None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        self.world()


@dataclass
class Run:
    """A session on the fake, and what it printed."""

    session: Session
    out: io.StringIO
    err: io.StringIO


def session(
    fake: FakeKubectl,
    clock: FakeClock | None = None,
    output: str = "table",
    namespace: str | None = CURRENT_NAMESPACE,
) -> Run:
    clock = clock or FakeClock()
    out, err = io.StringIO(), io.StringIO()
    current = Session(
        Kube(fake, namespace),
        out,
        err,
        output,
        clock=lambda: NOW,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        token=lambda: "abcd1234",
    )
    return Run(current, out, err)
