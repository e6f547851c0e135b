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

from tools.gobuild import STAMP, GoTool

ETCDUTL_VERSION = "v3.5.36"
"""The newest 3.5 release on the module proxy when this was written; restore's
`--bump-revision`/`--mark-compacted` exist since v3.5.10 and are unchanged up to here."""

MODULE = "go.etcd.io/etcd/etcdutl/v3"

TOOL = GoTool(name="etcdutl", package=MODULE, version=ETCDUTL_VERSION)
HINT = TOOL.hint
cache_dir = TOOL.cache_dir
binary_path = TOOL.binary_path
cached_binary = TOOL.cached_binary
ensure_binary = TOOL.ensure_binary

__all__ = [
    "ETCDUTL_VERSION",
    "HINT",
    "STAMP",
    "TOOL",
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
