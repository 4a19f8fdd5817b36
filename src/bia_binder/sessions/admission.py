"""Launch admission: bounds concurrent sessions in total and per repository (BinderHub's ``per_repo_quota``).

``admission.admit(session, repo_key)`` raises :class:`AdmissionRefused` (a ``LaunchError`` with
status 429 and a retry hint) over a limit; ``release(session)`` frees the slot.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from traitlets import Int
from traitlets.config import LoggingConfigurable

from ..events import LaunchError

#: Admission entries for launches admitted but not yet started (see Admission.sync)
RESERVATION_PREFIX = "launch:"


class AdmissionRefused(LaunchError):
    """Over a concurrency limit; ``retry_after`` (seconds) is meant for a ``Retry-After`` header."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, 429)
        self.retry_after = retry_after


class Admission(LoggingConfigurable):
    """Bounds concurrent sessions in total and per repository, before anything is started.

    Single-threaded by design (the Tornado service's event loop): ``admit`` checks and records
    in one call, so two launches cannot both take the last slot.
    """

    max_sessions = Int(0, help="Most sessions running at once on this host; 0 = no limit.").tag(config=True)

    per_repo_quota = Int(
        0, help="Most sessions of one repository at once (BinderHub's per_repo_quota); 0 = no limit."
    ).tag(config=True)

    retry_after = Int(
        300, help="Seconds a refused user is told to wait before retrying (about how soon idle sessions are culled)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._sessions: dict[str, str] = {}

    def check(self, repo_key: str) -> None:
        """Raise :class:`AdmissionRefused` if one more session of ``repo_key`` would exceed a limit."""
        wait = f"try again in about {math.ceil(self.retry_after / 60)} minute(s)"
        if self.max_sessions and len(self._sessions) >= self.max_sessions:
            raise AdmissionRefused(
                f"This server is full ({len(self._sessions)} of {self.max_sessions} sessions are running); {wait}.",
                self.retry_after,
            )
        running = Counter(self._sessions.values())[repo_key]
        if self.per_repo_quota and running >= self.per_repo_quota:
            raise AdmissionRefused(
                f"Too many sessions of this repository ({running} of at most {self.per_repo_quota}) are running; {wait}.",
                self.retry_after,
            )

    def admit(self, session: str, repo_key: str) -> None:
        """Check, then count ``session`` as running; idempotent for a session already admitted."""
        if session in self._sessions:
            return
        self.check(repo_key)
        self._sessions[session] = repo_key

    def sync(self, running: dict[str, str]) -> None:
        """Count exactly ``running`` (session name → repo key) as the sessions that exist.

        Sessions end by culling, stops and restarts that only the hub sees, so the service asks the
        hub before each launch. Reservations (names starting with ``launch:``) for launches under
        way, which the hub does not list yet, stay counted.
        """
        reservations = {name: key for name, key in self._sessions.items() if name.startswith(RESERVATION_PREFIX)}
        self._sessions = {**running, **reservations}

    def release(self, session: str) -> None:
        """Free the slot of a stopped or culled session (unknown names are ignored)."""
        self._sessions.pop(session, None)

    def running(self, repo_key: str | None = None) -> int:
        """Sessions counted now, of ``repo_key`` or in total."""
        if repo_key is None:
            return len(self._sessions)
        return Counter(self._sessions.values())[repo_key]
