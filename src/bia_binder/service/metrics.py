"""Prometheus metrics of the binder service (BinderHub's names where it has them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.5, 1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600, float("inf"))


class Metrics:
    """One registry per service instance, so tests can run several services in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.launches = Counter(
            "binderhub_launch", "Launches by outcome", ["status"], registry=self.registry
        )
        self.launch_time = Histogram(
            "binderhub_launch_time_seconds", "Request to ready (or failure)", ["status"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.builds = Counter("binderhub_build", "Builds by outcome (cached = no build needed)", ["status"], registry=self.registry)
        self.build_time = Histogram(
            "binderhub_build_time_seconds", "Fetch + build duration", ["status"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.failures = Counter("binderhub_failures", "Failed launches by HTTP status", ["status_code"], registry=self.registry)
        self.inprogress = Gauge("binderhub_inprogress_launches", "Launch streams open now", registry=self.registry)

    def launch_done(self, status: str, seconds: float, status_code: int | None = None) -> None:
        self.launches.labels(status=status).inc()
        self.launch_time.labels(status=status).observe(seconds)
        if status_code is not None:
            self.failures.labels(status_code=str(status_code)).inc()

    def build_done(self, status: str, seconds: float) -> None:
        self.builds.labels(status=status).inc()
        self.build_time.labels(status=status).observe(seconds)

    def build_cached(self) -> None:
        self.builds.labels(status="cached").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
