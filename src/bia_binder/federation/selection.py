"""Which member runs a launch, and which ones take over if it fails.

1. Only members that are healthy and not draining (weight > 0) are candidates.
2. A member that already holds (or is building) the environment of the resolved ref goes first:
   the federation never builds what it already has. Among several, the least loaded.
3. Otherwise the repository's hash picks: members are ranked by weighted rendezvous hashing of the
   repository (each repository has its own stable order of members; a member of weight 2 comes first
   twice as often), and the less loaded of the ``choices`` best-ranked goes first. Hashing keeps a
   repository's builds, package caches and sessions together; choosing between two keeps one popular
   repository from piling onto one member ("power of two choices").
4. The rest follow in hash order; members without a free slot go last. (A launch that fails over is
   placed again, without the members it tried: loads and holdings have changed meanwhile.)

No member is special: the order depends only on the repository, the weights and the loads.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from traitlets import Int
from traitlets.config import LoggingConfigurable

from .members import Member

#: why the first member was chosen
HELD, HASHED = "held", "hashed"


@dataclass
class Placement:
    order: list[Member]  # first choice, then failover candidates
    reason: str  # HELD or HASHED

    @property
    def first(self) -> Member | None:
        return self.order[0] if self.order else None


def rendezvous_score(member: Member, repo_key: str) -> float:
    """Weighted rendezvous (highest random weight) hashing: ``-w / ln(u)`` with ``u`` uniform in (0, 1)
    from a hash of member and repository. Adding or removing a member moves only its share of
    repositories; weights scale a member's share."""
    digest = hashlib.sha256(f"{member.name}\0{repo_key}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 2)
    return -member.weight / math.log(u)


class Selector(LoggingConfigurable):
    choices = Int(
        2, config=True,
        help="How many of a repository's best-ranked members compete on load for a launch nothing holds yet "
        "(1: pure hashing, which piles a popular repository onto one member).",
    )

    def place(self, members: list[Member], repo_key: str, holders: set[str] = frozenset()) -> Placement:
        """The order in which members should try a launch of ``repo_key``; ``holders``: names of members that
        hold or are building its environment."""
        candidates = [m for m in members if m.accepts_launches]
        ranked = sorted(candidates, key=lambda m: (m.full, -rendezvous_score(m, repo_key)))
        with_room = [m for m in ranked if not m.full]
        held = [m for m in with_room if m.name in holders]
        if held:
            first, reason = min(held, key=lambda m: m.load_score), HELD
        elif with_room:
            first, reason = min(with_room[: max(self.choices, 1)], key=lambda m: m.load_score), HASHED
        elif ranked:
            first, reason = ranked[0], HASHED  # every member is full: the first one says so (429)
        else:
            return Placement([], HASHED)
        return Placement([first, *(m for m in ranked if m is not first)], reason)


__all__ = ["HASHED", "HELD", "Placement", "Selector", "rendezvous_score"]
