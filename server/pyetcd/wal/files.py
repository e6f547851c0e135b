"""WAL file naming, listing, locking and durability helpers.

Segment files are named `%016x-%016x.wal` (sequence number, index of the first entry the file
may hold), exactly as etcd names them, so a pyetcd data directory and an etcd one are
interchangeable. Everything here is plain POSIX I/O with no knowledge of the record format.
"""

from __future__ import annotations

import errno
import fcntl
import os

from pyetcd.wal.errors import WALError, WALLockedError

# etcd's SegmentSizeBytes: 64 * 1000 * 1000, not 64 MiB.
SEGMENT_SIZE_BYTES = 64 * 1000 * 1000

WAL_SUFFIX = ".wal"

# etcd only ever creates files with owner read/write (fileutil.PrivateFileMode).
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def wal_name(seq: int, index: int) -> str:
    """The file name of segment `seq` whose first entry follows `index`."""
    return f"{seq:016x}-{index:016x}{WAL_SUFFIX}"


def parse_wal_name(name: str) -> tuple[int, int]:
    """`(seq, index)` of a segment file name; ValueError when it is not one."""
    if not name.endswith(WAL_SUFFIX):
        raise ValueError(f"bad wal name: {name!r}")
    stem = name[: -len(WAL_SUFFIX)]
    parts = stem.split("-")
    if len(parts) != 2 or len(parts[0]) != 16 or len(parts[1]) != 16:
        raise ValueError(f"bad wal name: {name!r}")
    return int(parts[0], 16), int(parts[1], 16)


def read_wal_names(dirpath: str) -> list[str]:
    """The segment names in `dirpath`, sorted; other files (tmp, .broken) are ignored."""
    names = []
    for name in os.listdir(dirpath):
        try:
            parse_wal_name(name)
        except ValueError:
            continue
        names.append(name)
    names.sort()
    return names


def exists(dirpath: str) -> bool:
    """Whether `dirpath` holds at least one WAL segment (etcd's wal.Exist)."""
    try:
        return bool(read_wal_names(dirpath))
    except FileNotFoundError:
        return False


def check_sequence(dirpath: str, names: list[str]) -> None:
    """Raise when the sequence numbers of `names` are not consecutive (a missing segment)."""
    last = -1
    for name in names:
        seq, _ = parse_wal_name(name)
        if last >= 0 and seq != last + 1:
            raise WALError(
                f"wal: segment sequence broken in {dirpath}: {name} follows sequence {last:016x}"
            )
        last = seq


def search_index(names: list[str], index: int) -> int:
    """Position of the last segment whose first index is <= `index`, or -1."""
    for i in range(len(names) - 1, -1, -1):
        _, first = parse_wal_name(names[i])
        if index >= first:
            return i
    return -1


def lock_fd(fd: int, path: str) -> None:
    """Take an exclusive flock without blocking; a held lock means another WAL owns the file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WALLockedError(f"wal: {path} is locked by another open WAL") from exc
        raise


def open_locked(path: str, flags: int) -> int:
    """Open `path` and flock it; the descriptor is closed again when the lock is refused."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        lock_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def try_lock(path: str) -> int | None:
    """An fd holding the lock on `path`, or None when someone holds it (used by purge)."""
    try:
        return open_locked(path, os.O_RDONLY)
    except WALLockedError:
        return None


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes so that appends do not allocate blocks (etcd's Preallocate).

    The file length grows to `size` and reads as zeros: a zero length field is how a reader
    knows where the data ends.
    """
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        # Some file systems (tmpfs on old kernels, some FUSE) refuse fallocate; extending with
        # ftruncate still gives the zero-filled tail readers rely on.
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a short write is legal for regular files)."""
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        view = view[n:]
