"""The image -> command table: what "running an image" means for the process kubelet.

There is no container runtime. An image is known by its repository (tag and digest ignored) and
stands for an entrypoint plus a map from the commands a pod may name (as the image's ``PATH``
would find them) to local executables. A container's argv is then the Kubernetes rule:
``command`` replaces the entrypoint, ``args`` replace the image's default arguments.

Upstream etcd is the exception: its tag picks the release (:data:`ETCD_RELEASES`), so that a
``spec.version`` upgrade 3.4 -> 3.5 runs the next minor for real. ``v3.4.x`` is Debian's etcd
3.4 (``/usr/bin/etcd``), ``v3.5.x`` the etcd 3.5 that ``tools/etcd35.py`` builds from the Go
module proxy (``make etcd35``), an image without a tag Debian's; any other tag is not mapped.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools import etcd35

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def _runtime_paths() -> tuple[str, ...]:
    """What the commands below need from the host besides ``/usr`` and ``/bin``: the checkout
    (scripts, sources of the editable install), the virtualenv and the Python installation its
    interpreter links to (``sys.base_prefix``), and the built etcd 3.5 if it is there when the
    kubelet starts, each once, outermost only."""
    paths: list[str | Path] = [
        ROOT,
        sys.prefix,
        sys.base_prefix,
        Path(os.path.realpath(PYTHON)).parent.parent,
    ]
    if etcd35.cache_dir().is_dir():
        paths.append(etcd35.cache_dir())
    candidates = {os.path.realpath(p) for p in paths}
    return tuple(
        sorted(
            path
            for path in candidates
            if not any(path.startswith(other.rstrip("/") + "/") for other in candidates)
        )
    )


# The launcher binds these back when a pod's volume hides them (an emptyDir at /tmp over a
# checkout in /tmp/x): the image table's commands must resolve wherever volumes mount.
RUNTIME_PATHS = _runtime_paths()

# Plain tools every image here can run (for exec probes and debugging).
_SHELL_TOOLS = {
    name: f"/bin/{name}" for name in ("sh", "cat", "ls", "sleep", "env", "echo", "true", "false")
}
_PYTHON_TOOLS = {"python": PYTHON, "python3": PYTHON}
DEBIAN_ETCD = "/usr/bin/etcd"
DEBIAN_ETCDCTL = "/usr/bin/etcdctl"


class ImageNotMappedError(LookupError):
    """The image (or a command it was asked to run) has no local stand-in."""


@dataclass(frozen=True)
class Image:
    """One row of the table."""

    patterns: tuple[str, ...]
    entrypoint: tuple[str, ...]
    default_args: tuple[str, ...] = ()
    commands: dict[str, str] = field(default_factory=dict)

    def matches(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, p) for p in self.patterns)


@dataclass(frozen=True)
class Release:
    """The local stand-in of one family of an image's tags: ``binaries`` gives the local
    ``(etcd, etcdctl)``, or raises :class:`ImageNotMappedError` when they are not there."""

    tags: tuple[str, ...]
    description: str
    binaries: Callable[[], tuple[str, str]]

    def matches(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, p) for p in self.tags)


@dataclass(frozen=True)
class TaggedImage:
    """A repository whose tag picks the release (upstream etcd); ``untagged`` serves an image
    named without a tag. :meth:`image` gives the row of one tag."""

    patterns: tuple[str, ...]
    releases: tuple[Release, ...]
    untagged: Release

    def matches(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, p) for p in self.patterns)

    def release(self, image: str) -> Release:
        found = tag(image)
        if found is None:
            return self.untagged
        for release in self.releases:
            if release.matches(found):
                return release
        raise ImageNotMappedError(
            f"no local command for image {image!r}: tag {found!r} is not one of the "
            f"releases available here ({available(self)})"
        )

    def image(self, image: str) -> Image:
        release = self.release(image)
        try:
            etcd, etcdctl = release.binaries()
        except ImageNotMappedError as exc:
            raise ImageNotMappedError(f"no local command for image {image!r}: {exc}") from exc
        # The image keeps its binaries in /usr/local/bin, Debian in /usr/bin.
        return Image(
            self.patterns,
            (etcd,),
            commands={
                "etcd": etcd,
                "etcdctl": etcdctl,
                "/usr/local/bin/etcd": etcd,
                "/usr/local/bin/etcdctl": etcdctl,
                **_SHELL_TOOLS,
            },
        )


def available(row: TaggedImage) -> str:
    """The release table of ``row`` in words, e.g. for the demo's hints."""
    return ", ".join(f"{r.tags[0].replace('*', 'x')} -> {r.description}" for r in row.releases)


def _debian_etcd() -> tuple[str, str]:
    return DEBIAN_ETCD, DEBIAN_ETCDCTL


def _built_etcd35() -> tuple[str, str]:
    etcd, etcdctl = etcd35.cached_binary(), etcd35.cached_etcdctl()
    if etcd is None or etcdctl is None:
        raise ImageNotMappedError(
            f"etcd {etcd35.ETCD35_VERSION} (the v3.5.x images) is not built in "
            f"{etcd35.cache_dir()}: {etcd35.HINT}"
        )
    return str(etcd), str(etcdctl)


ETCD_34 = Release(("v3.4.*", "3.4.*"), "Debian etcd 3.4.23", _debian_etcd)
ETCD_35 = Release(
    ("v3.5.*", "3.5.*"),
    f"etcd {etcd35.ETCD35_VERSION.removeprefix('v')} built from the Go module proxy",
    _built_etcd35,
)

# Upstream etcd, by tag.
ETCD_RELEASES = TaggedImage(
    ("gcr.io/etcd-development/etcd", "quay.io/coreos/etcd", "*/etcd", "etcd"),
    (ETCD_34, ETCD_35),
    untagged=ETCD_34,
)

TABLE: tuple[Image | TaggedImage, ...] = (
    # The operator first: its repository contains "pyetcd" too.
    Image(
        ("*etcd-operator",),
        (str(VENV_BIN / "etcd-operator"),),
        commands={
            "etcd-operator": str(VENV_BIN / "etcd-operator"),
            # The restore init container of clusters created from a backup.
            "etcd-restore": str(VENV_BIN / "etcd-restore"),
            # The member-init container of every member pod.
            "etcd-member-init": str(VENV_BIN / "etcd-member-init"),
            "pyetcdutl": str(VENV_BIN / "pyetcdutl"),
            **_PYTHON_TOOLS,
        },
    ),
    Image(
        ("*/pyetcd", "pyetcd"),
        (str(VENV_BIN / "pyetcd"),),
        commands={
            "pyetcd": str(VENV_BIN / "pyetcd"),
            "pyetcdutl": str(VENV_BIN / "pyetcdutl"),
            "etcdctl": DEBIAN_ETCDCTL,
            **_SHELL_TOOLS,
        },
    ),
    ETCD_RELEASES,
    # Test images of the e2e suite.
    Image(
        ("e2e.pyetcd.io/http-server",),
        (PYTHON, "-m", "http.server"),
        ("8080",),
        commands={**_PYTHON_TOOLS, **_SHELL_TOOLS},
    ),
    Image(
        ("e2e.pyetcd.io/python",),
        (PYTHON,),
        commands={**_PYTHON_TOOLS, **_SHELL_TOOLS, "etcdctl": DEBIAN_ETCDCTL},
    ),
    Image(
        # Debian's Prometheus (the Makefile's system-deps install it), and its promtool to
        # query it from inside the pod's network.
        ("e2e.pyetcd.io/prometheus",),
        ("/usr/bin/prometheus",),
        commands={
            "prometheus": "/usr/bin/prometheus",
            "promtool": "/usr/bin/promtool",
            **_SHELL_TOOLS,
            **_PYTHON_TOOLS,
        },
    ),
    Image(
        # Not the pause image: the control plane's own tests use it for pods that never run.
        ("busybox", "*/busybox"),
        ("/bin/sleep", "infinity"),
        commands=_SHELL_TOOLS,
    ),
)


def repository(image: str) -> str:
    """``registry/name`` without ``:tag`` or ``@digest``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def tag(image: str) -> str | None:
    """The ``:tag`` of an image reference, None when it names none (a digest is not a tag)."""
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return name[colon + 1 :] if colon > name.rfind("/") else None


def lookup(image: str) -> Image:
    """The row of ``image``: by repository, and for upstream etcd by tag too."""
    repo = repository(image)
    for row in TABLE:
        if row.matches(repo):
            return row.image(image) if isinstance(row, TaggedImage) else row
    raise ImageNotMappedError(f"no local command for image {image!r}")


def resolve(image: str, command: list[str], args: list[str]) -> list[str]:
    """The local argv of a container (``command``/``args`` already ``$(VAR)``-expanded)."""
    row = lookup(image)
    if command:
        argv = [map_command(row, command[0]), *command[1:], *args]
    elif args:
        argv = [*row.entrypoint, *args]
    else:
        argv = [*row.entrypoint, *row.default_args]
    return argv


def map_command(row: Image, name: str) -> str:
    """A command as the pod names it -> the local executable."""
    if name in row.commands:
        return row.commands[name]
    base = name.rsplit("/", 1)[-1]
    if base in row.commands and name in (base, f"/bin/{base}", f"/usr/bin/{base}"):
        return row.commands[base]
    if name in row.entrypoint:
        return name
    raise ImageNotMappedError(f"image {row.patterns[0]!r} has no command {name!r}")
