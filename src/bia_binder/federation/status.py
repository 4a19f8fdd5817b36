"""What the gateway did: where launches went in the last hour (the status page) and Prometheus metrics."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from ..service.metrics import DURATION_BUCKETS
from .members import Member
from .proxy import LaunchResult

HISTORY_SECONDS = 3600


@dataclass
class LaunchRecord:
    when: float
    spec: str
    member: str  # where it ended ("" when no member was tried)
    outcome: str
    reason: str  # why the first member was chosen (held / hashed)
    moved_from: tuple[str, ...]
    built: bool  # the member built the environment (no cache hit anywhere)
    seconds: float


class LaunchHistory:
    """The launches of the last hour, newest last."""

    def __init__(self, seconds: float = HISTORY_SECONDS):
        self.seconds = seconds
        self._records: deque[LaunchRecord] = deque()

    def add(self, record: LaunchRecord) -> None:
        self._records.append(record)
        self._expire()

    def _expire(self) -> None:
        cutoff = time.time() - self.seconds
        while self._records and self._records[0].when < cutoff:
            self._records.popleft()

    def recent(self) -> list[LaunchRecord]:
        self._expire()
        return list(self._records)

    def by_member(self) -> dict[str, dict[str, int]]:
        """Per member: launches that ended there, by outcome, plus cache hits and launches moved away."""
        table: dict[str, Counter] = {}
        for record in self.recent():
            if record.member:
                row = table.setdefault(record.member, Counter())
                row[record.outcome] += 1
                row["cache_hits"] += record.outcome == "ready" and not record.built
            for name in record.moved_from:
                table.setdefault(name, Counter())["moved_away"] += 1
        return {name: dict(row) for name, row in table.items()}


class FederationMetrics:
    """One registry per gateway (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.launches = PromCounter(
            "federation_launches", "Launches by the member they ended on and outcome", ["member", "outcome"], registry=self.registry
        )
        self.placements = PromCounter(
            "federation_placements", "First choices by reason (held: a member had the environment; hashed)", ["reason"], registry=self.registry
        )
        self.cache_hits = PromCounter("federation_cache_hits", "Launches that ended ready without a build", registry=self.registry)
        self.failovers = PromCounter(
            "federation_failovers", "Launches moved away from a member before ready", ["member"], registry=self.registry
        )
        self.launch_time = Histogram(
            "federation_launch_time_seconds", "Request to ready (or failure), failovers included", ["outcome"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.member_up = Gauge("federation_member_up", "1 when the member is healthy", ["member"], registry=self.registry)
        self.member_weight = Gauge("federation_member_weight", "Configured weight (0 = draining)", ["member"], registry=self.registry)
        self.member_busy = Gauge(
            "federation_member_busy", "Sessions + builds + launches under way on the member", ["member"], registry=self.registry
        )
        self.member_free_slots = Gauge(
            "federation_member_free_slots", "Free session slots the member reports (-1: no limit)", ["member"], registry=self.registry
        )

    def launch_done(self, result: LaunchResult, reason: str) -> None:
        member = result.member.name if result.member else ""
        self.launches.labels(member=member, outcome=result.outcome).inc()
        self.placements.labels(reason=reason).inc()
        self.launch_time.labels(outcome=result.outcome).observe(result.seconds)
        for attempt in result.attempts[:-1]:
            self.failovers.labels(member=attempt.member.name).inc()
        if result.outcome == "ready" and not result.attempts[-1].built_here:
            self.cache_hits.inc()

    def render(self, members: list[Member]) -> bytes:
        for member in members:
            self.member_up.labels(member=member.name).set(1 if member.healthy else 0)
            self.member_weight.labels(member=member.name).set(member.weight)
            self.member_busy.labels(member=member.name).set(member.busy)
            free = member.load.get("free_slots")
            self.member_free_slots.labels(member=member.name).set(-1 if free is None else free)
        return generate_latest(self.registry)


def record_of(spec: str, result: LaunchResult, reason: str) -> LaunchRecord:
    last = result.attempts[-1] if result.attempts else None
    return LaunchRecord(
        when=time.time(),
        spec=spec,
        member=last.member.name if last else "",
        outcome=result.outcome,
        reason=reason,
        moved_from=tuple(a.member.name for a in result.attempts[:-1]),
        built=bool(last and last.built_here),
        seconds=result.seconds,
    )


__all__ = ["FederationMetrics", "LaunchHistory", "LaunchRecord", "record_of"]
