"""``kubectl logs`` on the process kubelet: which bytes of a container's log file to serve.

A container's processes write straight into ``<pod dir>/logs/<container>.log`` (no copy through
the kubelet), every run appending after a ``--- start`` line; :class:`~e2e.kubelet.pods.LogRun`
records where each run begins. A request serves one run: the current (last) one, or with
``previous`` the one before it, as a kubelet serves the current or the previous container
instance. Options are those of the kubelet's ``/containerLogs`` (``v1.PodLogOptions`` as query
parameters): ``tailLines`` (also the older ``tail``), ``limitBytes``, ``follow`` (until the run
ends or the client goes away), ``previous``. There are no per-line timestamps (the file is the
processes' own output), so ``timestamps``, ``sinceSeconds`` and ``sinceTime`` are refused with
400 instead of being silently ignored; so is ``stream`` other than ``All`` (the kubelet without
its ``PodLogsQuerySplitStreams`` gate answers the same).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from e2e.kubelet.pods import Container, LogRun

CHUNK = 64 * 1024
# How often a follower looks for new output: the processes write the file directly, so there is
# nothing to wait on but the file itself (a kubelet watches it with inotify; polling is enough).
FOLLOW_POLL = 0.2


class LogRequestError(ValueError):
    """The request cannot be served: ``status`` and the kubelet's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None


def _flag(query: Mapping[str, Sequence[str]], name: str) -> bool:
    values = query.get(name) or []
    return bool(values) and values[-1].lower() in ("true", "1")


def _number(query: Mapping[str, Sequence[str]], name: str, minimum: int) -> int | None:
    values = query.get(name) or []
    if not values:
        return None
    try:
        value = int(values[-1])
    except ValueError:
        raise LogRequestError(400, f"{name}: not a number: {values[-1]!r}") from None
    if value < minimum:
        raise LogRequestError(422, f"{name}: must be at least {minimum}")
    return value


def parse_options(query: Mapping[str, Sequence[str]]) -> LogOptions:
    """The query of ``GET /containerLogs/...`` -> options; :class:`LogRequestError` if refused."""
    for name in ("timestamps", "sinceSeconds", "sinceTime"):
        if (query.get(name) or [""])[-1] not in ("", "false"):
            raise LogRequestError(
                400,
                f"{name} is not supported by the e2e process kubelet "
                "(its log files carry no per-line timestamps)",
            )
    stream = (query.get("stream") or ["All"])[-1]
    if stream != "All":
        raise LogRequestError(400, f"unable to return the given log stream: {stream!r}")
    tail = dict(query)
    if "tail" in query:  # the kubelet's older spelling; "all" is no limit
        tail["tailLines"] = [] if query["tail"][-1] == "all" else list(query["tail"])
    return LogOptions(
        follow=_flag(query, "follow"),
        previous=_flag(query, "previous"),
        tail_lines=_number(tail, "tailLines", 0),
        limit_bytes=_number(query, "limitBytes", 1),
    )


@dataclass(frozen=True)
class Segment:
    """One run's bytes in the log file: from ``run.start`` to the next run's marker (or the end
    of the file while it is the last run)."""

    path: Path
    container: Container
    index: int

    @property
    def run(self) -> LogRun:
        return self.container.runs[self.index]

    def end(self) -> int | None:
        """Where this run's output ends; None while it is the last run (the file's end)."""
        runs = self.container.runs
        return runs[self.index + 1].marker if self.index + 1 < len(runs) else None

    def finished(self) -> bool:
        """Nothing more will be written to this run."""
        return self.end() is not None or not self.run.live


def select(log_dir: Path, pod: str, container: Container, previous: bool) -> Segment:
    """The run a request asks for, with the kubelet's 400 messages when there is none."""
    runs = container.runs
    if previous:
        if len(runs) < 2:
            raise LogRequestError(
                400, f'previous terminated container "{container.name}" in pod "{pod}" not found'
            )
        index = len(runs) - 2
    else:
        if not runs:
            reason = (container.state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise LogRequestError(
                400, f'container "{container.name}" in pod "{pod}" is waiting to start: {reason}'
            )
        index = len(runs) - 1
    return Segment(log_dir / f"{container.name}.log", container, index)


def _size(path: Path) -> int:
    return os.stat(path).st_size


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def _tail_start(path: Path, start: int, end: int, lines: int) -> int:
    """The offset of the last ``lines`` lines in ``[start, end)`` (a last line without its
    newline counts as a line, a newline at the very end does not start one)."""
    if lines == 0:
        return end
    position = end
    seen = 0
    with path.open("rb") as handle:
        # The final newline ends the last line; it does not begin another.
        limit = end
        if end > start:
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                limit = end - 1
        position = limit
        while position > start:
            block = min(CHUNK, position - start)
            handle.seek(position - block)
            data = handle.read(block)
            index = len(data)
            while True:
                index = data.rfind(b"\n", 0, index)
                if index < 0:
                    break
                seen += 1
                if seen == lines:
                    return position - block + index + 1
            position -= block
    return start


async def read(
    segment: Segment, options: LogOptions, gone: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """The run's bytes per ``options``; with ``follow``, new output as it comes, until the run
    ends or ``gone()`` (the client left). The file going away (pod deleted) ends it too."""
    path = segment.path
    run = segment.run
    try:
        end = segment.end()
        now = end if end is not None else await asyncio.to_thread(_size, path)
        position = run.start
        if options.tail_lines is not None:
            position = await asyncio.to_thread(
                _tail_start, path, run.start, now, options.tail_lines
            )
        budget = options.limit_bytes
        while budget is None or budget > 0:
            # Checked before reading: output written before the run ended is then all read.
            finished = segment.finished()
            end = segment.end()
            bound = end if end is not None else await asyncio.to_thread(_size, path)
            if not options.follow:
                bound = min(bound, now)
            if position < bound:
                size = min(CHUNK, bound - position, budget if budget is not None else CHUNK)
                data = await asyncio.to_thread(_read, path, position, size)
                if not data:
                    return
                position += len(data)
                if budget is not None:
                    budget -= len(data)
                yield data
                continue
            if not options.follow or finished or gone():
                return
            await asyncio.sleep(FOLLOW_POLL)
    except FileNotFoundError:
        return
