"""The kubelet's loop watchdog names the call that blocks the loop, and the stall's length."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from e2e.kubelet.watchdog import LoopWatchdog


def a_blocking_call() -> None:
    # The fault under test: a synchronous call holding the loop (what the watchdog reports).
    time.sleep(1.0)


def test_a_blocked_loop_is_reported_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=0.3, poll=0.05)
        started = time.monotonic()
        watchdog.start()
        # The heartbeat has run once: the stall below is measured from a beat, not from start.
        for _ in range(100):
            if watchdog._last > started:
                break
            await asyncio.sleep(0.01)
        assert watchdog._last > started, "the watchdog's heartbeat never ran"
        a_blocking_call()
        # Let the heartbeat run again, and the watchdog see it.
        for _ in range(40):
            await asyncio.sleep(0.05)
            if "ran again" in caplog.text:
                break
        watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="e2e.kubelet.watchdog"):
        asyncio.run(scenario())
    blocked = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(blocked) == 1
    assert "a_blocking_call" in blocked[0]
    assert "ran again after" in caplog.text


def test_a_busy_but_responsive_loop_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold=0.5, poll=0.05)
        watchdog.start()
        for _ in range(20):
            await asyncio.sleep(0.02)
        watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="e2e.kubelet.watchdog"):
        asyncio.run(scenario())
    assert "blocked" not in caplog.text
