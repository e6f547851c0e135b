"""Log lines as etcd writes them: zap's JSON lines (etcd's default) or a console format.

One role: turn Python ``logging`` records, pyetcd's and every library's (grpc, asyncio), into the
lines etcd 3.5 writes with ``--logger zap``, and point the root logger at ``--log-outputs``.

* ``json`` (etcd's ``DefaultZapLoggerConfig``): one JSON object per line, keys ``level``, ``ts``,
  ``caller``, ``msg`` in that order, then the record's fields (:func:`fields`), then ``error``
  and ``stacktrace`` when the record carries an exception. ``ts`` is etcd's own time layout
  (``2006-01-02T15:04:05.000000Z0700``: microseconds, the local zone, ``Z`` for UTC); ``caller``
  is zap's short caller (``dir/file.py:line``); levels are zap's lower-case names. A record from
  a logger outside pyetcd also names it (zap's ``logger`` key), as a named zap logger does. No
  message, field or traceback can break a line: newlines are escaped inside the JSON strings.
* ``console``: pyetcd's human-readable lines (``2026-12-07 02:30:00,123 INFO pyetcd: msg``),
  with the fields appended as one JSON object, as zap's console encoder appends them.

Both formats go through zap's sampler as etcd sets it up (:class:`Sampler`).

Call sites attach fields with ``log.info("msg", extra=fields({"address": ...}))``. This module
does no I/O until :func:`configure` opens the outputs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Literal

__all__ = [
    "DEFAULT_OUTPUT",
    "FATAL",
    "FIELDS_ATTR",
    "JOURNAL_OUTPUT",
    "ConsoleFormatter",
    "LogFormat",
    "Sampler",
    "ZapJSONFormatter",
    "configure",
    "fields",
    "go_duration",
    "python_level",
    "short_caller",
    "writes_to_stderr",
    "zap_level",
    "zap_time",
]

LogFormat = Literal["json", "console"]

DEFAULT_OUTPUT = "default"
"""etcd's ``DefaultLogOutput``: stderr."""
JOURNAL_OUTPUT = "systemd/journal"
"""etcd's ``JournalLogOutput``."""

FATAL = logging.CRITICAL + 10
"""zap's ``fatal``, above ``panic`` (Python's CRITICAL, which pyetcd logs only for a panic)."""
logging.addLevelName(FATAL, "FATAL")

FIELDS_ATTR = "zap_fields"
"""The attribute of a ``LogRecord`` that holds its fields (set through :func:`fields`)."""

_ZAP_LEVELS = (
    (FATAL, "fatal"),
    (logging.CRITICAL, "panic"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warn"),
    (logging.INFO, "info"),
)
_PYTHON_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": FATAL,
}


def fields(values: Mapping[str, object] | None = None, /, **more: object) -> dict[str, object]:
    """``extra=`` for a logging call: the record's zap fields, in the order given.

    etcd's field names have dashes (``local-member-id``): pass those in ``values``.
    """
    return {FIELDS_ATTR: {**(values or {}), **more}}


def zap_level(levelno: int) -> str:
    """zap's name of a Python level: debug, info, warn, error, panic (CRITICAL), fatal."""
    for threshold, name in _ZAP_LEVELS:
        if levelno >= threshold:
            return name
    return "debug"


def python_level(level: str) -> int:
    """The Python level of etcd's ``--log-level`` value (zap's level names)."""
    return _PYTHON_LEVELS[level]


def zap_time(created: float) -> str:
    """etcd's ``ts``: Go layout ``2006-01-02T15:04:05.000000Z0700`` in the local time zone."""
    moment = datetime.fromtimestamp(created).astimezone()
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    if minutes == 0:
        zone = "Z"
    else:
        sign = "+" if minutes > 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + zone


def short_caller(pathname: str, lineno: int) -> str:
    """zap's ``ShortCallerEncoder``: the file's directory and name, and the line."""
    directory, name = os.path.split(pathname)
    parent = os.path.basename(directory)
    return f"{parent}/{name}:{lineno}" if parent else f"{name}:{lineno}"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for a non-negative duration (``7s``, ``1.5s``,
    ``2m0s``, ``500ms``): zap's ``StringDurationEncoder``."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if frac == 0:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    values = getattr(record, FIELDS_ATTR, None)
    return dict(values) if isinstance(values, Mapping) else {}


def _exception_fields(record: logging.LogRecord) -> dict[str, object]:
    """zap's ``error`` (the exception's text) and ``stacktrace`` (the whole traceback)."""
    out: dict[str, object] = {}
    stack: list[str] = []
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        out["error"] = str(exc) or type(exc).__name__
        stack.append("".join(traceback.format_exception(exc)).rstrip("\n"))
    elif record.exc_text:
        stack.append(record.exc_text)
    if record.stack_info:
        stack.append(record.stack_info)
    if stack:
        out["stacktrace"] = "\n".join(stack)
    return out


class ZapJSONFormatter(logging.Formatter):
    """One zap JSON line (without the newline) per record; see the module docstring."""

    def __init__(self, own_logger: str = "pyetcd") -> None:
        super().__init__()
        self.own_logger = own_logger

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "level": zap_level(record.levelno),
            "ts": zap_time(record.created),
        }
        name = record.name
        if name != self.own_logger and not name.startswith(self.own_logger + "."):
            line["logger"] = name
        line["caller"] = short_caller(record.pathname, record.lineno)
        line["msg"] = record.getMessage()
        for key, value in _record_fields(record).items():
            if key not in line:
                line[key] = value
        line.update(_exception_fields(record))
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """pyetcd's human-readable lines, the fields appended as a JSON object."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        extra = _record_fields(record)
        if extra:
            text += " " + json.dumps(extra, ensure_ascii=False, default=str)
        return text


class Sampler(logging.Filter):
    """zap's sampler as etcd configures it (``Sampling{Initial: 100, Thereafter: 100}``): per
    level and message, in each one-second tick, the first 100 records pass, then every 100th.

    A flood of one line (a peer refusing connections, a client retrying) stays readable and
    cheap, as in etcd. pyetcd's panics (CRITICAL) and fatal lines always pass.
    """

    def __init__(
        self,
        initial: int = 100,
        thereafter: int = 100,
        tick: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.initial = initial
        self.thereafter = thereafter
        self.tick = tick
        self.clock = clock
        self._window = -1
        self._counts: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        window = int(self.clock() // self.tick)
        key = (record.levelno, record.getMessage())
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts.clear()
            n = self._counts.get(key, 0) + 1
            self._counts[key] = n
        return n <= self.initial or (n - self.initial) % self.thereafter == 0


def _open(output: str) -> logging.Handler:
    if output in (DEFAULT_OUTPUT, "stderr"):
        return logging.StreamHandler(sys.stderr)
    if output == "stdout":
        return logging.StreamHandler(sys.stdout)
    # zap opens a path with O_WRONLY|O_APPEND|O_CREATE: append, never truncate.
    return logging.FileHandler(output, mode="a", encoding="utf-8")


def configure(outputs: Sequence[str], level: str, log_format: LogFormat) -> None:
    """Send every record (the root logger's) to ``outputs`` in ``log_format`` from ``level``.

    ``outputs`` are etcd's ``--log-outputs`` values, already validated: ``default`` or
    ``stderr``, ``stdout``, file paths. Raises ``OSError`` if a file cannot be opened (before
    anything changes). Uncaught exceptions, of the main thread and of other threads, and
    Python's warnings become records too, so that nothing else writes to the outputs.
    """
    handlers = []
    try:
        for output in outputs:
            handlers.append(_open(output))
    except OSError:
        for handler in handlers:
            handler.close()
        raise
    formatter: logging.Formatter = (
        ZapJSONFormatter() if log_format == "json" else ConsoleFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        # One sampler per handler: a handler's filter sees each record once.
        handler.addFilter(Sampler())
        root.addHandler(handler)
    root.setLevel(python_level(level))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("pyetcd").log(FATAL, "uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else "?"
    logging.getLogger("pyetcd").error(
        "uncaught exception in thread",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra=fields(thread=thread),
    )


def writes_to_stderr(outputs: Sequence[str]) -> bool:
    """Whether one of ``outputs`` is the standard error stream."""
    return any(output in (DEFAULT_OUTPUT, "stderr") for output in outputs)
