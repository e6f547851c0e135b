"""``KubernetesApi`` over the installed ``kubernetes`` client: the requests it really sends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from etcd_operator.api.v1alpha1 import API_VERSION, KIND
from etcd_operator.runtime.kube import KubernetesApi
from kubernetes import client
from kubernetes.client.exceptions import ApiException


@dataclass
class FakeResponse:
    status: int
    data: bytes
    reason: str = "OK"
    headers: dict[str, str] = field(default_factory=dict)

    def read(self) -> bytes:
        return self.data

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def getheaders(self) -> dict[str, str]:
        return self.headers


@dataclass
class FakeRest:
    """Stands in for the client's urllib3 layer: records requests, answers from a queue."""

    answers: list[FakeResponse]
    sent: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


def api_with(*answers: FakeResponse) -> tuple[KubernetesApi, FakeRest]:
    config = client.Configuration(host="https://kube.test")
    config.api_key = {"BearerToken": "Bearer t0ken"}
    api_client = client.ApiClient(config)
    rest = FakeRest(list(answers))
    api_client.rest_client = rest  # type: ignore[assignment]
    return KubernetesApi(api_client), rest


def test_get_apply_and_delete_send_real_requests() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"}}
    api, rest = api_with(
        FakeResponse(200, json.dumps(pod).encode()),
        FakeResponse(404, b'{"kind":"Status","code":404}', reason="Not Found"),
        FakeResponse(200, json.dumps(pod).encode()),
        FakeResponse(200, b"{}"),
        FakeResponse(404, b"{}", reason="Not Found"),
    )
    assert asyncio.run(api.get("v1", "Pod", "ns", "p")) == pod
    assert asyncio.run(api.get("v1", "Pod", "ns", "gone")) is None
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
    assert asyncio.run(api.apply(manifest)) == pod
    assert asyncio.run(api.delete("apps/v1", "StatefulSet", "ns", "s")) is True
    assert asyncio.run(api.delete("apps/v1", "StatefulSet", "ns", "s")) is False
    first, _, applied, deleted, _ = rest.sent
    assert (first["method"], first["url"]) == (
        "GET",
        "https://kube.test/api/v1/namespaces/ns/pods/p",
    )
    assert first["headers"]["authorization"] == "Bearer t0ken"
    assert applied["method"] == "PATCH"
    assert applied["url"].startswith("https://kube.test/api/v1/namespaces/ns/pods/p?")
    assert "fieldManager=etcd-operator" in applied["url"] and "force=true" in applied["url"]
    assert applied["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert json.loads(applied["body"]) == manifest
    assert deleted["url"] == "https://kube.test/apis/apps/v1/namespaces/ns/statefulsets/s"


def test_list_passes_the_selector_and_errors_raise() -> None:
    api, rest = api_with(
        FakeResponse(200, b'{"items": [{"metadata": {"name": "a"}}]}'),
        FakeResponse(403, b'{"kind":"Status","code":403}', reason="Forbidden"),
    )
    found = asyncio.run(api.list("v1", "Pod", "ns", "app=x"))
    assert found == [{"metadata": {"name": "a"}}]
    assert (
        rest.sent[0]["url"] == "https://kube.test/api/v1/namespaces/ns/pods?labelSelector=app%3Dx"
    )
    with pytest.raises(ApiException) as err:
        asyncio.run(api.list("v1", "Pod", "ns", "app=x"))
    assert err.value.status == 403


@dataclass
class FakePool:
    """Stands in for urllib3's pool manager under the client's own REST layer, so that what is
    recorded is the request body as it goes on the wire."""

    answers: list[FakeResponse]
    sent: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


def api_over_the_wire(*answers: FakeResponse) -> tuple[KubernetesApi, FakePool]:
    config = client.Configuration(host="https://kube.test")
    api_client = client.ApiClient(config)
    pool = FakePool(list(answers))
    api_client.rest_client.pool_manager = pool  # type: ignore[assignment]
    return KubernetesApi(api_client), pool


def test_status_patch_and_create_send_json_once_encoded() -> None:
    api, rest = api_over_the_wire(
        FakeResponse(200, b"{}"),
        FakeResponse(404, b'{"kind":"Status","code":404}', reason="Not Found"),
        FakeResponse(201, b'{"kind": "Event", "metadata": {"name": "demo.x"}}'),
    )
    status = {"phase": "Running", "leader": None, "observedGeneration": 2}
    assert asyncio.run(api.patch_status(API_VERSION, KIND, "ns", "demo", status)) is True
    assert asyncio.run(api.patch_status(API_VERSION, KIND, "ns", "gone", status)) is False
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"namespace": "ns"}, "reason": "R"}
    assert asyncio.run(api.create(event))["metadata"]["name"] == "demo.x"

    patched, _, created = rest.sent
    assert (patched["method"], patched["url"]) == (
        "PATCH",
        "https://kube.test/apis/etcd.pyetcd.io/v1alpha1/namespaces/ns/etcdclusters/demo/status",
    )
    assert patched["headers"]["Content-Type"] == "application/merge-patch+json"
    # null stays in the merge patch: it clears what is no longer known (the leader).
    assert json.loads(patched["body"]) == {"status": status}
    assert list(json.loads(patched["body"])["status"])[-1] == "observedGeneration"
    assert (created["method"], created["url"]) == (
        "POST",
        "https://kube.test/api/v1/namespaces/ns/events",
    )
    assert json.loads(created["body"]) == event
