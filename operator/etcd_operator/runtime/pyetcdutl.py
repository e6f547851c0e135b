"""``pyetcdutl analyze`` as a subprocess: found, run under a deadline, its failures one line each.

The operator speaks only the etcd API and imports nothing of pyetcd's server (an import-linter
contract), so the analysis of a backup is the tool's, run as a process: the operator's image
installs it with the operator (``images/operator/Dockerfile``), on PATH. A name is looked up on
PATH and then beside the operator's interpreter, where the same distribution put it (a process
started without the image's PATH still finds it); a path is taken as it is.

The snapshot it reads was downloaded and checked end to end (sha256, etcd's trailer, the
encryption's tags), so the tool skips its own pass over the hash. A run that outlives its
deadline is killed; one that fails says why in its last line on stderr, which becomes the
message (``AnalyzerError``, with the run's reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from pathlib import Path

from etcd_operator.api.analysis import AnalysisSpec
from etcd_operator.reconcile.keyspace_record import TOOL_FAILED, TOOL_MISSING, TOOL_TIMEOUT


class AnalyzerError(Exception):
    """The tool is missing, failed or ran too long; ``reason`` says which, the text how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.reason = reason


def _runnable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find(executable: str) -> str:
    """The file ``executable`` names (see the module), or ``AnalyzerError``."""
    if os.sep in executable:
        if _runnable(executable):
            return executable
        raise AnalyzerError(
            TOOL_MISSING,
            f"pyetcdutl not found: {executable} is no executable file; set the operator's "
            "ETCD_OPERATOR_PYETCDUTL (chart value analysis.pyetcdutl) to the pyetcdutl of its "
            "release",
        )
    found = shutil.which(executable)
    if found is not None:
        return found
    beside = str(Path(sys.executable).parent / executable)
    if _runnable(beside):
        return beside
    raise AnalyzerError(
        TOOL_MISSING,
        f"pyetcdutl not found: no {executable} on PATH nor beside {sys.executable}; the "
        "operator's image installs it: set ETCD_OPERATOR_PYETCDUTL (chart value "
        "analysis.pyetcdutl) where it runs otherwise",
    )


def command(executable: str, snapshot: Path, spec: AnalysisSpec) -> list[str]:
    """The command line; every value in ``--flag=value`` form, so that a separator such as
    ``-`` is never taken for a flag."""
    return [
        executable,
        "analyze",
        str(snapshot),
        "--format=json",
        f"--separator={spec.separator}",
        f"--depth={spec.depth}",
        f"--top={spec.top}",
        "--skip-hash-check",
    ]


async def analyze(executable: str, snapshot: Path, spec: AnalysisSpec, seconds: float) -> bytes:
    """The JSON report ``pyetcdutl analyze`` prints about ``snapshot``, within ``seconds``;
    ``AnalyzerError``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command(executable, snapshot, spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise AnalyzerError(
            TOOL_MISSING, f"pyetcdutl could not be started ({executable}): {err.strerror or err}"
        ) from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds)
    except BaseException as exc:
        # The deadline, or the operator stopping: the tool must not outlive the run.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise AnalyzerError(
                TOOL_TIMEOUT,
                f"pyetcdutl analyze did not finish within {seconds:g}s and was stopped; raise "
                "ETCD_OPERATOR_ANALYSIS_TIMEOUT_SECONDS (chart value analysis.timeoutSeconds) "
                "for a database this big",
            ) from None
        raise
    if proc.returncode != 0:
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        said = lines[-1] if lines else "no message"
        raise AnalyzerError(
            TOOL_FAILED, f"pyetcdutl analyze failed (exit status {proc.returncode}): {said}"
        )
    return stdout
