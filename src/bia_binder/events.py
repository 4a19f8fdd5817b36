"""BinderHub's build/launch event vocabulary, shared by the service, the builder and the CLI.

Every event is a JSON object with ``phase`` and ``message``; the service sends them as
Server-Sent Events, ``bia-binder build --json`` prints one per line.
"""

from __future__ import annotations

from typing import Any, Callable

WAITING = "waiting"
FETCHING = "fetching"
BUILDING = "building"
BUILT = "built"
LAUNCHING = "launching"
READY = "ready"
FAILED = "failed"

PHASES = (WAITING, FETCHING, BUILDING, BUILT, LAUNCHING, READY, FAILED)

#: A callback that receives one event (a dict). Builders and providers report through it.
EventSink = Callable[[dict[str, Any]], None]


def event(phase: str, message: str, **fields: Any) -> dict[str, Any]:
    """One event; ``message`` always present, log lines end with a newline like BinderHub's."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return {"phase": phase, "message": message, **fields}


class LaunchError(Exception):
    """A launch failed for a reason the user can act on.

    ``message`` is one line that says what was wrong and what to do; ``status_code`` is
    the HTTP status BinderHub would use (400 bad spec, 404 missing, 413 too large,
    429 rate limited / over quota, 502 upstream unreachable, 500 build failed).
    """

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def to_event(self) -> dict[str, Any]:
        return event(FAILED, self.message, status_code=self.status_code)
