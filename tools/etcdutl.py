"""Build upstream `etcdutl` 3.5 from the Go module proxy, once per version, for side-by-side tests.

`go install go.etcd.io/etcd/etcdutl/v3@<version>` refuses the module: its go.mod has `replace`
directives pointing at sibling directories of the etcd repository. So, as `e2e/k8s/build.py` does
for Kubernetes, the build goes through a throw-away module that requires etcdutl at the pinned
version (`go get` resolves the other etcd modules to the same release and records their checksums,
verified against the checksum database) and builds etcdutl's main package from it.

The binary lands in `~/.cache/pyetcd-e2e/etcdutl-<version>/etcdutl` (the root follows
`PYETCD_E2E_CACHE`, else `XDG_CACHE_HOME`), next to a stamp file with the version, the Go
toolchain and the build time; while both are there nothing is rebuilt. Builds are serialised with a
file lock. A cold build takes about 40 s on 2 cores (empty Go build cache, modules downloaded), a
few seconds when Go's build cache already holds the packages. `python -m tools.etcdutl build`
builds or finds it and prints its path; `make test` runs that first. Pure stdlib.
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
from pathlib import Path

ETCDUTL_VERSION = "v3.5.36"
"""The newest 3.5 release on the module proxy when this was written; restore's
`--bump-revision`/`--mark-compacted` exist since v3.5.10 and are unchanged up to here."""

MODULE = "go.etcd.io/etcd/etcdutl/v3"
STAMP = "stamp.json"
HINT = "build it with `make etcdutl` (= `.venv/bin/python -m tools.etcdutl build`; needs Go)"
_GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


def cache_root() -> Path:
    env = os.environ.get("PYETCD_E2E_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pyetcd-e2e"


def cache_dir(version: str = ETCDUTL_VERSION) -> Path:
    return cache_root() / f"etcdutl-{version}"


def binary_path(version: str = ETCDUTL_VERSION) -> Path:
    return cache_dir(version) / "etcdutl"


def cached_binary(version: str = ETCDUTL_VERSION) -> Path | None:
    """The built binary if it is there and its stamp names `version`; never builds."""
    path = binary_path(version)
    try:
        stamp = json.loads((cache_dir(version) / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != version:
        return None
    return path if os.access(path, os.X_OK) else None


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in _GO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no Go toolchain found (looked on PATH and in /usr/local/go/bin)")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # a static binary, like etcd's release builds
    # Two cores are shared with whatever else runs; -p=2 keeps the build from oversubscribing.
    env["GOFLAGS"] = env.get("PYETCD_E2E_GOFLAGS", "-p=2 -buildvcs=false")
    env["GOTOOLCHAIN"] = "local"  # never download another toolchain behind the caller's back
    return env


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_binary(version: str = ETCDUTL_VERSION, *, log: bool = True) -> tuple[Path, bool]:
    """The cached binary, built first if needed; returns (path, built now)."""
    found = cached_binary(version)
    if found:
        return found, False
    directory = cache_dir(version)
    with _locked(directory):
        found = cached_binary(version)  # another process may have built it while we waited
        if found:
            return found, False
        return _build(directory, version, log), True


def _run(cmd: list[str], cwd: Path, log_path: Path) -> None:
    with open(log_path, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(
            cmd, cwd=cwd, env=_go_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"{cmd[1]} failed (exit {result.returncode}), see {log_path}:\n{tail}")


def _build(directory: Path, version: str, log: bool) -> Path:
    log_path = directory / "build.log"
    log_path.write_text("")
    if log:
        print(f"building etcdutl {version} (log: {log_path})", file=sys.stderr, flush=True)
    go = go_binary()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build.", dir=directory) as tmp:
        module = Path(tmp)
        (module / "go.mod").write_text("module pyetcd.io/tools/etcdutlbuild\n\ngo 1.21\n")
        _run([go, "get", f"{MODULE}@{version}"], module, log_path)
        staged = module / "etcdutl"
        _run([go, "build", "-trimpath", "-o", str(staged), MODULE], module, log_path)
        # Rename within the cache dir: a reader never sees a half-written binary.
        os.replace(staged, binary_path(version))
    seconds = time.monotonic() - started
    go_version = subprocess.run(
        [go, "env", "GOVERSION"], check=True, capture_output=True, text=True, env=_go_env()
    ).stdout.strip()
    stamp = {
        "version": version,
        "go": go_version,
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (directory / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    if log:
        print(f"built etcdutl {version} in {seconds:.0f}s", file=sys.stderr, flush=True)
    return binary_path(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or find cached) etcdutl; prints its path")
    build.add_argument("--version", default=ETCDUTL_VERSION)
    args = parser.parse_args(argv)
    started = time.monotonic()
    path, built = ensure_binary(args.version)
    state = "built" if built else "cached"
    print(f"{path} ({state} in {time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
