"""The kopf layer: every entry point is on the registry, none makes kopf add its finalizer, a
pass's failures become kopf's permanent and temporary errors, and the operator logs in through
kopf's public API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.handlers import register
from etcd_operator.main import build_registry, parse_args
from etcd_operator.runtime.reconciler import Reconciler
from etcd_operator.runtime.refresh import ClusterRef
from kopf._core.intents.causes import Activity

from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_reconciler import Events, body

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5, status_interval_seconds=5)
REF = ClusterRef("ns", "demo", "uid-1")


# -- the registry ----------------------------------------------------------------------------


def test_register_puts_every_entry_point_on_the_registry() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS)
    changing = sorted(h.id for h in registry._changing.get_all_handlers())
    assert changing == ["create", "resume", "update"]
    assert [h.id for h in registry._indexing.get_all_handlers()] == ["etcdclusters"]
    assert [h.id for h in registry._watching.get_all_handlers()] == ["forget-deleted"]
    activities = {h.id: h.activity for h in registry._activities.get_all_handlers()}
    assert activities == {
        "start-status-refresh": Activity.STARTUP,
        "stop-status-refresh": Activity.CLEANUP,
    }


def test_startup_starts_the_refresh_and_cleanup_stops_it() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS)
    handlers = {
        str(h.id): cast(Callable[..., Awaitable[object]], h.fn)
        for h in registry._activities.get_all_handlers()
    }

    async def scenario() -> tuple[int, bool]:
        index = {("ns", "demo"): [REF]}  # kopf passes its index under the index's id
        await handlers["start-status-refresh"](etcdclusters=index)
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "etcd-operator status refresh"]
        await handlers["stop-status-refresh"]()
        return len(tasks), all(t.done() for t in tasks)

    assert asyncio.run(scenario()) == (1, True)


def test_no_handler_makes_kopf_add_its_finalizer() -> None:
    """kopf adds its finalizer for timers, daemons and (non-optional) delete handlers; with it,
    an EtcdCluster could not be deleted while no operator runs."""
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS)
    assert registry._spawning.get_all_handlers() == []  # no @kopf.timer, no @kopf.daemon
    for handler in registry._changing.get_all_handlers():
        assert not handler.requires_finalizer, handler
        assert handler.reason != kopf.Reason.DELETE, handler


def test_command_line_and_environment() -> None:
    args = parse_args([], {"ETCD_OPERATOR_NAMESPACES": "a,b", "ETCD_OPERATOR_METRICS_PORT": "9"})
    assert (args.namespace, args.metrics_port, args.standalone) == (["a", "b"], 9, True)
    args = parse_args(
        ["-n", "c", "--no-standalone", "--liveness", ""], {"ETCD_OPERATOR_NAMESPACES": "a"}
    )
    assert (args.namespace, args.standalone, args.liveness) == (["c"], False, "")


def changing_handler(
    registry: kopf.OperatorRegistry, id_: str
) -> Callable[..., Coroutine[Any, Any, None]]:
    (handler,) = [h for h in registry._changing.get_all_handlers() if h.id == id_]
    return cast(Callable[..., Coroutine[Any, Any, None]], handler.fn)


def test_a_failed_pass_is_a_kopf_temporary_error_with_the_backoff_delay() -> None:
    kube = FakeKube()
    kube.fail_apply_of = "StatefulSet"
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS, Reconciler(SETTINGS, kube, Events()))
    handler = changing_handler(registry, "update")

    async def twice() -> list[float]:
        delays = []
        for _ in range(2):
            live = kopf.Body(cast(kopf.RawBody, kube.live(body())))
            with pytest.raises(kopf.TemporaryError) as err:
                await handler(body=live)
            assert err.value.delay is not None
            delays.append(err.value.delay)
        return delays

    assert asyncio.run(twice()) == [5.0, 10.0]


def test_an_invalid_spec_is_a_kopf_permanent_error() -> None:
    kube = FakeKube()
    registry = kopf.OperatorRegistry()
    register(registry, SETTINGS, Reconciler(SETTINGS, kube, Events()))
    bad = body()
    bad["spec"]["replicas"] = -1
    kube.put(bad)
    with pytest.raises(kopf.PermanentError, match="invalid spec"):
        asyncio.run(changing_handler(registry, "create")(body=kopf.Body(cast(kopf.RawBody, bad))))


def test_the_registry_logs_in_through_kopfs_public_logins() -> None:
    registry = build_registry(SETTINGS)
    logins = [
        h for h in registry._activities.get_all_handlers() if h.activity == Activity.AUTHENTICATION
    ]
    assert [h.id for h in logins] == ["login"]


def test_main_uses_no_private_kopf_module() -> None:
    import etcd_operator.main as main_module

    assert "kopf._" not in Path(main_module.__file__).read_text(encoding="utf-8")
