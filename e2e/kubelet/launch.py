"""The container launcher: enter a pod's namespaces, set up its mounts, exec the container.

Run by the kubelet as ``python launch.py SPEC.json [STATUS_FD]`` (a script, stdlib only, so it
starts fast), as root. ``STATUS_FD`` is the write end of a close-on-exec pipe: the kubelet sees
EOF once the container's exec succeeded (only then is the container "running"), or the error.
In order:

1. ``PR_SET_PDEATHSIG``: the container dies with the kubelet (the signal survives exec);
2. ``setns`` into the pod's network namespace (``/run/netns/<name>``);
3. ``unshare`` a private mount namespace and UTS namespace, make every mount private (nothing
   propagates back to the host), set the pod's hostname;
4. bind-mount each volume and the pod's ``/etc/hosts`` and ``/etc/resolv.conf`` over their
   paths, parents before children (as container runtimes sort mounts), from file descriptors
   opened before the first mount (a volume over ``/tmp`` must not hide later sources under the
   host's ``/tmp``). A path that does not exist on the host is made without touching the host:
   its nearest existing ancestor is shadowed by a tmpfs that re-binds every entry of the
   original, and the missing directories are made in that tmpfs;
5. in the same parent-first order, bind the host's ``keep`` paths (the checkout and the Python
   installation the image table execs from) back over any volume mounted above them (see
   :func:`mount_plan`): a pod's emptyDir at ``/tmp`` must not hide a checkout in ``/tmp/x``.
   Their mount points are made inside that volume (a directory in the pod's own emptyDir), not
   in a tmpfs shadow, so that the volume stays the one the container writes to;
6. ``chdir`` and ``execve`` the container's argv with exactly the environment the kubelet built.

Any failure before exec exits with status 128 and a message on stderr (the container's log).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {source} {target}",
    )


def shadow(missing: str, staging: str) -> None:
    """Make directory ``missing`` exist in this mount namespace only."""
    ancestor = os.path.dirname(missing.rstrip("/")) or "/"
    while not os.path.isdir(ancestor):
        ancestor = os.path.dirname(ancestor) or "/"
    os.makedirs(staging, exist_ok=True)
    mount("tmpfs", staging, "tmpfs", 0)
    for entry in os.listdir(ancestor):
        original = os.path.join(ancestor, entry)
        copy = os.path.join(staging, entry)
        if os.path.islink(original):
            os.symlink(os.readlink(original), copy)
        elif os.path.isdir(original):
            os.mkdir(copy)
            mount(original, copy, None, MS_BIND | MS_REC)
        else:
            with open(copy, "w"):
                pass
            mount(original, copy, None, MS_BIND | MS_REC)
    mount(staging, ancestor, None, MS_BIND | MS_REC)
    os.makedirs(missing, exist_ok=True)


def depth(path: str) -> int:
    """Components of an absolute path: ``/`` is 0, ``/tmp`` 1, ``/tmp/x`` 2."""
    return len([part for part in os.path.normpath(path).split("/") if part])


def under(path: str, ancestor: str) -> bool:
    """``path`` lies strictly below ``ancestor``."""
    path, ancestor = os.path.normpath(path), os.path.normpath(ancestor)
    return path != ancestor and path.startswith(ancestor.rstrip("/") + "/")


def mount_plan(mounts: list[dict[str, Any]], keep: list[str]) -> list[dict[str, Any]]:
    """The binds in the order they are made: each volume (and file) mount, plus a bind of each
    ``keep`` path onto itself when some mount lands strictly above it (else it is not hidden and
    left alone, and a mount exactly on it wins, as the pod asked).

    Sorted by depth, stably: a parent is mounted before anything under it, so a ``keep`` bind
    comes after the volume that hid it and before any volume mounted inside it.
    """
    plan = [{**item, "keep": False} for item in mounts]
    for path in keep:
        if any(under(path, item["target"]) for item in mounts):
            plan.append({"source": path, "target": path, "readOnly": False, "keep": True})
    return sorted(plan, key=lambda item: depth(item["target"]))


def make_in_place(directory: str) -> bool:
    """Make ``directory`` in whatever is mounted there now (see the module docstring, 5.)."""
    try:
        os.makedirs(directory)
    except OSError:  # a read-only volume: the caller shadows it instead
        return False
    return True


def bind(source: str, target: str, read_only: bool, staging: str, in_place: bool = False) -> None:
    if os.path.isdir(source):
        if not os.path.isdir(target) and not (in_place and make_in_place(target)):
            shadow(target, staging)
    elif not os.path.exists(target):
        shadow(os.path.dirname(target), staging)
        with open(target, "w"):
            pass
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def main() -> None:
    with open(sys.argv[1]) as file:
        spec: dict[str, Any] = json.load(file)
    if len(sys.argv) > 2:
        # The kubelet reads this pipe until EOF: close-on-exec, so EOF means "exec happened".
        os.set_inheritable(int(sys.argv[2]), False)
    _check(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0), "prctl")
    fd = os.open(spec["netns"], os.O_RDONLY)
    _check(libc.setns(fd, CLONE_NEWNET), "setns")
    os.close(fd)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    hostname = spec["hostname"].encode()
    _check(libc.sethostname(hostname, len(hostname)), "sethostname")
    # Sources and staging directories are opened before any mount: a volume mounted over /tmp
    # must not hide the sources of later mounts that live under /tmp on the host.
    plan = mount_plan(spec["mounts"], spec.get("keep") or [])
    staging = os.open(spec["staging"], os.O_PATH | os.O_DIRECTORY)
    sources = [os.open(item["source"], os.O_PATH) for item in plan]
    for index, item in enumerate(plan):
        bind(
            f"/proc/self/fd/{sources[index]}",
            item["target"],
            bool(item.get("readOnly")),
            f"/proc/self/fd/{staging}/{index}",
            in_place=bool(item["keep"]),
        )
    for fd in (staging, *sources):
        os.close(fd)
    os.chdir(spec.get("workingDir") or "/")
    argv: list[str] = spec["argv"]
    os.execve(argv[0], argv, spec["env"])


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        message = f"e2e kubelet launcher: {exc}"
        print(message, file=sys.stderr, flush=True)
        if len(sys.argv) > 2:
            os.write(int(sys.argv[2]), message.encode())
        os._exit(128)
