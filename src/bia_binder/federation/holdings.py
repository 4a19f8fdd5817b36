"""Which members already hold the environment of a resolved ref.

Two sources, both needed:
- the members themselves (``GET /api/federation/holds`` with each member's token), asked in parallel
  with a short timeout: what they have built, in any way, and what they are building now;
- the gateway's own memory of where it sent each ref recently: two launches of a new ref a few
  milliseconds apart must meet on one member, before that member has even registered the build.

A member that does not answer in time simply does not count as a holder: the launch then goes by
hash and load, which costs at worst one build.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from traitlets import Float
from traitlets.config import LoggingConfigurable

from .members import Member


class Holdings(LoggingConfigurable):
    timeout = Float(2.0, config=True, help="Seconds a member has to say whether it holds an environment.")
    memory_seconds = Float(
        900.0, config=True,
        help="How long the gateway remembers where it sent a ref (covers a build under way, which the member "
        "itself reports too).",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._placed: dict[tuple[str, str], dict[str, float]] = {}

    def remember(self, provider: str, ref: str, member: Member) -> None:
        if not ref:
            return  # a study: nothing resolved to remember
        self._placed.setdefault((provider, ref), {})[member.name] = time.monotonic()

    def forget(self, provider: str, ref: str, member: Member) -> None:
        """A launch failed there (a dead member): do not send the ref there because of this launch."""
        self._placed.get((provider, ref), {}).pop(member.name, None)

    def remembered(self, provider: str, ref: str) -> set[str]:
        now = time.monotonic()
        placed = self._placed.get((provider, ref), {})
        for name, when in list(placed.items()):
            if now - when > self.memory_seconds:
                del placed[name]
        if not placed:
            self._placed.pop((provider, ref), None)
        return set(placed)

    async def holders(self, members: list[Member], provider: str, ref: str, client: httpx.AsyncClient) -> set[str]:
        """Names of the members (of those accepting launches) that hold or are building ``provider``/``ref``."""
        asked = [m for m in members if m.accepts_launches and m.token]
        answers = await asyncio.gather(*(self._holds(m, provider, ref, client) for m in asked))
        told = {m.name for m, held in zip(asked, answers) if held}
        return told | self.remembered(provider, ref)

    async def _holds(self, member: Member, provider: str, ref: str, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.get(
                f"{member.url}api/federation/holds",
                params={"provider": provider, "ref": ref},
                headers={"Authorization": f"token {member.token}"},
                timeout=self.timeout,
            )
            if response.status_code != 200:
                self.log.warning("Member %s does not say what it holds (HTTP %d): check its token", member.name, response.status_code)
                return False
            answer = response.json()
            return bool(answer.get("held") or answer.get("building"))
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            self.log.debug("Member %s did not say what it holds: %s", member.name, type(e).__name__)
            return False


__all__ = ["Holdings"]
