"""One Go command built from the Go module proxy, once per version, into the e2e cache.

Serves ``tools/etcdutl.py``, ``tools/versitygw.py`` and ``tools/etcd35.py`` (and whatever Go
tool the tests need next): a throw-away module requires the tool's package at the pinned version
(``go get`` records the dependencies' checksums, verified against the checksum database; this
also works for modules whose own go.mod has ``replace`` lines, which ``go install pkg@version``
refuses) and builds it.
The binary lands in ``<cache root>/<name>-<version>/<binary>`` (``binary`` defaults to the
tool's name; the root follows ``PYETCD_E2E_CACHE``, else ``XDG_CACHE_HOME``, as the Kubernetes
build's), next to a stamp file with the version, the Go toolchain and the build time; while both
are there nothing is rebuilt. A tool may build further commands of the same release alongside
(``extra``: etcd's server and its etcdctl), into the same directory under the same stamp.
Builds are serialised with a file lock, so concurrent callers build once. Pure stdlib.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STAMP = "stamp.json"
_GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


def cache_root() -> Path:
    env = os.environ.get("PYETCD_E2E_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pyetcd-e2e"


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in _GO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no Go toolchain found (looked on PATH and in /usr/local/go/bin)")


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # static binaries, like the tools' own release builds
    # Two cores are shared with whatever else runs; -p=2 keeps the build from oversubscribing.
    env["GOFLAGS"] = env.get("PYETCD_E2E_GOFLAGS", "-p=2 -buildvcs=false")
    env["GOTOOLCHAIN"] = "local"  # never download another toolchain behind the caller's back
    return env


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(cmd: list[str], cwd: Path, log_path: Path) -> None:
    with open(log_path, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(
            cmd, cwd=cwd, env=go_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"{cmd[1]} failed (exit {result.returncode}), see {log_path}:\n{tail}")


@dataclass(frozen=True)
class GoTool:
    """A Go command: the tool's ``name``, the ``package`` to build and its pinned ``version``.

    ``binary`` names the built file when it is not the tool's name (``etcd35`` builds ``etcd``);
    ``extra`` lists further ``(binary, package)`` pairs built at the same version with it.
    """

    name: str
    package: str
    version: str
    binary: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def binaries(self) -> dict[str, str]:
        """Every file the tool builds -> its package, the main one first."""
        return {self.binary or self.name: self.package, **dict(self.extra)}

    @property
    def hint(self) -> str:
        """How to get the binary, for the message of a test that misses it."""
        return (
            f"build it with `make {self.name}` "
            f"(= `.venv/bin/python -m tools.{self.name} build`; needs Go)"
        )

    def cache_dir(self, version: str | None = None) -> Path:
        return cache_root() / f"{self.name}-{version or self.version}"

    def binary_path(self, version: str | None = None, binary: str | None = None) -> Path:
        return self.cache_dir(version) / (binary or self.binary or self.name)

    def cached_binary(self, version: str | None = None, binary: str | None = None) -> Path | None:
        """The built binary (the main one unless ``binary`` names another) if every binary of
        the tool is there and the stamp names the version; never builds."""
        version = version or self.version
        try:
            stamp = json.loads((self.cache_dir(version) / STAMP).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(stamp, dict) or stamp.get("version") != version:
            return None
        if not all(os.access(self.binary_path(version, b), os.X_OK) for b in self.binaries):
            return None
        return self.binary_path(version, binary)

    def ensure_binary(self, version: str | None = None, *, log: bool = True) -> tuple[Path, bool]:
        """The cached binary, built first if needed; returns (path, built now)."""
        version = version or self.version
        found = self.cached_binary(version)
        if found:
            return found, False
        directory = self.cache_dir(version)
        with locked(directory):
            found = self.cached_binary(version)  # built by another process while we waited
            if found:
                return found, False
            return self._build(directory, version, log), True

    def _build(self, directory: Path, version: str, log: bool) -> Path:
        log_path = directory / "build.log"
        log_path.write_text("")
        if log:
            print(f"building {self.name} {version} (log: {log_path})", file=sys.stderr, flush=True)
        go = go_binary()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="build.", dir=directory) as tmp:
            module = Path(tmp)
            (module / "go.mod").write_text(f"module pyetcd.io/tools/{self.name}build\n\ngo 1.21\n")
            packages = self.binaries
            run([go, "get", *(f"{p}@{version}" for p in packages.values())], module, log_path)
            for binary, package in packages.items():
                staged = module / binary
                run([go, "build", "-trimpath", "-o", str(staged), package], module, log_path)
                # Rename within the cache dir: a reader never sees a half-written binary.
                os.replace(staged, self.binary_path(version, binary))
        seconds = time.monotonic() - started
        go_version = subprocess.run(
            [go, "env", "GOVERSION"], check=True, capture_output=True, text=True, env=go_env()
        ).stdout.strip()
        stamp = {
            "version": version,
            "go": go_version,
            "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (directory / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if log:
            print(f"built {self.name} {version} in {seconds:.0f}s", file=sys.stderr, flush=True)
        return self.binary_path(version)

    def main(self, argv: list[str] | None = None, description: str | None = None) -> int:
        """``python -m tools.<name> build [--version V]``: build or find it; print its path."""
        parser = argparse.ArgumentParser(description=description)
        sub = parser.add_subparsers(dest="command", required=True)
        build = sub.add_parser(
            "build", help=f"build (or find cached) {self.name}; print the path of each binary"
        )
        build.add_argument("--version", default=self.version)
        args = parser.parse_args(argv)
        started = time.monotonic()
        path, built = self.ensure_binary(args.version)
        state = "built" if built else "cached"
        print(f"{path} ({state} in {time.monotonic() - started:.1f}s)")
        for binary in list(self.binaries)[1:]:
            print(self.binary_path(args.version, binary))
        return 0
