"""The operator's entry point: the registry it runs with."""

from __future__ import annotations

import kopf
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.main import build_registry
from kopf._core.intents.causes import Activity


def test_registry_can_log_in_in_cluster() -> None:
    # Without a login handler kopf fails at start: "Ran out of valid credentials".
    registry = build_registry(OperatorSettings())
    logins = [
        h.id
        for h in registry._activities.get_all_handlers()
        if h.activity == Activity.AUTHENTICATION
    ]
    assert "login_via_client" in logins
    assert isinstance(registry, kopf.OperatorRegistry)
