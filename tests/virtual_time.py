"""A virtual-time asyncio event loop: timers fire at once, in order, with no real waiting.

The engine takes its time from the running loop (`loop.time()`, `asyncio.sleep`, timeouts), so
running it on this loop makes every limiter wait, backoff and fake latency instantaneous while
keeping their order and arithmetic exact. When nothing is ready, the loop's selector jumps the
clock to the next timer instead of blocking; real I/O (thread wake-ups) still works.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# What asyncio takes as "due now" when it looks for timers to run.
CLOCK_RESOLUTION_S = time.get_clock_info("monotonic").resolution


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # nothing scheduled: only real I/O can wake us
            return super().select(None)
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        """Schedule as asyncio does, but a timer due within the clock's resolution (which
        asyncio runs at once) moves the clock to it, as a real clock would have passed it:
        code waiting for `time()` to reach a moment a few ulps away must not spin forever."""
        if 0 < when - self._jumping.now < CLOCK_RESOLUTION_S:
            self._jumping.now = when
        return super().call_at(when, callback, *args, context=context)


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
