"""Broken invariants stop the member at once, as etcd's panics do.

Two kinds of failure, handled apart everywhere in pyetcd:

* **Faults** of the world outside the member (a peer unreachable, a malformed frame, a full
  disk that may clear, a request that cannot be served now) are retried with backoff, refused
  to the caller, or reported; the member carries on.
* **Broken invariants** (Raft asked to commit past the end of its log, an entry applied out of
  order, a membership change Raft cannot take) mean the member's state can no longer be
  trusted. Carrying on could acknowledge a write the cluster does not hold or help elect a
  leader that lacks committed entries. The member logs the reason and exits with etcd's panic
  status (2), without a graceful shutdown that might write more.

Invariants are raised as ``AssertionError`` (``InvariantError`` is one) by the library code
(``raft``, ``wal``, ``mvcc``); the boundaries that used to absorb exceptions (the peer
transport's handlers, the server's loops, the gRPC and HTTP handlers) call :func:`panic`
for them instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger("pyetcd")

# etcd's exit status for a Go panic.
PANIC_EXIT_CODE = 2


class InvariantError(AssertionError):
    """A state the member must never reach; the message says which, in etcd's words."""


def is_invariant(exc: BaseException) -> bool:
    """Whether ``exc`` is a broken invariant (stop) rather than a fault (retry or refuse)."""
    return isinstance(exc, AssertionError)


def _exit(code: int) -> NoReturn:
    os._exit(code)


# Replaced by tests that exercise a panic without ending the test process.
exit_process: Callable[[int], NoReturn] = _exit


def _logs_to_stderr() -> bool:
    return any(
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and handler.stream is sys.stderr
        for handler in logging.getLogger().handlers
    )


def panic(message: str) -> NoReturn:
    """Log ``panic: <message>`` and end the process with status 2 (no graceful shutdown).

    Everything the member acknowledged is already on disk (the WAL is fsynced before any
    answer), so an immediate exit loses nothing that was promised.
    """
    log.critical("panic: %s", message)
    for handler in logging.getLogger().handlers:
        # A broken log handler must not keep the member alive.
        with contextlib.suppress(Exception):
            handler.flush()
    if not _logs_to_stderr():
        # Logging not configured yet (a panic during start-up), or --log-outputs sends the log
        # elsewhere: the message must still reach stderr, and so the container's termination
        # log, as Go's panic always writes it there.
        try:
            sys.stderr.write(f"panic: {message}\n")
            sys.stderr.flush()
        except OSError:
            pass
    exit_process(PANIC_EXIT_CODE)


def panic_on_invariant(exc: BaseException, where: str) -> None:
    """Call :func:`panic` if ``exc`` is a broken invariant; return for a fault."""
    if is_invariant(exc):
        # etcd's message alone on the panic line (tools and the operator match it); where it
        # broke on the line before.
        log.error("broken invariant in %s", where, exc_info=exc)
        panic(str(exc))
