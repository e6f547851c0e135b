"""Build and run the porcupine checker (``checker/main.go``), cached by a hash of its source.

The binary lives in ``~/.cache/pyetcd-lin/checker-<hash>`` (``$PYETCD_LIN_CACHE`` overrides the
directory), so ``go build`` runs once per change of ``main.go``/``go.mod``/``go.sum``. The Go
toolchain is ``$GO``, else ``go`` on PATH, else ``/usr/local/go/bin/go``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECKER_DIR = Path(__file__).resolve().parent / "checker"
SOURCES = ("main.go", "go.mod", "go.sum")
CACHE_DIR = Path(os.environ.get("PYETCD_LIN_CACHE", str(Path.home() / ".cache" / "pyetcd-lin")))


class CheckerBuildError(RuntimeError):
    """The Go toolchain is missing or ``go build`` failed; the message says why."""


def go_binary() -> str:
    explicit = os.environ.get("GO")
    if explicit:
        return explicit
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.is_file():
        return str(fallback)
    raise CheckerBuildError("no Go toolchain: install Go (https://go.dev/dl/) or set $GO")


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (CHECKER_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_checker(timeout: float = 300.0) -> Path:
    """The path of the checker binary, building it first if the cached one is stale."""
    target = CACHE_DIR / f"checker-{source_hash()}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.tmp{os.getpid()}")
    proc = subprocess.run(
        [go_binary(), "build", "-o", str(partial), "."],
        cwd=CHECKER_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise CheckerBuildError(f"go build failed ({proc.returncode}):\n{proc.stderr}")
    partial.replace(target)  # atomic: concurrent sessions never see a half-written binary
    return target


@dataclass(frozen=True)
class Verdict:
    """The checker's answer for one history."""

    linearizable: bool
    returncode: int
    stdout: str
    stderr: str


def check_history(
    checker: Path,
    history: Path,
    *,
    html: Path | None = None,
    timeout: float = 120.0,
) -> Verdict:
    """Run the checker on a JSON-lines history; exit 0 means linearizable."""
    cmd = [str(checker), f"-timeout={int(timeout)}s"]
    if html is not None:
        cmd.append(f"-html={html}")
    cmd.append(str(history))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, check=False)
    return Verdict(proc.returncode == 0, proc.returncode, proc.stdout, proc.stderr)
