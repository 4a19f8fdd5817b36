"""One launch, from a ``<provider>/<spec>`` to a running session, as a stream of BinderHub events.

    provider.resolve(spec) → cache key → cached? "built" : shared build ("fetching"/"building")
    → admission → launcher (hub REST API, "launching") → "ready"

With ``c.BinderService.container_builds`` the build may instead be an image made by repo2docker
(the container builder), which fetches the repository itself; the hub then gets ``image``
(BinderHub's user option) instead of ``environment``.

Failures at any step end the stream with one ``failed`` event carrying a one-line reason and
a status code; nothing here raises to the HTTP layer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from ..builder.base import Environment
from ..builder.buildpacks.base import NeedsContainer
from ..events import BUILT, FETCHING, LAUNCHING, READY, WAITING, LaunchError, event
from ..providers import STUDY_PROVIDERS, get_provider
from ..providers.base import ResolvedRepo
from ..studies.accessions import Pin
from ..studies.store import StudyStore
from .builds import BuildTracker, as_line, failure_from, log_event

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Publish = Callable[[dict[str, Any]], None]
#: what a build makes: a local environment, or the name of a container image
Built = Environment | str


class LaunchRequest:
    """What the HTTP layer knows about one request."""

    def __init__(
        self,
        provider: str,
        spec: str,
        launch_host: str,
        origin_host: str,
        stream_open: Callable[[], bool],
        query: dict[str, str] | None = None,
    ):
        self.provider = provider
        self.query = query or {}  # checked query parameters the pipeline uses (a study's ``image``)
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
            options: dict[str, str] = {}
            if request.provider in STUDY_PROVIDERS:
                resolved, built, options = await self._study(request, emit)
            else:
                resolved = await self._resolve(request)
                built = await self._environment(resolved, emit)
            if not request.stream_open():
                metrics.launch_done("abandoned", time.perf_counter() - started)
                return
            ready = await self._handed_over(request, resolved, built, options) or await self._launch(
                request, resolved, built, emit, options
            )
            if ready is None:  # the client left while waiting in line
                metrics.launch_done("abandoned", time.perf_counter() - started)
                return
            await emit(ready)
            metrics.launch_done("success", time.perf_counter() - started)
        except Exception as exc:  # every failure becomes one `failed` event
            failure = failure_from(exc)
            if failure.status_code >= 500 and not isinstance(exc, LaunchError):
                self.service.log.exception("Launch of %s/%s failed", request.provider, request.spec)
            metrics.launch_done("failure", time.perf_counter() - started, status_code=failure.status_code)
            await emit(failure.to_event())

    async def _study(self, request: LaunchRequest, emit: Emit) -> tuple[ResolvedRepo, Built, dict[str, str]]:
        """A study: its generated files in the store, the one study environment (prebuilt: normally cached)."""
        from ..studies import launch as studies  # the data stack (zarr, dask): not needed to start the service

        provider = get_provider(request.provider, request.spec, parent=self.service)
        store = StudyStore(studies.studies_dir(self.service.data_dir))
        study = await studies.prepare(provider, store, request.query.get("image", ""), request.launch_host, emit)
        key, cached = await studies.environment(self.service, Pin.parse(study.resolved.ref))
        if cached is not None:
            built = await self._cached(cached, "environment", emit)
        else:
            built = await self._shared_build(key, lambda publish: self._measured(self._build_study_environment(publish), publish), emit)
        return study.resolved, built, {"study": study.entry}

    async def _build_study_environment(self, publish: Publish) -> Environment:
        from ..studies.environment import StudyEnvironment

        return await StudyEnvironment(parent=self.service).cached_or_built(
            self.service.builder, lambda line: publish(log_event(line)), self.service.scratch_dir, anonymous=True
        )

    async def _resolve(self, request: LaunchRequest) -> ResolvedRepo:
        provider = get_provider(request.provider, request.spec, parent=self.service)
        resolved = await provider.resolve()
        self.service.bans.check_repository(resolved.repo_url)
        return resolved

    async def environment(self, resolved: ResolvedRepo, emit: Emit) -> Built:
        """The built environment (or image) of ``resolved``: cached, shared with a build under way, or built."""
        return await self._environment(resolved, emit)

    async def _environment(self, resolved: ResolvedRepo, emit: Emit) -> Built:
        if self.service.container_builds == "always":
            return await self._image(resolved, emit)
        builder = self.service.builder
        key = builder.cache_key(resolved.provider, resolved.ref)
        environment = builder.lookup(key)
        if environment is not None:
            return await self._cached(environment, "environment", emit)
        if self.service.container_builds == "fallback" and (image := await self._existing_image(resolved)):
            return await self._cached(image, "image", emit)
        return await self._shared_build(key, lambda publish: self._build(resolved, key, publish), emit)

    async def _existing_image(self, resolved: ResolvedRepo) -> str | None:
        """The image of a repository that needed a container before: no fetch to find that out again."""
        container = self.service.container_builder
        key = container.cache_key(resolved.provider, resolved.ref)
        try:
            return container.image_name(key) if await container.image_exists(key) else None
        except LaunchError as e:
            # a missing engine must not stop what the local builder can do; a container build will say so
            self.service.log.warning("Cannot look for image %s: %s", container.image_name(key), e.message)
            return None

    async def _image(self, resolved: ResolvedRepo, emit: Emit) -> str:
        container = self.service.container_builder
        key = container.cache_key(resolved.provider, resolved.ref)
        if await container.image_exists(key):
            return await self._cached(container.image_name(key), "image", emit)
        return await self._shared_build(key, lambda publish: self._measured(self._build_image(resolved, publish), publish), emit)

    async def _cached(self, built: Built, what: str, emit: Emit) -> Built:
        self.service.metrics.build_cached()
        await emit(event(BUILT, f"Found built {what}, launching...\n", imageName=image_name(built)))
        return built

    async def _shared_build(self, key: str, build: Callable[[Publish], Awaitable[Built]], emit: Emit) -> Built:
        shared, started_here = self.builds.join_or_start(key, build)
        if not started_here:
            await emit(event(WAITING, "Another launch is building this environment; following its log.\n"))
        built = await shared.follow(emit)
        what = "environment" if isinstance(built, Environment) else "image"
        await emit(event(BUILT, f"Built {what}, launching...\n", imageName=image_name(built)))
        return built

    async def _build(self, resolved: ResolvedRepo, key: str, publish: Publish) -> Built:
        """The build proper; runs as a task shared by every launch of this key."""
        return await self._measured(self._build_with_fallback(resolved, key, publish), publish)

    async def _build_with_fallback(self, resolved: ResolvedRepo, key: str, publish: Publish) -> Built:
        try:
            return await self._build_locally(resolved, key, publish)
        except NeedsContainer as e:
            if self.service.container_builds != "fallback":
                raise
            publish(log_event(f"{e.what} needs a container image: building one with the container builder"))
            return await self._build_image(resolved, publish)

    async def _measured(self, build: Coroutine[Any, Any, Built], publish: Publish) -> Built:
        # a burst of different repositories builds `LaunchQueue.concurrency` at a time
        async def waiting(position: int) -> None:
            publish(event(WAITING, f"Waiting to build: number {position} in line\n", position=position))

        try:
            async with self.service.queue.slot(waiting):
                return await self._timed(build)
        finally:
            build.close()  # a no-op once awaited; not started (cancelled in line): no "never awaited" warning

    async def _timed(self, build: Awaitable[Built]) -> Built:
        metrics = self.service.metrics
        started = time.perf_counter()
        try:
            built = await build
        except BaseException:
            metrics.build_done("failure", time.perf_counter() - started)
            raise
        metrics.build_done("success", time.perf_counter() - started)
        return built

    async def _build_locally(self, resolved: ResolvedRepo, key: str, publish: Publish) -> Environment:
        provider = get_provider(resolved.provider, resolved.spec, parent=self.service)

        async def fetch(source: Path) -> None:
            await provider.fetch(resolved, source, lambda line: publish(event(FETCHING, as_line(line))))

        def log(line: str) -> None:
            publish(log_event(line))

        return await self.service.builder.cached_or_built(key, fetch, log, self.service.scratch_dir, anonymous=True)

    async def _build_image(self, resolved: ResolvedRepo, publish: Publish) -> str:
        """repo2docker fetches the repository itself, at the resolved ref (no local fetch)."""
        container = self.service.container_builder
        key = container.cache_key(resolved.provider, resolved.ref)
        publish(log_event(f"Building image {container.image_name(key)} with {container.describe()}"))
        return await container.build(resolved.repo_url, resolved.ref, key, lambda line: publish(log_event(line)))

    async def _handed_over(
        self, request: LaunchRequest, resolved: ResolvedRepo, built: Built, extra: dict[str, str]
    ) -> dict[str, Any] | None:
        """A pre-started idle server of this environment from the workshop pool (service/pool.py), if any."""
        if extra:  # a study's session gets its own generated files: never a pooled one
            return None
        session = await self.service.pool.take(resolved, image_name(built))
        if session is None:
            return None
        return ready_event(request, resolved, built, session, session_options(request, resolved, built))

    async def _launch(
        self, request: LaunchRequest, resolved: ResolvedRepo, built: Built, emit: Emit, extra: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        reservation = await self.service.admit(resolved)
        try:
            async def waiting(position: int) -> None:
                await emit(event(WAITING, f"Waiting to start the server: number {position} in line\n", position=position))

            # a burst is queued (never failed for being busy): session starts run a few at a time
            async with self.service.queue.slot(waiting):
                if not request.stream_open():
                    return None
                return await self._start_session(request, resolved, built, emit, extra or {})
        finally:
            self.service.admission.release(reservation)

    async def _start_session(
        self, request: LaunchRequest, resolved: ResolvedRepo, built: Built, emit: Emit, extra: dict[str, str]
    ) -> dict[str, Any]:
        await emit(event(LAUNCHING, "Launching server...\n"))
        options = {**session_options(request, resolved, built), **extra}

        async def progress(message: str) -> None:
            await emit(event(LAUNCHING, message))

        session = await self.service.launcher.launch(resolved.slug, options, progress)
        return ready_event(request, resolved, built, session, options)


def session_options(request: LaunchRequest, resolved: ResolvedRepo, built: Built) -> dict[str, Any]:
    """The hub's user_options for a session of ``built``: what to run and the BINDER_* facts about it."""
    # BinderHub's user option for a built image is `image`; the local spawner reads `environment`
    return {
        ("environment" if isinstance(built, Environment) else "image"): image_name(built),
        "repo_url": resolved.repo_url,
        "binder_ref_url": resolved.ref_url,
        "binder_launch_host": request.launch_host,
        "binder_request": f"v2/{request.provider}/{request.spec}",
        "binder_persistent_request": f"v2/{resolved.provider}/{resolved.persistent_spec}",
    }


def ready_event(request: LaunchRequest, resolved: ResolvedRepo, built: Built, session: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    return event(
        READY,
        f"server running at {request.origin_host}{session['path']}\n",
        url=f"{request.origin_host}{session['path']}",
        token=session["token"],
        image=image_name(built),
        repo_url=resolved.repo_url,
        binder_ref_url=resolved.ref_url,
        binder_launch_host=request.launch_host,
        binder_request=options["binder_request"],
        binder_persistent_request=options["binder_persistent_request"],
    )


def image_name(built: Built) -> str:
    """BinderHub's ``imageName`` of what a build made (an environment's cache key)."""
    return built.key if isinstance(built, Environment) else built


__all__ = ["LaunchPipeline", "LaunchRequest"]
