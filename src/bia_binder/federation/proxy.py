"""One launch through the gateway: the member's event stream passed on, with failover before ``ready``.

The gateway opens ``/build/<provider>/<persistent spec>`` on the first member of the placement and
passes every event on. If that member fails before ``ready`` — it cannot be reached, answers 5xx,
its stream stops (no byte, not even a keepalive, for ``stall_timeout``) or ends without a result,
or it ends the launch with a failure of its own (429 full, 5xx outside the build) — the launch
starts again on the next member, and the client's stream goes on with one log line saying so.

A failure of the repository itself is passed on as it is, never retried elsewhere (it would fail
there too, after a second build): a ``failed`` event with a 4xx status, or with a 5xx while the
member was fetching or building (an install that fails).

The member gets the *persistent* spec (the ref the gateway resolved), so that every member tried
builds the same commit even if a branch moves meanwhile; ``ready`` gets the request as the user
made it and the gateway's launch host back. Session URLs stay the member's: the session runs there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from ..events import BUILDING, FAILED, FETCHING, READY, WAITING, event
from ..providers.base import ResolvedRepo
from .members import HealthMonitor, Member

Emit = Callable[[dict[str, Any]], Awaitable[None]]

#: phases during which a 5xx failure is the repository's build failing (not the member)
BUILD_PHASES = (FETCHING, BUILDING)
#: failure statuses that say "this member cannot now", not "this repository cannot"
MEMBER_FAILURE_STATUSES = (429, 502, 503, 504)


@dataclass
class Attempt:
    member: Member
    outcome: str = ""  # ready | failed (passed on) | member-failed | abandoned
    reason: str = ""
    built_here: bool = False  # the member built (fetching/building events) rather than found it built
    ready: dict[str, Any] | None = None


@dataclass
class LaunchResult:
    outcome: str  # ready | failed | lost | abandoned
    attempts: list[Attempt] = field(default_factory=list)
    ready: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def member(self) -> Member | None:
        return self.attempts[-1].member if self.attempts else None

    @property
    def moved(self) -> int:
        return max(len(self.attempts) - 1, 0)


class LaunchProxy(LoggingConfigurable):
    connect_timeout = Float(5.0, config=True, help="Seconds to connect to a member before trying the next one.")
    stall_timeout = Float(
        60.0, config=True,
        help="Seconds without a byte from a member's event stream (members send a keepalive every "
        "c.BinderService.keepalive_interval, 20 s) before the launch moves to the next member.",
    )
    max_attempts = Int(3, config=True, help="Members one launch tries at most (the first one included).")

    def __init__(self, monitor: HealthMonitor, **kwargs):
        super().__init__(**kwargs)
        self.monitor = monitor

    async def launch(
        self,
        first: Member | None,
        next_member: Callable[[set[str]], Awaitable[Member | None]],
        resolved: ResolvedRepo,
        request: dict[str, str],
        emit: Emit,
        client: httpx.AsyncClient,
        stream_open: Callable[[], bool],
        on_attempt: Callable[[Member], None] = lambda member: None,
        query: str = "",
        forwarded_for: str = "",
    ) -> LaunchResult:
        """Run the launch on ``first``, then, while members fail, on ``next_member(names tried)`` (placed
        again at that moment: the members' load and holdings have changed since). ``request``:
        ``binder_request`` and ``binder_launch_host`` as the user sees them (put into ``ready``)."""
        started = time.perf_counter()
        result = LaunchResult("lost")
        phase = WAITING
        member = first
        while member is not None and len(result.attempts) < self.max_attempts:
            if result.attempts:
                previous = result.attempts[-1]
                self.log.warning("Launch of %s moves from %s to %s: %s", resolved.persistent_spec, previous.member.name, member.name, previous.reason)
                await emit(event(phase, f"The launch moved from {previous.member.name} to {member.name}: {previous.reason}\n"))
            attempt = Attempt(member)
            result.attempts.append(attempt)
            on_attempt(member)
            member.inflight += 1
            try:
                phase = await self._attempt(attempt, resolved, request, emit, client, stream_open, phase, query, forwarded_for)
            finally:
                member.inflight -= 1
            if attempt.outcome != "member-failed":
                result.outcome, result.ready = attempt.outcome, attempt.ready
                break
            member = await next_member({a.member.name for a in result.attempts})
        if result.outcome == "lost":
            reasons = "; ".join(f"{a.member.name}: {a.reason}" for a in result.attempts) or "no member is healthy"
            await emit(event(FAILED, f"No member of this federation could run the launch ({reasons}); try again in a minute.", status_code=503))
        result.seconds = time.perf_counter() - started
        return result

    async def _attempt(
        self, attempt: Attempt, resolved: ResolvedRepo, request: dict[str, str], emit: Emit,
        client: httpx.AsyncClient, stream_open: Callable[[], bool], phase: str, query: str, forwarded_for: str,
    ) -> str:  # fmt: skip
        """One member's try; sets ``attempt.outcome``; returns the last phase seen."""
        member = attempt.member
        url = f"{member.url}build/{quote(resolved.provider, safe='')}/{resolved.persistent_spec}" + (f"?{query}" if query else "")
        # the member limits launches per client (c.RateLimiter): it needs the client, not the gateway
        headers = {"Accept": "text/event-stream", **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
        timeout = httpx.Timeout(self.stall_timeout, connect=self.connect_timeout)
        seen = None  # the last phase from this member (``phase`` may still be the previous member's)
        try:
            async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.status_code >= 500:
                    return self._member_failed(attempt, f"it answered HTTP {response.status_code}", down=True, phase=phase)
                if response.status_code >= 400:
                    # refused before it started, for this client or spec (banned, rate-limited): the answer stands
                    await emit(await refusal_event(response))
                    attempt.outcome = "failed"
                    return FAILED
                async for line in response.aiter_lines():
                    if not stream_open():
                        attempt.outcome = "abandoned"
                        return phase
                    if not line.startswith("data:"):
                        continue  # keepalive comments and blank separators
                    try:
                        item = json.loads(line[5:])
                    except ValueError:
                        return self._member_failed(attempt, "it sent an event that is not JSON", down=False, phase=phase)
                    kind = item.get("phase") if isinstance(item, dict) else None
                    if kind == READY:
                        attempt.ready = {**item, **request, "federation_member": member.name}
                        await emit(attempt.ready)
                        attempt.outcome = "ready"
                        return kind
                    if kind == FAILED:
                        status = item.get("status_code")
                        status = status if isinstance(status, int) else 500
                        if status in MEMBER_FAILURE_STATUSES or (status >= 500 and seen not in BUILD_PHASES):
                            return self._member_failed(attempt, f"{status}: {str(item.get('message', '')).strip()}", down=status != 429, phase=phase)
                        await emit(item)
                        attempt.outcome = "failed"
                        return kind
                    if kind in BUILD_PHASES:
                        attempt.built_here = True
                    await emit(item)
                    phase = seen = kind or phase
        except httpx.TimeoutException as e:
            what = "could not be reached in time" if isinstance(e, httpx.ConnectTimeout) else f"its stream stopped for {self.stall_timeout:g} s"
            return self._member_failed(attempt, what, down=True, phase=phase)
        except httpx.TransportError as e:
            return self._member_failed(attempt, f"connection failed ({type(e).__name__})", down=True, phase=phase)
        return self._member_failed(attempt, "its stream ended before the launch was ready", down=True, phase=phase)

    def _member_failed(self, attempt: Attempt, reason: str, down: bool, phase: str) -> str:
        attempt.outcome, attempt.reason = "member-failed", reason
        if down:
            # no new launches there until its health checks say it is back (and stay so: HealthMonitor.rise)
            self.monitor.failed(attempt.member, f"a launch failed there: {reason}")
        return phase


async def refusal_event(response: httpx.Response) -> dict[str, Any]:
    """The ``failed`` event of a member's 4xx answer (its body is one), or one saying the status."""
    body = (await response.aread()).decode(errors="replace")
    for line in body.splitlines():
        if line.startswith("data:"):
            try:
                item = json.loads(line[5:])
            except ValueError:
                break
            if isinstance(item, dict) and item.get("phase") == FAILED:
                return item
    return event(FAILED, f"The launch was refused (HTTP {response.status_code}).", status_code=response.status_code)


__all__ = ["Attempt", "LaunchProxy", "LaunchResult"]
