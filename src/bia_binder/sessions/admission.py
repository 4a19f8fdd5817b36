"""Launch admission: bounds concurrent sessions in total and per repository (BinderHub's ``per_repo_quota``).

``admission.admit(session, repo_key, disk_bytes)`` raises :class:`AdmissionRefused` (a ``LaunchError``
with status 429, or 503 for a full disk, and a retry hint) over a limit; ``release(session)`` frees the slot.

Unless configured, the total limit comes from the host: what its free memory and disk can hold at
:attr:`Admission.memory_per_session` and :attr:`Admission.disk_per_session` each (see
:meth:`Admission.host_capacity`), so a default install cannot run the host out of memory, disk,
loop devices or uids however many people click.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from jupyterhub.traitlets import ByteSpecification
from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable

from ..events import LaunchError

#: Admission entries for launches admitted but not yet started (see Admission.sync)
RESERVATION_PREFIX = "launch:"


class AdmissionRefused(LaunchError):
    """Over a concurrency limit; ``retry_after`` (seconds) is meant for a ``Retry-After`` header."""

    def __init__(self, message: str, retry_after: int, status_code: int = 429):
        super().__init__(message, status_code)
        self.retry_after = retry_after


def memory_available() -> int:
    """Bytes the kernel says can be given to new processes without swapping (``MemAvailable``)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # not Linux: psutil knows the platform's equivalent

    return psutil.virtual_memory().available


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


class Admission(LoggingConfigurable):
    """Bounds concurrent sessions in total and per repository, before anything is started.

    Single-threaded by design (the Tornado service's event loop): ``admit`` checks and records
    in one call, so two launches cannot both take the last slot.
    """

    max_sessions = Int(
        None,
        allow_none=True,
        help="Most sessions running at once on this host. Default (None): derived from the host's free memory "
        "and disk when the service starts (see memory_per_session, disk_per_session); 0: no limit.",
    ).tag(config=True)

    memory_per_session = ByteSpecification(
        512 * 1024**2,
        help="Memory counted per session when max_sessions is derived from the host (an idle JupyterLab with a "
        "kernel takes about 150 MB; a working one a few hundred).",
    ).tag(config=True)

    disk_per_session = ByteSpecification(
        1024**3,
        help="Disk counted per session when max_sessions is derived from the host (session disks are sparse: "
        "they take what is written, up to their disk_limit).",
    ).tag(config=True)

    disk_reserve = ByteSpecification(
        1024**3, help="Disk kept free beside sessions' disks: a session is refused when its disk_limit would eat into it."
    ).tag(config=True)

    sessions_dir = Unicode("", help="Where session disks live (their free space is checked at admission; set by the service).")

    per_repo_quota = Int(
        0, help="Most sessions of one repository at once (BinderHub's per_repo_quota); 0 = no limit."
    ).tag(config=True)

    retry_after = Int(
        300, help="Seconds a refused user is told to wait before retrying (about how soon idle sessions are culled)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._sessions: dict[str, str] = {}
        self._derived_limit: int | None = None

    @property
    def limit(self) -> int:
        """The total limit in force (0: none): the configured one, else what the host held when first asked."""
        if self.max_sessions is not None:
            return self.max_sessions
        if self._derived_limit is None:
            capacity, why = self.host_capacity()
            # sessions already running (a restarted service) hold memory that is no longer free
            self._derived_limit = capacity + len(self._sessions)
            self.log.info(
                "Admission: at most %d sessions at once (%s); set c.Admission.max_sessions to change it",
                self._derived_limit, why,
            )  # fmt: skip
        return self._derived_limit

    def host_capacity(self) -> tuple[int, str]:
        """How many more sessions this host's free memory and disk hold (at least 1), and why."""
        memory = memory_available()
        by_memory = memory // self.memory_per_session
        why = f"{gib(memory)} memory available / {gib(self.memory_per_session)} per session"
        capacity = by_memory
        if self.sessions_dir:
            free = self._free_disk() - self.disk_reserve
            by_disk = max(free, 0) // self.disk_per_session
            why += f", {gib(max(free, 0))} disk free / {gib(self.disk_per_session)} per session"
            capacity = min(capacity, by_disk)
        return max(int(capacity), 1), why

    def _free_disk(self) -> int:
        path = Path(self.sessions_dir)
        while not path.exists() and path != path.parent:  # not made yet: the disk it will be on
            path = path.parent
        return shutil.disk_usage(path).free

    def check(self, repo_key: str, disk_bytes: int = 0) -> None:
        """Raise :class:`AdmissionRefused` if one more session of ``repo_key`` would exceed a limit, or if the
        disk could not hold the ``disk_bytes`` it may write."""
        wait = f"try again in about {math.ceil(self.retry_after / 60)} minute(s)"
        if self.limit and len(self._sessions) >= self.limit:
            raise AdmissionRefused(
                f"This server is full ({len(self._sessions)} of {self.limit} sessions are running); {wait}.",
                self.retry_after,
            )
        if disk_bytes and self.sessions_dir:
            free = self._free_disk()
            if free - self.disk_reserve < disk_bytes:
                raise AdmissionRefused(
                    f"This server's disk is too full for another session (it may write {gib(disk_bytes)}, "
                    f"{gib(free)} are free and {gib(self.disk_reserve)} stay in reserve); {wait}.",
                    self.retry_after,
                    status_code=503,
                )
        running = Counter(self._sessions.values())[repo_key]
        if self.per_repo_quota and running >= self.per_repo_quota:
            raise AdmissionRefused(
                f"Too many sessions of this repository ({running} of at most {self.per_repo_quota}) are running; {wait}.",
                self.retry_after,
            )

    def admit(self, session: str, repo_key: str, disk_bytes: int = 0) -> None:
        """Check, then count ``session`` as running; idempotent for a session already admitted."""
        if session in self._sessions:
            return
        self.check(repo_key, disk_bytes)
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
