"""How the hub starts configurable-http-proxy: with a small fix for malformed paths loaded into it."""

from __future__ import annotations

import shutil
from pathlib import Path

from jupyterhub.proxy import ConfigurableHTTPProxy

MALFORMED_PATHS_FIX = Path(__file__).with_name("chp_malformed_paths.mjs")


def chp_library(proxy_command: str) -> Path | None:
    """CHP's ``lib/configproxy.js`` next to its ``bin/configurable-http-proxy`` (npm's layout), if found."""
    executable = shutil.which(proxy_command) or proxy_command
    library = Path(executable).resolve().parent.parent / "lib" / "configproxy.js"
    return library if library.is_file() else None


def proxy_command(proxy_command: str) -> tuple[list[str], dict[str, str]]:
    """The command for ``c.ConfigurableHTTPProxy.command`` and the variables it needs.

    Node loads :data:`MALFORMED_PATHS_FIX` first (``--import``), so that a path like ``/v2/a%zz`` gets
    the binder service's 400 instead of the proxy's 500. Where CHP's library is not where npm puts it,
    CHP runs as it is.
    """
    library = chp_library(proxy_command)
    node = shutil.which("node")
    if library is None or node is None:
        return [proxy_command], {}
    executable = str(Path(shutil.which(proxy_command) or proxy_command).resolve())
    return [node, "--import", MALFORMED_PATHS_FIX.as_uri(), executable], {"BIA_BINDER_CHP_LIBRARY": library.as_uri()}


class BinderProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy as JupyterHub runs it, plus: a proxy that died and was started again gets our
    ``extra_routes`` back at once (the binder service at ``/``). JupyterHub's ``restore_routes`` re-adds the
    hub, users and services only; ``/`` would wait for the next full route check (``last_activity_interval``,
    5 minutes), and every launch until then would get the hub's 404."""

    async def restore_routes(self) -> None:
        await super().restore_routes()
        for routespec, target in self.extra_routes.items():
            await self.add_route(routespec, target, {})
        self.log.info("Restored %d extra route(s) on the new proxy", len(self.extra_routes))
