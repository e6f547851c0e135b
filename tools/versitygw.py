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
with a file lock (`tools/gobuild.py` serves both). A cold build takes about 85 s on 2 cores
(empty Go build cache; downloading the modules adds seconds), 6 s when Go's build cache already
holds the packages. `python -m tools.versitygw build` builds or finds it and prints its path;
`make test` runs that first. Pure stdlib.
"""

from __future__ import annotations

from tools.gobuild import STAMP, GoTool

VERSITYGW_VERSION = "v1.8.0"
"""The only release the module proxy lists for github.com/versity/versitygw here."""

MODULE = "github.com/versity/versitygw"
PACKAGE = f"{MODULE}/cmd/versitygw"

TOOL = GoTool(name="versitygw", package=PACKAGE, version=VERSITYGW_VERSION)
HINT = TOOL.hint
cache_dir = TOOL.cache_dir
binary_path = TOOL.binary_path
cached_binary = TOOL.cached_binary
ensure_binary = TOOL.ensure_binary

__all__ = [
    "HINT",
    "STAMP",
    "TOOL",
    "VERSITYGW_VERSION",
    "binary_path",
    "cache_dir",
    "cached_binary",
    "ensure_binary",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    return TOOL.main(argv, __doc__.splitlines()[0] if __doc__ else None)


if __name__ == "__main__":
    raise SystemExit(main())
