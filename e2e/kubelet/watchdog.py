"""A watchdog for the kubelet's event loop: when the loop is blocked, log where.

The process kubelet proxies every ClusterIP connection (the ``kubernetes`` Service included)
and runs every pod from one asyncio loop, so a synchronous call that takes long on that loop
stalls every pod's traffic at once; e2e scenarios then see a request answered a minute late
with nothing in any log. A daemon thread notes how long ago the loop last ran a heartbeat and,
once that exceeds ``threshold``, logs the loop thread's stack (once per stall, and the stall's
length when it ends).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)

HEARTBEAT = 0.25


class LoopWatchdog:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, threshold: float = 3.0, poll: float = 1.0
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.poll = poll
        self._last = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        """Call from the loop's thread."""
        self._loop_thread = threading.get_ident()
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _beat(self) -> None:
        self._last = time.monotonic()
        if not self._stopped.is_set():
            self.loop.call_later(HEARTBEAT, self._beat)

    def _watch(self) -> None:
        stalled_since = 0.0
        # A monitor's polling period, not synchronisation: the loop is what is being watched.
        while not self._stopped.wait(self.poll):
            lag = time.monotonic() - self._last
            if lag > self.threshold and not stalled_since:
                stalled_since = self._last
                frame = sys._current_frames().get(self._loop_thread)
                stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
                log.warning("event loop blocked for %.1f s, at:\n%s", lag, stack)
            elif lag <= self.threshold and stalled_since:
                log.warning("event loop ran again after %.1f s", self._last - stalled_since)
                stalled_since = 0.0
