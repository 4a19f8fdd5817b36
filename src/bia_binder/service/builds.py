"""Concurrent launches of the same environment share one build.

The first request for a cache key starts the build as an independent task (a client closing
its tab does not cancel it); later requests subscribe, get a ``waiting`` event, then the log
so far and the live log, and finally the same result.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..builder.base import Environment
from ..events import BUILDING, LaunchError, event

BuildFn = Callable[[Callable[[dict[str, Any]], None]], Awaitable[Environment]]


class SharedBuild:
    def __init__(self, key: str, build: BuildFn):
        self.key = key
        self.events: list[dict[str, Any]] = []
        self._listeners: set[asyncio.Queue] = set()
        self.task = asyncio.ensure_future(build(self._publish))

    def _publish(self, item: dict[str, Any]) -> None:
        self.events.append(item)
        for queue in self._listeners:
            queue.put_nowait(item)

    async def follow(self, emit: Callable[[dict[str, Any]], Awaitable[None]]) -> Environment:
        """Replay the events so far, then stream new ones until the build ends; return its result."""
        queue: asyncio.Queue = asyncio.Queue()
        backlog = list(self.events)
        self._listeners.add(queue)
        try:
            for item in backlog:
                await emit(item)
            while not self.task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await emit(getter.result())
                else:
                    getter.cancel()
            return self.task.result()
        finally:
            self._listeners.discard(queue)


class BuildTracker:
    """The builds under way, by cache key."""

    def __init__(self) -> None:
        self._builds: dict[str, SharedBuild] = {}

    def __len__(self) -> int:
        return len(self._builds)

    def values(self) -> list[SharedBuild]:
        return list(self._builds.values())

    def __contains__(self, key: str) -> bool:
        return key in self._builds

    def join_or_start(self, key: str, build: BuildFn) -> tuple[SharedBuild, bool]:
        """The build for ``key`` and whether this call started it."""
        if key in self._builds:
            return self._builds[key], False
        shared = SharedBuild(key, build)
        self._builds[key] = shared
        shared.task.add_done_callback(lambda _: self._builds.pop(key, None))
        return shared, True


def as_line(text: str) -> str:
    """Log text as BinderHub sends it: one line ending in a newline."""
    return text if text.endswith("\n") else text + "\n"


def log_event(line: str) -> dict[str, Any]:
    return event(BUILDING, as_line(line))


def failure_from(exc: BaseException) -> LaunchError:
    """Any exception as a user-facing one-line failure (never a traceback)."""
    if isinstance(exc, LaunchError):
        return exc
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return LaunchError(f"Internal error while building: {first_line}. Please try again or report it.", 500)
