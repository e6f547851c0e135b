"""Build the Versity S3 gateway from the Go module proxy, once per version, for the S3 tests.

The backup library's integration tests (`tests/integration/test_backup_s3.py`) run against two
independent S3 implementations: moto (Python) and versitygw, an S3 gateway onto a POSIX
directory written in Go (Apache-2.0; multipart uploads, UploadPartCopy, CopyObject with a
metadata directive, SigV4 with its own accounts). As `tools/etcdutl.py` does, the build goes
through a throw-away module that requires versitygw at the pinned version (`go get` records the
dependencies' checksums, verified against the checksum database) and builds its command.

The binary lands in `~/.cache/pyetcd-e2e/versitygw-<version>/versitygw` (the root follows
`PYETCD_E2E_CACHE`, else `XDG_CACHE_HOME`), next to a stamp file with the version, the Go
toolchain and the build time; while both are there nothing is rebuilt. Builds are serialised
with a file lock (the helpers are `tools/etcdutl.py`'s). A cold build takes about 85 s on 2 cores
(empty Go build cache; downloading the modules adds seconds), 6 s when Go's build cache already
holds the packages. `python -m tools.versitygw build` builds or finds it and prints its path;
`make test` runs that first. Pure stdlib.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.etcdutl import _go_env, _locked, _run, cache_root, go_binary

VERSITYGW_VERSION = "v1.8.0"
"""The only release the module proxy lists for github.com/versity/versitygw here."""

MODULE = "github.com/versity/versitygw"
PACKAGE = f"{MODULE}/cmd/versitygw"
STAMP = "stamp.json"
HINT = "build it with `make versitygw` (= `.venv/bin/python -m tools.versitygw build`; needs Go)"


def cache_dir(version: str = VERSITYGW_VERSION) -> Path:
    return cache_root() / f"versitygw-{version}"


def binary_path(version: str = VERSITYGW_VERSION) -> Path:
    return cache_dir(version) / "versitygw"


def cached_binary(version: str = VERSITYGW_VERSION) -> Path | None:
    """The built binary if it is there and its stamp names `version`; never builds."""
    path = binary_path(version)
    try:
        stamp = json.loads((cache_dir(version) / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != version:
        return None
    return path if os.access(path, os.X_OK) else None


def ensure_binary(version: str = VERSITYGW_VERSION, *, log: bool = True) -> tuple[Path, bool]:
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


def _build(directory: Path, version: str, log: bool) -> Path:
    log_path = directory / "build.log"
    log_path.write_text("")
    if log:
        print(f"building versitygw {version} (log: {log_path})", file=sys.stderr, flush=True)
    go = go_binary()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build.", dir=directory) as tmp:
        module = Path(tmp)
        (module / "go.mod").write_text("module pyetcd.io/tools/versitygwbuild\n\ngo 1.21\n")
        _run([go, "get", f"{PACKAGE}@{version}"], module, log_path)
        staged = module / "versitygw"
        _run([go, "build", "-trimpath", "-o", str(staged), PACKAGE], module, log_path)
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
        print(f"built versitygw {version} in {seconds:.0f}s", file=sys.stderr, flush=True)
    return binary_path(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or find cached) versitygw; prints its path")
    build.add_argument("--version", default=VERSITYGW_VERSION)
    args = parser.parse_args(argv)
    started = time.monotonic()
    path, built = ensure_binary(args.version)
    state = "built" if built else "cached"
    print(f"{path} ({state} in {time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
