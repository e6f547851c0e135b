"""aetcd compatibility: the same aetcd call sequence against two servers, outputs compared.

The client runs in a subprocess (``aetcd_script.py``) because aetcd's generated protobufs and
pyetcd's register the same proto files and cannot share one process. Flavours are chosen like
the etcdctl suite: ``COMPAT_FLAVOURS`` (default ``etcd,pyetcd``; ``etcd,etcd`` proves the
script deterministic). Differences are fixed in the server or explained in
``ALLOWED_DIFFERENCES`` (step name -> reason); empty for now.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys

import pytest

from tests.integration import cluster as cluster_module
from tests.integration.cluster import REPO_ROOT, Member
from tests.integration.conftest import MemberRegistry
from tests.integration.test_auth import set_up_users
from tests.integration.test_etcdctl_compat import compat_flavours
from tools import etcd35

pytestmark = pytest.mark.integration

ALLOWED_DIFFERENCES: dict[str, str] = {}

#: steps whose output must not be an error, for either flavour
MUST_SUCCEED = ("put a", "get a", "get_prefix descend by mod", "txn nested", "lease grant")
#: steps that must fail with this gRPC code, for either flavour
MUST_FAIL = {
    "compact again": "OUT_OF_RANGE",
    "range at compacted revision": "OUT_OF_RANGE",
    "range at future revision": "OUT_OF_RANGE",
    "put empty key": "INVALID_ARGUMENT",
    "put unknown lease": "NOT_FOUND",
    "txn duplicate key": "INVALID_ARGUMENT",
    "lease revoke again": "NOT_FOUND",
}


def run_script(member: Member, *mode: str) -> list[dict[str, object]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.aetcd_script",
            member.host_port,
            member.peer_url.removeprefix("http://"),
            *mode,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"aetcd script failed against {member} (exit {proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_aetcd_compat(members: MemberRegistry) -> None:
    flavours = compat_flavours()
    outputs = []
    for flavour in flavours:
        member = members.new(flavour, name="compat")
        outputs.append(run_script(member))
        member.stop()
    problems: list[str] = []
    for flavour, lines in zip(flavours, outputs, strict=True):
        by_step = {str(line["step"]): line for line in lines}
        for step in MUST_SUCCEED:
            if step not in by_step or "error" in by_step[step]:
                problems.append(f"[{flavour}] `{step}` should succeed: {by_step.get(step)}")
        for step, code in MUST_FAIL.items():
            if by_step.get(step, {}).get("code") != code:
                problems.append(f"[{flavour}] `{step}` should fail {code}: {by_step.get(step)}")
        events = by_step.get("watch live with prev_kv", {}).get("events")
        if not isinstance(events, list) or len(events) != 4 or "timeout" in events[-1]:
            problems.append(f"[{flavour}] live watch did not deliver 4 events: {events}")
    left, right = outputs
    if [line["step"] for line in left] != [line["step"] for line in right]:
        problems.append("the two runs did not perform the same steps")
    for a, b in zip(left, right, strict=False):
        step = str(a["step"])
        if step in ALLOWED_DIFFERENCES:
            if a == b:
                problems.append(f"`{step}` is allow-listed but no longer differs")
            continue
        if a != b:
            diff = difflib.unified_diff(
                json.dumps(a, indent=1, sort_keys=True).splitlines(),
                json.dumps(b, indent=1, sort_keys=True).splitlines(),
                fromfile=flavours[0],
                tofile=flavours[1],
                lineterm="",
            )
            problems.append(f"`{step}` differs:\n" + "\n".join(diff))
    assert not problems, f"{len(problems)} problem(s):\n\n" + "\n\n".join(problems)


def test_aetcd_compat_with_auth(members: MemberRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """aetcd with a user and password against etcd 3.5 and pyetcd with auth on: the same
    answers, granted and refused, with etcd's codes and messages."""
    built = etcd35.cached_binary()
    if built is None:
        pytest.fail(f"etcd {etcd35.ETCD35_VERSION} is not built; {etcd35.HINT}", pytrace=False)
    monkeypatch.setattr(cluster_module, "ETCD_BIN", built)
    outputs = []
    for flavour in compat_flavours():
        member = members.new(flavour, name="compat-auth")
        set_up_users(member)
        outputs.append(run_script(member, "auth"))
        member.stop()
    left, right = outputs
    by_step = {str(line["step"]): line for line in right}
    assert "error" not in by_step["auth get granted"]
    assert by_step["auth get refused"].get("details") == "etcdserver: permission denied"
    assert by_step["auth no user"].get("details") == "etcdserver: user name is empty"
    assert left == right
