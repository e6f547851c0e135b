"""Pure tests of the comparison machinery (no servers): normalisation and step comparison.

They pin what normalisation may erase and what it must keep, so a too-eager rule that would
hide a real server difference fails here first.
"""

from __future__ import annotations

import json

from tests.integration.compat import Outcome, compare
from tests.integration.normalize import Context, normalize_stderr, normalize_stdout

PUT_JSON = (
    '{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,'
    '"revision":7,"raft_term":2},"prev_kv":{"key":"L2svYw==","create_revision":3,'
    '"mod_revision":5,"version":2,"value":"Mg==","lease":7587869195418797569}}\n'
)


def context() -> Context:
    ctx = Context(base_revision=1)
    ctx.add_replacement("127.0.0.1:23790", "<client>")
    return ctx


def test_json_ids_are_mapped_consistently_and_revisions_made_relative() -> None:
    ctx = context()
    out = json.loads(normalize_stdout(ctx, ["put", "-w", "json", "k", "v"], PUT_JSON))
    assert out["header"] == {
        "cluster_id": "<id1>",
        "member_id": "<id2>",
        "revision": "R+6",
        "raft_term": "<raft_term>",
    }
    # values, keys and versions are kept; the lease id is mapped, not erased
    assert out["prev_kv"]["value"] == "Mg=="
    assert out["prev_kv"]["version"] == 2
    assert out["prev_kv"]["lease"] == "<id3>"
    # the same lease printed later in hex maps to the same placeholder
    text = normalize_stdout(ctx, ["lease", "list"], "found 1 leases\n694d86d4bb110601\n")
    assert text == "found 1 leases\n<id3>\n"


def test_different_values_stay_different() -> None:
    a = normalize_stdout(context(), ["get", "k"], "k\nvalue-1\n")
    b = normalize_stdout(context(), ["get", "k"], "k\nvalue-2\n")
    assert a != b
    a = normalize_stdout(context(), ["put", "-w", "json", "k", "v"], PUT_JSON)
    b = normalize_stdout(
        context(), ["put", "-w", "json", "k", "v"], PUT_JSON.replace('"revision":7', '"revision":8')
    )
    assert a != b


def test_tables_lose_padding_and_volatile_columns() -> None:
    table = (
        "+-----------------+------------------+---------+---------+\n"
        "|    ENDPOINT     |        ID        | VERSION | DB SIZE |\n"
        "+-----------------+------------------+---------+---------+\n"
        "| 127.0.0.1:23790 | 2e1259d415f2a040 |  3.4.23 |  786 kB |\n"
        "+-----------------+------------------+---------+---------+\n"
    )
    out = normalize_stdout(context(), ["endpoint", "status", "-w", "table"], table)
    assert out == "ENDPOINT | ID | VERSION | DB SIZE\n<client> | <id1> | <version> | <size>\n"


def test_stderr_keeps_error_and_code_but_not_timestamps() -> None:
    line = (
        '{"level":"warn","ts":"2026-11-21T06:25:07.581Z","caller":"clientv3/retry_interceptor.go:62",'
        '"msg":"retrying of unary invoker failed","target":"endpoint://client-0d1f/127.0.0.1:23790",'
        '"attempt":0,"error":"rpc error: code = OutOfRange desc = etcdserver: mvcc: required '
        'revision is a future revision"}\nError: etcdserver: mvcc: required revision is a future '
        "revision\n"
    )
    out = normalize_stderr(context(), line)
    assert "code = OutOfRange" in out
    assert "2026" not in out
    assert "client-0d1f" not in out


def test_compare_reports_differences_and_stale_allow_list_entries() -> None:
    same = [Outcome("get k", "k\nv\n", "", 0)]
    other = [Outcome("get k", "k\nw\n", "", 0)]
    assert compare("s", ["a", "b"], same, same, {}) == []
    problems = compare("s", ["a", "b"], same, other, {})
    assert len(problems) == 1
    assert "-k" not in problems[0]
    assert "+w" in problems[0]
    assert compare("s", ["a", "b"], same, other, {("s", "get k"): "reason"}) == []
    stale = compare("s", ["a", "b"], same, same, {("s", "get k"): "reason"})
    assert stale and "no longer differs" in stale[0]
    failed = [Outcome("get k", "k\nv\n", "", 0, problem="expected a failure")]
    assert compare("s", ["a", "b"], failed, failed, {})
