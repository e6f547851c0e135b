"""Build upstream etcd 3.5 (the server and etcdctl) from the Go module proxy, for real upgrades.

Debian's etcd is 3.4 (`/usr/bin/etcd`, `/usr/bin/etcdctl`); a minor upgrade 3.4 -> 3.5 needs the
next release too. In 3.5 the server module `go.etcd.io/etcd/server/v3` has its `package main`
at its root (`main.go`, which calls `etcdmain.Main`), and etcdctl is the module
`go.etcd.io/etcd/etcdctl/v3`. Both modules carry `replace` lines, so, as `tools/etcdutl.py`
does, the build goes through a throw-away module that requires both at the pinned version
(`go get` resolves the other etcd modules to the same release and records their checksums,
verified against the checksum database) and builds each command from it. The server binary is
named `etcd`, as in etcd's release archives; its version string comes from
`go.etcd.io/etcd/api/v3/version`, so `etcd --version` and the `/version` endpoint say 3.5.36
without the release build's ldflags (only the git SHA reads "Not provided").

Both binaries land in `~/.cache/pyetcd-e2e/etcd35-<version>/{etcd,etcdctl}` (the root follows
`PYETCD_E2E_CACHE`, else `XDG_CACHE_HOME`), next to one stamp file with the version, the Go
toolchain and the build time; while all three are there nothing is rebuilt. Builds are serialised
with a file lock (`tools/gobuild.py`). A cold build took 61 s on 2 cores (empty Go build
cache, modules downloaded; 86 s of CPU), 9 s when Go's build cache already holds the packages
(the etcdutl build shares most of them). `python -m tools.etcd35 build` builds or finds them and
prints their paths; `make test` and `make demo` run that first. The e2e process kubelet maps
`etcd:v3.5.x` images to these binaries (`e2e/kubelet/images.py`). Pure stdlib.
"""

from __future__ import annotations

from pathlib import Path

from tools.gobuild import STAMP, GoTool

ETCD35_VERSION = "v3.5.36"
"""The newest 3.5 release on the module proxy when this was written (as etcdutl's); it builds
with the machine's Go 1.26 (GOTOOLCHAIN=local) as it is."""

SERVER_MODULE = "go.etcd.io/etcd/server/v3"
ETCDCTL_MODULE = "go.etcd.io/etcd/etcdctl/v3"

TOOL = GoTool(
    name="etcd35",
    package=SERVER_MODULE,
    version=ETCD35_VERSION,
    binary="etcd",
    extra=(("etcdctl", ETCDCTL_MODULE),),
)
HINT = TOOL.hint
cache_dir = TOOL.cache_dir
binary_path = TOOL.binary_path
cached_binary = TOOL.cached_binary
ensure_binary = TOOL.ensure_binary


def cached_etcdctl(version: str | None = None) -> Path | None:
    """The built etcdctl beside the server, or None when the tool is not (completely) built."""
    return TOOL.cached_binary(version, "etcdctl")


__all__ = [
    "ETCD35_VERSION",
    "HINT",
    "STAMP",
    "TOOL",
    "binary_path",
    "cache_dir",
    "cached_binary",
    "cached_etcdctl",
    "ensure_binary",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    return TOOL.main(argv, __doc__.splitlines()[0] if __doc__ else None)


if __name__ == "__main__":
    raise SystemExit(main())
