"""etcd's plain HTTP endpoints: on the client port by default, on their own URLs with
--listen-client-http-urls (etcd 3.5), where gRPC then owns the client port alone."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest

from tests.integration.conftest import MemberRegistry
from tools.ports import free_port

pytestmark = pytest.mark.integration


def get(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_http_endpoints_share_the_client_port(members: MemberRegistry) -> None:
    m = members.new("pyetcd")
    m.etcdctl("put", "k", "v")
    assert get(m.client_url + "/health") == (200, '{"health":"true","reason":""}')
    status, body = get(m.client_url + "/version")
    assert status == 200
    assert set(json.loads(body)) == {"etcdserver", "etcdcluster"}
    status, metrics = get(m.client_url + "/metrics")
    assert status == 200
    for name in (
        "etcd_server_has_leader 1.0",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV"'
        ',grpc_type="unary"} 1.0',
    ):
        assert name in metrics, f"{name} missing from /metrics"
    assert get(m.client_url + "/health", method="POST")[0] == 405
    assert get(m.client_url + "/nope")[0] == 404


def test_listen_client_http_urls_moves_http_off_the_client_port(members: MemberRegistry) -> None:
    http_url = f"http://127.0.0.1:{free_port()}"
    m = members.new("pyetcd", extra_flags=[f"--listen-client-http-urls={http_url}"])
    put = m.etcdctl("put", "k", "v")
    assert put.returncode == 0, put.stderr
    assert get(http_url + "/health") == (200, '{"health":"true","reason":""}')
    # The client port now speaks gRPC only: a plain HTTP request gets no HTTP/1.1 answer.
    with pytest.raises((http.client.HTTPException, urllib.error.URLError, OSError)):
        urllib.request.urlopen(m.client_url + "/health", timeout=5).read()
