"""The image -> command table: what "running an image" means for the process kubelet.

There is no container runtime. An image is known by its repository (tag and digest ignored) and
stands for an entrypoint plus a map from the commands a pod may name (as the image's ``PATH``
would find them) to local executables. A container's argv is then the Kubernetes rule:
``command`` replaces the entrypoint, ``args`` replace the image's default arguments.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def _runtime_paths() -> tuple[str, ...]:
    """What the commands below need from the host besides ``/usr`` and ``/bin``: the checkout
    (scripts, sources of the editable install), the virtualenv and the Python installation its
    interpreter links to (``sys.base_prefix``), each once, outermost only."""
    candidates = {
        os.path.realpath(p)
        for p in (ROOT, sys.prefix, sys.base_prefix, Path(os.path.realpath(PYTHON)).parent.parent)
    }
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
_ETCD_TOOLS = {"etcd": "/usr/bin/etcd", "etcdctl": "/usr/bin/etcdctl"}


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


TABLE: tuple[Image, ...] = (
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
            "etcdctl": "/usr/bin/etcdctl",
            **_SHELL_TOOLS,
        },
    ),
    # Upstream etcd: the image keeps its binaries in /usr/local/bin, Debian in /usr/bin.
    Image(
        ("gcr.io/etcd-development/etcd", "quay.io/coreos/etcd", "*/etcd", "etcd"),
        ("/usr/bin/etcd",),
        commands={
            **_ETCD_TOOLS,
            "/usr/local/bin/etcd": "/usr/bin/etcd",
            "/usr/local/bin/etcdctl": "/usr/bin/etcdctl",
            **_SHELL_TOOLS,
        },
    ),
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
        commands={**_PYTHON_TOOLS, **_SHELL_TOOLS, "etcdctl": "/usr/bin/etcdctl"},
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


def lookup(image: str) -> Image:
    repo = repository(image)
    for row in TABLE:
        if row.matches(repo):
            return row
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
