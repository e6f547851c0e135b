"""The porcupine checker itself: it accepts linearizable histories and rejects the others.

Hand-made histories with known answers, so a checker that always says "linearizable" fails here.
Needs the Go toolchain (the ``checker`` fixture builds the binary), no server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.linearizability.checker_build import check_history

INF: None = None  # a timed-out operation has no return time


def write(tmp_path: Path, ops: list[dict[str, Any]]) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(op) + "\n" for op in ops))
    return path


def put(client: int, call: int, ret: int | None, key: str, value: str) -> dict[str, Any]:
    return {"client": client, "call": call, "return": ret, "op": "put", "key": key, "value": value}


def get(client: int, call: int, ret: int | None, key: str, value: str | None) -> dict[str, Any]:
    return {
        "client": client,
        "call": call,
        "return": ret,
        "op": "get",
        "key": key,
        "found": value is not None,
        "result": value or "",
    }


def cas(
    client: int, call: int, ret: int | None, key: str, *, expect: str, value: str, ok: bool
) -> dict[str, Any]:
    return {
        "client": client,
        "call": call,
        "return": ret,
        "op": "cas",
        "key": key,
        "expect": expect,
        "value": value,
        "ok": ok,
    }


LINEARIZABLE: dict[str, list[dict[str, Any]]] = {
    "sequential": [
        put(0, 0, 10, "a", "x"),
        get(1, 20, 30, "a", "x"),
        cas(0, 40, 50, "a", expect="x", value="y", ok=True),
        get(1, 60, 70, "a", "y"),
    ],
    "concurrent put may be read either way": [
        put(0, 0, 100, "a", "x"),
        get(1, 10, 20, "a", None),
        get(2, 30, 40, "a", "x"),
    ],
    "timed-out put seen later": [
        put(0, 0, INF, "a", "x"),
        get(1, 500, 510, "a", "x"),
    ],
    "timed-out put never seen": [
        put(0, 0, INF, "a", "x"),
        get(1, 500, 510, "a", None),
    ],
    "failed cas on absent key": [
        cas(0, 0, 10, "a", expect="x", value="y", ok=False),
        cas(0, 20, 30, "a", expect="", value="z", ok=True),
        get(1, 40, 50, "a", "z"),
    ],
    "keys are independent": [
        put(0, 0, 10, "a", "x"),
        put(1, 0, 10, "b", "y"),
        get(2, 20, 30, "b", "y"),
        get(2, 40, 50, "a", "x"),
    ],
}

NOT_LINEARIZABLE: dict[str, list[dict[str, Any]]] = {
    "stale read after acknowledged put": [
        put(0, 0, 10, "a", "x"),
        get(1, 20, 30, "a", None),
    ],
    "read goes back in time": [
        put(0, 0, 10, "a", "x"),
        put(0, 20, 30, "a", "y"),
        get(1, 40, 50, "a", "y"),
        get(2, 60, 70, "a", "x"),
    ],
    "two cas from the same value both succeed": [
        put(0, 0, 10, "a", "x"),
        cas(1, 20, 30, "a", expect="x", value="y", ok=True),
        cas(2, 40, 50, "a", expect="x", value="z", ok=True),
    ],
    "timed-out put visible then gone": [
        put(0, 0, INF, "a", "x"),
        get(1, 100, 110, "a", "x"),
        get(1, 120, 130, "a", None),
    ],
    "value never written": [
        get(1, 0, 10, "a", "ghost"),
    ],
    "failed cas although the value matched": [
        put(0, 0, 10, "a", "x"),
        cas(1, 20, 30, "a", expect="x", value="y", ok=False),
    ],
}


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_accepts_linearizable_history(checker: Path, tmp_path: Path, name: str) -> None:
    verdict = check_history(checker, write(tmp_path, LINEARIZABLE[name]))
    assert verdict.returncode == 0, verdict
    assert verdict.stdout.strip() == "linearizable"


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_rejects_non_linearizable_history(checker: Path, tmp_path: Path, name: str) -> None:
    html = tmp_path / "violation.html"
    verdict = check_history(checker, write(tmp_path, NOT_LINEARIZABLE[name]), html=html)
    assert verdict.returncode == 1, verdict
    assert verdict.stdout.startswith("NOT linearizable: key"), verdict.stdout
    assert html.stat().st_size > 0


def test_rejects_malformed_input(checker: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"client": 0, "call": 5, "return": 1, "op": "put", "key": "a"}\n')
    verdict = check_history(checker, path)
    assert verdict.returncode == 2
    assert "return before call" in verdict.stderr
