"""etcd's HTTP/JSON gateway (``POST /v3/...``), pyetcd beside upstream etcd: the same requests
get the same JSON (proto field names, int64 as strings, base64 bytes, zero values left out) and
the same errors (``{"error", "code", "message"}`` with grpc-gateway's HTTP status).

The answers are compared after dropping what differs between any two clusters: member and
cluster IDs, raft terms, versions and database sizes.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.cluster import FLAVOURS, Member

VOLATILE = {
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "leader",
    "version",
    "dbSize",
    "dbSizeInUse",
    "raftIndex",
    "raftAppliedIndex",
    "peerURLs",
    "clientURLs",
    "name",
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post(member: Member, path: str, body: bytes | None, method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{member.host_port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _decoded(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _decoded(err.read())


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")  # not JSON: compared as text


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def conversation(member: Member) -> list[tuple[int, Any]]:
    """The same requests, in order, against one member; its answers."""
    steps: list[tuple[str, bytes | None, str]] = [
        ("/v3/kv/put", j({"key": b64("foo"), "value": b64("bar")}), "POST"),
        ("/v3/kv/put", j({"key": b64("foo2"), "value": b64("baz"), "prev_kv": True}), "POST"),
        ("/v3/kv/range", j({"key": b64("foo")}), "POST"),
        ("/v3/kv/range", j({"key": b64("foo"), "range_end": b64("foo3")}), "POST"),
        ("/v3beta/kv/range", j({"key": b64("foo"), "count_only": True}), "POST"),
        (
            "/v3/kv/txn",
            j(
                {
                    "compare": [
                        {
                            "key": b64("foo"),
                            "target": "VALUE",
                            "result": "EQUAL",
                            "value": b64("bar"),
                        }
                    ],
                    "success": [{"request_put": {"key": b64("t"), "value": b64("yes")}}],
                    "failure": [{"request_range": {"key": b64("foo")}}],
                }
            ),
            "POST",
        ),
        ("/v3/kv/deleterange", j({"key": b64("foo2"), "prev_kv": True}), "POST"),
        ("/v3/kv/compaction", j({"revision": "100"}), "POST"),
        ("/v3/kv/range", b"{not json", "POST"),
        ("/v3/lease/grant", j({"TTL": "60", "ID": "4242"}), "POST"),
        ("/v3/lease/timetolive", j({"ID": "4242"}), "POST"),
        ("/v3/lease/revoke", j({"ID": "4242"}), "POST"),
        ("/v3/lease/revoke", j({"ID": "4242"}), "POST"),
        ("/v3/cluster/member/list", j({}), "POST"),
        ("/v3/maintenance/status", None, "POST"),
        ("/v3/kv/nothing", j({}), "POST"),
        ("/v3/kv/range", None, "GET"),
    ]
    return [post(member, path, body, method) for path, body, method in steps]


def test_the_gateway_answers_as_etcd_does(request: pytest.FixtureRequest) -> None:
    answers = {}
    for flavour in FLAVOURS:
        member: Member = request.getfixturevalue(flavour if flavour == "pyetcd" else "upstream")
        answers[flavour] = [(code, scrub(body)) for code, body in conversation(member)]
    etcd, pyetcd = answers["etcd"], answers["pyetcd"]
    for step, (theirs, ours) in enumerate(zip(etcd, pyetcd, strict=True)):
        if step == 8:  # a JSON syntax error: the parser's words differ, the shape does not
            assert ours[0] == theirs[0] == 400, (ours, theirs)
            assert ours[1]["code"] == theirs[1]["code"] == 3
            continue
        assert ours == theirs, f"step {step}: pyetcd {ours} != etcd {theirs}"
    # Sanity: the comparison saw real answers.
    assert etcd[2][1]["kvs"][0]["value"] == b64("bar")
    assert etcd[7][0] == 400 and "future revision" in etcd[7][1]["error"]


def watch_lines(member: Member) -> list[Any]:
    """A watch over HTTP: the created line, then the event of a put made meanwhile."""
    body = j({"create_request": {"key": b64("w"), "range_end": b64("x")}})
    request = urllib.request.Request(
        f"http://{member.host_port}/v3/watch", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers.get("Transfer-Encoding") == "chunked"
        created = json.loads(response.readline())
        put = post(member, "/v3/kv/put", j({"key": b64("w1"), "value": b64("v")}))
        assert put[0] == 200, put
        event = json.loads(response.readline())
    return [scrub(created), scrub(event)]


def test_the_gateway_streams_watches_keepalives_and_snapshots_as_etcd_does(
    request: pytest.FixtureRequest,
) -> None:
    seen = {}
    for flavour in FLAVOURS:
        member: Member = request.getfixturevalue(flavour if flavour == "pyetcd" else "upstream")
        lines = watch_lines(member)
        granted = post(member, "/v3/lease/grant", j({"TTL": "30", "ID": "77"}))
        assert granted[0] == 200, granted
        # A keep-alive stream stays open (etcd's too): its first line is the answer.
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://{member.host_port}/v3/lease/keepalive", data=j({"ID": "77"}), method="POST"
            ),
            timeout=10,
        ) as stream:
            kept = json.loads(stream.readline())
        snapshot = urllib.request.urlopen(
            urllib.request.Request(
                f"http://{member.host_port}/v3/maintenance/snapshot", data=b"{}", method="POST"
            ),
            timeout=30,
        )
        chunks = [json.loads(line) for line in snapshot.read().splitlines() if line.strip()]
        assert chunks and all("result" in c for c in chunks), chunks[:1]
        assert chunks[-1]["result"].get("remaining_bytes", "0") == "0"
        seen[flavour] = (lines, scrub(kept))
    assert seen["pyetcd"] == seen["etcd"], seen
    created, event = seen["etcd"][0]
    assert created["result"]["created"] is True
    assert event["result"]["events"][0]["kv"]["key"] == b64("w1")
