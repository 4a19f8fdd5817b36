"""What a member of a federation tells the gateway (``bia-binder federation``, see bia_binder.federation).

- ``/health`` carries ``load``: sessions running, free session slots (from ``c.Admission.max_sessions``)
  and builds under way, so that the gateway can rank members by load (:func:`member_load`);
- ``GET /api/federation/holds?provider=<p>&ref=<resolved ref>`` says whether this member already holds
  the built environment (or image) of a resolved ref, or is building it now, so that the gateway sends
  a launch where nothing needs to be built. It needs the federation token
  (``Authorization: token <c.FederationMember.token>``): the answer is cheap, but which repositories a
  deployment has built is not the whole world's business.
"""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

from tornado import web
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..builder.cache import METADATA
from ..events import LaunchError
from .handlers import BaseHandler

TOKEN_ENV = "BIA_BINDER_FEDERATION_TOKEN"


class FederationMember(LoggingConfigurable):
    """This deployment as a member of a federation."""

    token = Unicode(
        config=True,
        help=f"Token the federation gateway sends to ask what this member holds (also ${TOKEN_ENV}). "
        "Empty: the endpoint answers 403, and the gateway picks this member by hash and load only.",
    )

    @default("token")
    def _token_from_environment(self) -> str:
        return os.environ.get(TOKEN_ENV, "")

    def authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        # constant-time: the comparison must not tell an attacker how much of a guess was right
        return bool(self.token) and scheme.lower() in ("token", "bearer") and hmac.compare_digest(presented, self.token)


async def holds(service, provider: str, ref: str) -> dict[str, Any]:
    """Whether ``service`` (a BinderService) holds or is building the environment of ``provider``/``ref``.

    Looks at the cache entry's metadata without "using" it (``lookup`` would refresh its LRU time)."""
    keys = []
    if service.container_builds != "always":
        key = service.builder.cache_key(provider, ref)
        keys.append(key)
        if (service.builder.cache.entry_dir(key) / METADATA).is_file():
            return {"held": True, "building": False, "kind": "environment"}
    if service.container_builds != "never":
        key = service.container_builder.cache_key(provider, ref)
        keys.append(key)
        try:
            if await service.container_builder.image_exists(key):
                return {"held": True, "building": False, "kind": "image"}
        except LaunchError:  # no engine here: then it holds no image either
            pass
    return {"held": False, "building": any(key in service.pipeline.builds for key in keys)}


#: seconds between two session counts from the hub for /health (a gateway polls often; every launch counts anew)
LOAD_REFRESH_SECONDS = 5.0
_counted_at: dict[int, float] = {}


async def member_load(service) -> dict[str, Any]:
    """For ``/health``: what this member runs now and how much room it has left."""
    admission = service.admission
    if time.monotonic() - _counted_at.get(id(service), 0.0) >= LOAD_REFRESH_SECONDS:
        _counted_at[id(service)] = time.monotonic()
        try:
            admission.sync(await service.launcher.running_sessions())
        except Exception:  # noqa: BLE001 - the hub check in /health reports an unreachable hub; keep the last count
            pass
    sessions = admission.running()
    limit = admission.max_sessions
    return {
        "sessions": sessions,
        "max_sessions": limit,
        "free_slots": max(limit - sessions, 0) if limit else None,  # None: no limit configured
        "builds": len(service.pipeline.builds),
    }


class HoldsHandler(BaseHandler):
    """``/api/federation/holds``: see the module docstring."""

    async def get(self) -> None:
        member = FederationMember(parent=self.service)
        if not member.authorized(self.request.headers.get("Authorization", "")):
            raise web.HTTPError(403, "This endpoint is for the federation gateway: send 'Authorization: token <c.FederationMember.token>'")
        provider, ref = self.get_argument("provider", ""), self.get_argument("ref", "")
        if not provider or not ref or len(ref) > 256:
            raise web.HTTPError(400, "Send provider=<provider prefix>&ref=<resolved ref (commit sha or record version)>")
        self.finish(await holds(self.service, provider, ref))


__all__ = ["FederationMember", "HoldsHandler", "holds", "member_load"]
