"""A burst of launches is queued, not failed: at most ``LaunchQueue.concurrency`` builds and session starts
run at once (about what the host's cores sustain), the rest wait in line, first come first served, and
hear their place in line as ``waiting`` events::

    async with queue.slot(on_wait):   # on_wait(position) is awaited whenever the position changes
        ...start the session...

Hand-written: asyncio.Semaphore neither tells a waiter its place in line nor guarantees FIFO order
once waiters are cancelled (a client closing its tab), and both matter to a room of students.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from traitlets import Float, Int, default
from traitlets.config import LoggingConfigurable

from ..sessions.profiles import host_cpus

OnWait = Callable[[int], Awaitable[None]]


class LaunchQueue(LoggingConfigurable):
    concurrency = Int(
        help="Builds and session starts run at once; the rest wait in line with `waiting` events. "
        "Default: this host's cores (a session start is mostly CPU: Python importing JupyterLab)."
    ).tag(config=True)

    position_interval = Float(
        1.0, help="Seconds between checks of a waiting launch's place in line (an event only when it changed)."
    ).tag(config=True)

    @default("concurrency")
    def _default_concurrency(self) -> int:
        return max(host_cpus(), 1)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._active = 0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        await self._acquire(on_wait)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_wait: OnWait | None) -> None:
        if self._active < self.concurrency and not self._waiters:
            self._active += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        told = None
        try:
            while not turn.done():
                position = self._waiters.index(turn) + 1
                if on_wait is not None and position != told:
                    told = position
                    await on_wait(position)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(turn), self.position_interval)
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot just as we left: pass it on
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            raise

    def _release(self) -> None:
        self._active -= 1
        while self._waiters and self._active < self.concurrency:
            turn = self._waiters.popleft()
            if not turn.done():
                self._active += 1
                turn.set_result(None)


__all__ = ["LaunchQueue"]
