"""Workshop mode: a pool of pre-started, idle servers of one environment, handed over at launch::

    c.Pool.warm = {"gh/org/course/main": 30}   # keep 30 idle servers of that repository started
    c.Pool.cull_at = "17:30"                      # then stop the idle ones and start no more

A launch of a pooled spec that resolves to the same commit and environment gets one of them: no spawn,
ready in well under a second (the resolve and a check that the server still runs). The pool refills in
the background, through the launch queue and within admission limits (pooled servers are sessions
like any other: they count against ``Admission.max_sessions``). Pooled servers are ordinary temporary
users started through the hub, so the culler, the reconciler and a stop of the hub treat them as any
session; the names of those not handed over are kept in ``<data>/pool.json``, and a restarted service
removes them (their tokens lived only in the previous process).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from traitlets import Dict, Float, Int, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..events import LaunchError
from ..providers import get_provider


@dataclass
class WarmServer:
    username: str
    path: str
    token: str
    ref: str
    image: str
    started: float


def parse_cull_at(value: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """``"HH:MM"`` (today, local time) or an ISO 8601 date and time → when the pool ends; ``""`` → never."""
    if not value:
        return None
    now = now or dt.datetime.now().astimezone()
    try:
        clock = dt.time.fromisoformat(value)
        return now.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TraitError(f"Pool.cull_at: {value!r} is neither HH:MM nor an ISO 8601 date and time") from None
    return when if when.tzinfo else when.astimezone()


class Pool(LoggingConfigurable):
    warm = Dict(
        value_trait=Int(),
        help='Idle servers to keep started, by launch spec (as in a launch link after /v2/), e.g. '
        '{"gh/org/course/main": 30}.',
    ).tag(config=True)

    cull_at = Unicode(
        "",
        help="When the pool ends: 'HH:MM' (today, local time) or an ISO 8601 date and time. Then its idle "
        "servers are stopped and no more are started. Empty: the pool lasts as long as the service.",
    ).tag(config=True)

    refill_interval = Float(5.0, help="Seconds between checks that the pool is full (also woken by each hand-over).").tag(
        config=True
    )

    @validate("cull_at")
    def _valid_cull_at(self, proposal):
        parse_cull_at(proposal["value"])
        return proposal["value"]

    @validate("warm")
    def _valid_warm(self, proposal):
        for spec, count in proposal["value"].items():
            if "/" not in spec.strip("/") or count < 0:
                raise TraitError(f"Pool.warm: {spec!r}: {count!r}: want '<provider>/<spec>': a count of 0 or more")
        return proposal["value"]

    def __init__(self, service, **kwargs: Any):
        super().__init__(**kwargs)
        self.service = service  # BinderService: launcher, pipeline, admission, queue
        self._idle: dict[str, list[WarmServer]] = {spec: [] for spec in self.warm}
        self._starting: dict[str, int] = {spec: 0 for spec in self.warm}
        self._wake = asyncio.Event()
        self._ends = parse_cull_at(self.cull_at)
        self.ended = False

    @property
    def state_file(self) -> Path:
        return Path(self.service.data_dir) / "pool.json"

    def idle(self, spec: str | None = None) -> int:
        return sum(len(servers) for name, servers in self._idle.items() if spec is None or name == spec)

    # --- hand-over -----------------------------------------------------------------------------

    async def take(self, resolved, image: str) -> dict[str, str] | None:
        """An idle server of ``image`` at ``resolved.ref`` (removed from the pool), or None."""
        for servers in self._idle.values():
            while True:
                server = next((s for s in servers if s.image == image and s.ref == resolved.ref), None)
                if server is None:
                    break
                servers.remove(server)
                self._save()
                self._wake.set()
                if await self._still_running(server):
                    self.service.log.info("Pool: handed over %s", server.username)
                    return {"username": server.username, "path": server.path, "token": server.token}
        return None

    async def _still_running(self, server: WarmServer) -> bool:
        try:
            return await self.service.launcher.server_ready(server.username)
        except (LaunchError, httpx.HTTPError):
            return False

    # --- filling -------------------------------------------------------------------------------

    async def run(self) -> None:
        """The background task: remove what a previous service left, then keep the pool full until it ends."""
        if not self.warm and not self.state_file.exists():
            return
        await self._remove_leftovers()
        while self.warm:
            if self._ends is not None and dt.datetime.now().astimezone() >= self._ends:
                await self.drain()
                return
            for spec, wanted in self.warm.items():
                try:
                    await self._fill(spec, wanted)
                except LaunchError as e:
                    self.service.log.warning("Pool: cannot start servers of %s now: %s", spec, e.message)
                except Exception:  # noqa: BLE001 - a background task: log, try again at the next check
                    self.service.log.exception("Pool: filling %s failed", spec)
            self._wake.clear()
            timeout = self.refill_interval
            if self._ends is not None:
                timeout = max(0.0, min(timeout, (self._ends - dt.datetime.now().astimezone()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _fill(self, spec: str, wanted: int) -> None:
        provider_name, _, rest = spec.strip("/").partition("/")
        resolved = await get_provider(provider_name, rest, parent=self.service).resolve()
        pipeline = self.service.pipeline

        async def quiet(_event: dict) -> None:
            pass

        built = await pipeline.environment(resolved, quiet)
        image = built.key if hasattr(built, "key") else str(built)
        servers = self._idle[spec]
        stale = [s for s in servers if s.ref != resolved.ref or s.image != image]
        for server in stale:  # the branch moved on: those servers run an old version
            servers.remove(server)
            await self.service.launcher.remove_user(server.username)
        while len(servers) + self._starting[spec] < wanted and not self.ended:
            reservation = await self.service.admit(resolved)  # AdmissionRefused: full, try again later
            self._starting[spec] += 1
            try:
                async with self.service.queue.slot():
                    server = await self._start(spec, provider_name, rest, resolved, built, image)
            finally:
                self._starting[spec] -= 1
                self.service.admission.release(reservation)
            servers.append(server)
            self._save()

    async def _start(self, spec: str, provider: str, rest: str, resolved, built, image: str) -> WarmServer:
        from .pipeline import LaunchRequest, session_options

        origin = self.service.public_origin
        request = LaunchRequest(provider, rest, f"{origin}{self.service.base_url}", origin, lambda: True)

        async def progress(_message: str) -> None:
            pass

        options = session_options(request, resolved, built)
        session = await self.service.launcher.launch(resolved.slug, options, progress)
        self.service.log.info("Pool: %s is ready for a launch of %s", session["username"], spec)
        return WarmServer(session["username"], session["path"], session["token"], resolved.ref, image, time.time())

    # --- ending --------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop every idle server and start no more (the pool's time is up, or the service stops)."""
        self.ended = True
        servers = [server for spec in self._idle for server in self._idle[spec]]
        for spec in self._idle:
            self._idle[spec] = []
        if servers:
            self.service.log.info("Pool: stopping %d idle server(s)", len(servers))
        await asyncio.gather(*(self.service.launcher.remove_user(s.username) for s in servers))
        self._save()

    def _save(self) -> None:
        names = [server.username for servers in self._idle.values() for server in servers]
        try:
            if names:
                self.state_file.write_text(json.dumps(names))
            else:
                self.state_file.unlink(missing_ok=True)
        except OSError as e:
            self.service.log.warning("Pool: cannot record idle servers in %s: %s", self.state_file, e)

    async def _remove_leftovers(self) -> None:
        try:
            names = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        self.service.log.info("Pool: removing %d idle server(s) a previous run left", len(names))
        await asyncio.gather(*(self.service.launcher.remove_user(name) for name in names))
        self.state_file.unlink(missing_ok=True)


__all__ = ["Pool", "parse_cull_at"]
