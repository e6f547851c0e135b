"""File-system helpers shared by every layer that writes durable files (etcd's pkg/fileutil)."""

from __future__ import annotations

import os


def fsync_dir(dirpath: str | os.PathLike[str]) -> None:
    """fsync a directory so that a create or rename inside it survives a crash."""
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
