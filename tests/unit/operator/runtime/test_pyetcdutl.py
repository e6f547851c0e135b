"""``pyetcdutl analyze`` as the operator runs it: found by path, on PATH or beside the
interpreter; its command line; a failure's last stderr line as the message; a run past its
deadline killed. Stand-in executables are small shell scripts; the real tool runs in
tests/integration/test_analysis.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from etcd_operator.api.analysis import AnalysisSpec
from etcd_operator.runtime import pyetcdutl
from etcd_operator.runtime.pyetcdutl import AnalyzerError

SPEC = AnalysisSpec(separator="-", depth=3, top=7)


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_path_is_taken_as_it_is_and_must_be_executable(tmp_path: Path) -> None:
    tool = script(tmp_path, "pyetcdutl", "exit 0")
    assert pyetcdutl.find(str(tool)) == str(tool)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    for missing in (plain, tmp_path / "absent"):
        with pytest.raises(AnalyzerError, match=r"pyetcdutl not found: .* is no executable file"):
            pyetcdutl.find(str(missing))


def test_a_name_is_looked_up_on_path_then_beside_the_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = script(tmp_path, "my-pyetcdutl", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pyetcdutl.find("my-pyetcdutl") == str(tool)
    monkeypatch.setenv("PATH", "/nonexistent")
    # The interpreter's own directory holds its distribution's console scripts.
    beside = Path(sys.executable).parent
    python = next(p.name for p in beside.iterdir() if p.name.startswith("python"))
    assert pyetcdutl.find(python) == str(beside / python)
    with pytest.raises(AnalyzerError, match="no nothing-like-this on PATH nor beside") as raised:
        pyetcdutl.find("nothing-like-this")
    assert raised.value.reason == "AnalyzerNotFound"


def test_the_command_line_puts_every_value_after_an_equals_sign() -> None:
    assert pyetcdutl.command("/bin/pyetcdutl", Path("/tmp/s.db"), SPEC) == [
        "/bin/pyetcdutl",
        "analyze",
        "/tmp/s.db",
        "--format=json",
        "--separator=-",
        "--depth=3",
        "--top=7",
        "--skip-hash-check",
    ]


def test_the_output_is_returned_and_the_arguments_reach_the_tool(tmp_path: Path) -> None:
    tool = script(tmp_path, "pyetcdutl", 'printf "%s|" "$@"')
    out = asyncio.run(pyetcdutl.analyze(str(tool), tmp_path / "s.db", SPEC, 30))
    assert out.decode().split("|")[:3] == ["analyze", str(tmp_path / "s.db"), "--format=json"]


def test_a_failure_says_the_tools_last_line(tmp_path: Path) -> None:
    tool = script(
        tmp_path,
        "pyetcdutl",
        'echo "some progress" >&2; echo "Error: cannot analyze x: truncated" >&2; exit 1',
    )
    with pytest.raises(AnalyzerError) as raised:
        asyncio.run(pyetcdutl.analyze(str(tool), tmp_path / "s.db", SPEC, 30))
    assert raised.value.reason == "AnalyzerFailed"
    assert str(raised.value) == (
        "pyetcdutl analyze failed (exit status 1): Error: cannot analyze x: truncated"
    )


def test_a_run_past_its_deadline_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    tool = script(tmp_path, "pyetcdutl", f"echo $$ > {marker}; exec sleep 30")
    with pytest.raises(AnalyzerError, match=r"did not finish within 0\.5s") as raised:
        asyncio.run(pyetcdutl.analyze(str(tool), tmp_path / "s.db", SPEC, 0.5))
    assert raised.value.reason == "AnalyzerTimedOut"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped: no zombie either
