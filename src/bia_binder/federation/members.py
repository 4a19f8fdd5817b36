"""The members of a federation and their health.

Each member is a whole bia-binder deployment (``bia-binder up`` or the Helm chart) listed in the
gateway's config (``c.FederationGateway.members``). :class:`HealthMonitor` polls every member's
``/health`` (which reports its load: sessions, free slots, builds under way) and keeps a state per
member: a member goes *down* at once (one failed check, or a launch that found it dead) and comes
back *up* only after several good checks in a row, so that a flapping member does not get launches
between two failures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

UNKNOWN, UP, DOWN = "unknown", "up", "down"


class MemberConfigError(ValueError):
    """A member entry in the config that the gateway cannot use (says which and why)."""


@dataclass(eq=False)
class Member:
    name: str
    #: where the gateway reaches the member (ends with /)
    url: str
    weight: float = 1.0
    #: the member's c.FederationMember.token (asks what it holds)
    token: str = ""
    #: where users are sent in redirect mode (default: url)
    public_url: str = ""

    state: str = UNKNOWN
    successes: int = 0  # good checks in a row
    last_error: str = ""
    last_checked: float = 0.0
    #: the member's own report (``load`` of its /health)
    load: dict[str, Any] = field(default_factory=dict)
    #: launches the gateway has under way on this member now (more current than the last poll)
    inflight: int = 0

    @property
    def healthy(self) -> bool:
        return self.state == UP

    @property
    def accepts_launches(self) -> bool:
        """Healthy and not draining (weight 0: running sessions go on, new launches go elsewhere)."""
        return self.healthy and self.weight > 0

    @property
    def busy(self) -> int:
        """Sessions, builds and launches under way: what ranks members by load."""
        return int(self.load.get("sessions") or 0) + int(self.load.get("builds") or 0) + self.inflight

    @property
    def load_score(self) -> float:
        """Busy per unit of weight: a member of weight 2 is expected to carry twice as much."""
        return self.busy / self.weight if self.weight > 0 else float("inf")

    @property
    def full(self) -> bool:
        """No free session slot left (members without a limit are never full)."""
        free = self.load.get("free_slots")
        return free is not None and free - self.inflight <= 0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "public_url": self.public_url,
            "weight": self.weight,
            "state": self.state,
            "draining": self.weight == 0,
            "last_error": self.last_error,
            "last_checked": self.last_checked,
            "load": self.load,
            "inflight": self.inflight,
        }


def members_from_config(entries: list[dict[str, Any]]) -> list[Member]:
    """``c.FederationGateway.members`` as :class:`Member` objects; MemberConfigError names a bad entry."""
    members, names = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise MemberConfigError(f"members[{index}] needs a 'url' (e.g. {{'url': 'https://binder.example.org/'}})")
        unknown = set(entry) - {"name", "url", "weight", "token", "public_url"}
        if unknown:
            raise MemberConfigError(f"members[{index}] has unknown keys {sorted(unknown)}: use name, url, weight, token, public_url")
        url = _normalised_url(entry["url"], f"members[{index}].url")
        public_url = _normalised_url(entry.get("public_url") or url, f"members[{index}].public_url")
        weight = entry.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise MemberConfigError(f"members[{index}].weight must be a number >= 0 (0 drains the member), not {weight!r}")
        name = str(entry.get("name") or urlsplit(url).netloc)
        if name in names:
            raise MemberConfigError(f"members[{index}]: two members are named {name!r}; give each a unique 'name'")
        names.add(name)
        members.append(Member(name=name, url=url, weight=float(weight), token=str(entry.get("token") or ""), public_url=public_url))
    return members


def _normalised_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise MemberConfigError(f"{what} must be an http(s) URL without query, e.g. https://binder.example.org/, not {url!r}")
    return url if url.endswith("/") else url + "/"


class HealthMonitor(LoggingConfigurable):
    """Polls members' ``/health``; down fast, up slowly."""

    interval = Float(5.0, config=True, help="Seconds between two health checks of a member.")
    timeout = Float(3.0, config=True, help="Seconds a member has to answer /health; slower counts as a failed check.")
    rise = Int(
        3, config=True,
        help="Good checks in a row before a member that was down gets launches again (a new member's first "
        "good check brings it up: the gateway should be usable at once).",
    )

    async def check(self, member: Member, client: httpx.AsyncClient) -> None:
        """One health check of ``member``; updates its state and load."""
        try:
            response = await client.get(f"{member.url}health", timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as e:
            self.failed(member, f"/health did not answer ({type(e).__name__})")
            return
        if isinstance(body, dict) and isinstance(body.get("load"), dict):
            member.load = body["load"]
        if response.status_code != 200 or not (isinstance(body, dict) and body.get("ok")):
            failing = [c.get("service", "?") for c in body.get("checks", []) if isinstance(c, dict) and not c.get("ok")] if isinstance(body, dict) else []
            self.failed(member, f"/health answered {response.status_code}" + (f" ({', '.join(failing)} failing)" if failing else ""))
            return
        self.succeeded(member)

    def succeeded(self, member: Member) -> None:
        member.last_checked = time.time()
        member.successes += 1
        if member.state == UNKNOWN or (member.state == DOWN and member.successes >= self.rise):
            if member.state == DOWN:
                self.log.info("Member %s is healthy again (%d good checks); it gets launches again", member.name, member.successes)
            member.state, member.last_error = UP, ""

    def failed(self, member: Member, reason: str) -> None:
        """A failed check or a launch that found the member dead: down at once."""
        member.last_checked = time.time()
        member.successes = 0
        member.last_error = reason
        if member.state != DOWN:
            self.log.warning("Member %s is down: %s", member.name, reason)
        member.state = DOWN

    async def check_all(self, members: list[Member], client: httpx.AsyncClient) -> None:
        await asyncio.gather(*(self.check(member, client) for member in members))

    async def poll_forever(self, members_of, client: httpx.AsyncClient) -> None:
        """``members_of()`` gives the current list (a config reload may change it)."""
        while True:
            try:
                await self.check_all(members_of(), client)
            except Exception:  # noqa: BLE001 - a background task: log, check again next time
                self.log.exception("Health checks failed")
            await asyncio.sleep(self.interval)


__all__ = ["DOWN", "UNKNOWN", "UP", "HealthMonitor", "Member", "MemberConfigError", "members_from_config"]
