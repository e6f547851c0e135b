"""The operator's entry point: the registry it runs with, and what kopf does with it (driven
through kopf's own event processing, without a cluster): no finalizer, and none left over."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from etcd_operator.main import build_registry, kopf_settings, login
from kopf._cogs.structs import bodies, patches, references
from kopf._core.actions import lifecycles, loggers
from kopf._core.engines import indexing
from kopf._core.intents.causes import Activity
from kopf._core.reactor import inventory, processing


def test_registry_can_log_in_in_cluster() -> None:
    # Without a login handler kopf fails at start: "Ran out of valid credentials".
    registry = build_registry(OperatorSettings())
    logins = [
        h.id
        for h in registry._activities.get_all_handlers()
        if h.activity == Activity.AUTHENTICATION
    ]
    assert logins == ["login"]
    assert isinstance(registry, kopf.OperatorRegistry)


def test_login_falls_back_to_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a pod (no service account token) the login reads the kubeconfig, as kopf's own
    default logins do; in a pod, the service account comes first."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t0k3n"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    info = login(settings=kopf.OperatorSettings())
    assert info is not None
    assert (info.server, info.token) == ("https://127.0.0.1:6443", "t0k3n")


# -- kopf's finalizer --------------------------------------------------------------------------

LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def processed(metadata: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One watch event of an EtcdCluster through kopf's own processing, with the operator's
    registry and settings: the object as kopf's patch leaves it, and the handlers kopf ran."""
    ran: list[str] = []
    registry = build_registry(OperatorSettings())
    for handler in registry._changing.get_all_handlers():
        handler_id = handler.id

        async def record(handler_id: str = handler_id, **_: Any) -> None:
            ran.append(handler_id)

        object.__setattr__(handler, "fn", record)
    settings = kopf_settings()
    resource = references.Resource(
        group=GROUP, version=VERSION, plural=PLURAL, kind=KIND, namespaced=True, preferred=True
    )
    raw: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", **metadata},
        "spec": {"version": "3.5.17", "replicas": 1},
    }
    body = bodies.Body(cast(bodies.RawBody, raw))
    patch = patches.Patch(body=body)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    logger = loggers.LocalObjectLogger(body=body, settings=settings)

    async def process() -> None:
        await processing.process_resource_causes(
            lifecycle=lifecycles.all_at_once,
            indexers=indexers,
            registry=registry,
            settings=settings,
            resource=resource,
            raw_event={"type": "MODIFIED", "object": raw},  # type: ignore[typeddict-item]
            body=body,
            patch=patch,
            memory=inventory.ResourceMemory(),  # needs the running loop
            local_logger=logger,
            event_logger=logger,
            stream_pressure=None,
            operator_paused=None,
            consistency_time=None,
        )

    asyncio.run(process())
    after = copy.deepcopy(raw)
    for fn in patch.fns:
        fn(cast(bodies.RawBody, after))
    return after, ran


def test_kopf_keeps_its_finalizer_name() -> None:
    # Clusters of earlier operator versions carry it: kopf must recognise it to remove it.
    assert kopf_settings().persistence.finalizer == LEGACY_FINALIZER


def test_kopf_adds_no_finalizer_to_a_new_cluster() -> None:
    after, ran = processed({})
    assert "finalizers" not in after["metadata"]
    assert ran == ["create"]  # handled at once: no first cycle spent on adding a finalizer


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({}, id="running"),
        pytest.param({"deletionTimestamp": "2025-01-02T03:04:05Z"}, id="being-deleted"),
    ],
)
def test_kopf_removes_the_finalizer_of_an_earlier_operator_version(
    metadata: dict[str, Any],
) -> None:
    """A cluster created while the operator had a status timer carries kopf's finalizer; with
    no handler requiring it, kopf removes it (other finalizers stay), so deleting the cluster
    never waits for an operator again."""
    after, _ = processed({**metadata, "finalizers": ["example.com/keep", LEGACY_FINALIZER]})
    assert after["metadata"]["finalizers"] == ["example.com/keep"]
