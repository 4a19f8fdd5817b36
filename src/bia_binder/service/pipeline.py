"""One launch, from a ``<provider>/<spec>`` to a running session, as a stream of BinderHub events.

    provider.resolve(spec) → cache key → cached? "built" : shared build ("fetching"/"building")
    → admission → launcher (hub REST API, "launching") → "ready"

Failures at any step end the stream with one ``failed`` event carrying a one-line reason and
a status code; nothing here raises to the HTTP layer.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..events import BUILT, FETCHING, LAUNCHING, READY, WAITING, LaunchError, event
from ..providers import get_provider
from ..providers.base import ResolvedRepo
from .builds import BuildTracker, as_line, failure_from, log_event

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class LaunchRequest:
    """What the HTTP layer knows about one request."""

    def __init__(self, provider: str, spec: str, launch_host: str, origin_host: str, stream_open: Callable[[], bool]):
        self.provider = provider
        self.spec = spec
        self.launch_host = launch_host  # e.g. "http://127.0.0.1:8000/" (service base URL, public)
        self.origin_host = origin_host  # e.g. "http://127.0.0.1:8000" (for session URLs)
        self.stream_open = stream_open


class LaunchPipeline:
    def __init__(self, service):
        self.service = service  # BinderService: config parent, builder, launcher, metrics, admission
        self.builds = BuildTracker()

    async def run(self, request: LaunchRequest, emit: Emit) -> None:
        metrics = self.service.metrics
        started = time.perf_counter()
        try:
            resolved = await self._resolve(request)
            environment = await self._environment(resolved, emit)
            if not request.stream_open():
                metrics.launch_done("abandoned", time.perf_counter() - started)
                return
            ready = await self._launch(request, resolved, environment, emit)
            await emit(ready)
            metrics.launch_done("success", time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one `failed` event
            failure = failure_from(exc)
            if failure.status_code >= 500 and not isinstance(exc, LaunchError):
                self.service.log.exception("Launch of %s/%s failed", request.provider, request.spec)
            metrics.launch_done("failure", time.perf_counter() - started, status_code=failure.status_code)
            await emit(failure.to_event())

    async def _resolve(self, request: LaunchRequest) -> ResolvedRepo:
        provider = get_provider(request.provider, request.spec, parent=self.service)
        return await provider.resolve()

    async def _environment(self, resolved: ResolvedRepo, emit: Emit):
        builder = self.service.builder
        key = builder.cache_key(resolved.provider, resolved.ref)
        environment = builder.lookup(key)
        if environment is not None:
            self.service.metrics.build_cached()
            await emit(event(BUILT, "Found built environment, launching...\n", imageName=key))
            return environment
        shared, started_here = self.builds.join_or_start(key, lambda publish: self._build(resolved, key, publish))
        if not started_here:
            await emit(event(WAITING, "Another launch is building this environment; following its log.\n"))
        environment = await shared.follow(emit)
        await emit(event(BUILT, "Built environment, launching...\n", imageName=key))
        return environment

    async def _build(self, resolved: ResolvedRepo, key: str, publish: Callable[[dict[str, Any]], None]):
        """The build proper; runs as a task shared by every launch of this key."""
        builder, metrics = self.service.builder, self.service.metrics
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="fetch-", dir=self.service.scratch_dir) as scratch:
                source = Path(scratch) / "repo"
                source.mkdir()
                provider = get_provider(resolved.provider, resolved.spec, parent=self.service)
                await provider.fetch(resolved, source, lambda line: publish(event(FETCHING, as_line(line))))
                environment = await builder.build(source, key, lambda line: publish(log_event(line)))
        except BaseException:
            metrics.build_done("failure", time.perf_counter() - started)
            raise
        metrics.build_done("success", time.perf_counter() - started)
        return environment

    async def _launch(self, request: LaunchRequest, resolved: ResolvedRepo, environment, emit: Emit) -> dict[str, Any]:
        reservation = await self.service.admit(resolved)
        try:
            return await self._start_session(request, resolved, environment, emit)
        finally:
            self.service.admission.release(reservation)

    async def _start_session(self, request: LaunchRequest, resolved: ResolvedRepo, environment, emit: Emit) -> dict[str, Any]:
        await emit(event(LAUNCHING, "Launching server...\n"))
        persistent = f"v2/{resolved.provider}/{resolved.persistent_spec}"
        options = {
            "environment": environment.key,
            "repo_url": resolved.repo_url,
            "binder_ref_url": resolved.ref_url,
            "binder_launch_host": request.launch_host,
            "binder_request": f"v2/{request.provider}/{request.spec}",
            "binder_persistent_request": persistent,
        }

        async def progress(message: str) -> None:
            await emit(event(LAUNCHING, message))

        session = await self.service.launcher.launch(resolved.slug, options, progress)
        return event(
            READY,
            f"server running at {request.origin_host}{session['path']}\n",
            url=f"{request.origin_host}{session['path']}",
            token=session["token"],
            image=environment.key,
            repo_url=resolved.repo_url,
            binder_ref_url=resolved.ref_url,
            binder_launch_host=request.launch_host,
            binder_request=options["binder_request"],
            binder_persistent_request=persistent,
        )


__all__ = ["LaunchPipeline", "LaunchRequest"]
