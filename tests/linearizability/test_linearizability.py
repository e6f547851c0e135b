"""Linearizability under faults: recorded client histories checked by porcupine.

A 3-member cluster (upstream etcd as the control, then pyetcd) serves concurrent clients doing
get/put/cas on a few keys while each round injects one fault (kill -9 and restart, a SIGSTOP
pause, or a cut of inbound peer traffic, of the leader or a random member). The whole history
must be linearizable, and the same history with one planted stale read must be rejected.

``LIN_ROUNDS`` (default 6: each fault kind once) sets the number of rounds; the issue's
acceptance run uses 20 or more::

    LIN_ROUNDS=20 LIN_SEED=7 .venv/bin/pytest -m integration tests/linearizability

Every process is stopped in a ``finally`` (see :func:`harness.run`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Flavour
from tests.linearizability.checker_build import check_history
from tests.linearizability.harness import run

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("LIN_ROUNDS", "6"))
# Members talking directly (no proxies): kill -9 and SIGSTOP only. This mode found a peer
# stream writer that died silently and left a restarted member without a leader (seed 6).
DIRECT_ROUNDS = int(os.environ.get("LIN_DIRECT_ROUNDS", "8"))
DIRECT_SEED = int(os.environ.get("LIN_DIRECT_SEED", "6"))
SEED = int(os.environ.get("LIN_SEED", "1"))  # picks members, pause/cut lengths and operations


def make_stale_read(history: Path, out: Path) -> None:
    """Rewrite one read that started after an acknowledged put on its key to "absent".

    Keys start absent and are never deleted, so the result is not linearizable: the checker
    must say so on a real recorded history too.
    """
    ops: list[dict[str, Any]] = [json.loads(line) for line in history.read_text().splitlines()]
    acked_put: dict[str, int] = {}
    for op in ops:  # ops are sorted by call time
        key = op["key"]
        after_acked_put = key in acked_put and op["call"] > acked_put[key]
        if op["op"] == "get" and op["return"] is not None and after_acked_put:
            op["found"] = False
            op["result"] = ""
            break
        if op["op"] == "put" and op["return"] is not None:
            acked_put[key] = min(acked_put.get(key, op["return"]), op["return"])
    else:
        pytest.fail("no read after an acknowledged put in the history", pytrace=False)
    out.write_text("".join(json.dumps(op) + "\n" for op in ops))


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_linearizable_under_faults(flavour: Flavour, checker: Path, tmp_path: Path) -> None:
    result = run(flavour, tmp_path, checker, ROUNDS, seed=SEED)
    print(result.summary())
    assert len(result.faults.entries) == ROUNDS
    assert result.history.stats.ok >= ROUNDS * 100, result.summary()
    assert result.verdict.returncode == 0, (
        f"{result.summary()}\n{result.verdict.stdout}\n{result.verdict.stderr}\n"
        f"visualization: {result.html_path}"
    )
    assert result.verdict.stdout.strip() == "linearizable"

    # The same pipeline on the same real history, with one stale read planted, must fail.
    tampered = tmp_path / "tampered.jsonl"
    make_stale_read(result.history_path, tampered)
    verdict = check_history(checker, tampered)
    assert verdict.returncode == 1, verdict


def test_pyetcd_linearizable_with_members_talking_directly(checker: Path, tmp_path: Path) -> None:
    result = run("pyetcd", tmp_path, checker, DIRECT_ROUNDS, seed=DIRECT_SEED, network_faults=False)
    print(result.summary())
    assert len(result.faults.entries) == DIRECT_ROUNDS
    assert result.verdict.returncode == 0, f"{result.summary()}\n{result.verdict.stdout}"
    assert result.verdict.stdout.strip() == "linearizable"
