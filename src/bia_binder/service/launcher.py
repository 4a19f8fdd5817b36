"""Start a session for a built environment through the JupyterHub REST API (BinderHub's launcher).

A launch creates a temporary user ``binder-<slug>-<random>``, starts its server with
``user_options`` naming the environment and a fresh token, and waits until the hub reports
the server ready. A failed start removes the user again, so nothing is left behind.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import httpx
from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..events import LaunchError
from ..sessions.spawner import ANONYMOUS_PREFIX

ProgressFn = Callable[[str], Awaitable[None]]


class Launcher(LoggingConfigurable):
    hub_api_url = Unicode(config=True, help="The hub's REST API, e.g. http://127.0.0.1:8081/hub/api")
    hub_api_token = Unicode(config=True, help="Token of the binder service (JUPYTERHUB_API_TOKEN)")
    launch_timeout = Int(300, config=True, help="Seconds a session may take to start before the launch fails.")
    request_timeout = Float(30, config=True, help="Seconds for one hub API request (starting a server may take longer).")

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.hub_api_url.rstrip("/") + "/",
            headers={"Authorization": f"token {self.hub_api_token}"},
            timeout=httpx.Timeout(self.request_timeout, read=self.launch_timeout),
        )

    @staticmethod
    def username_for(slug: str) -> str:
        return f"{ANONYMOUS_PREFIX}{user_slug(slug)}-{secrets.token_hex(4)}"

    async def launch(self, slug: str, user_options: dict[str, Any], progress: ProgressFn) -> dict[str, str]:
        """Start a session; return ``{"username", "path", "token"}`` (path like ``/user/<name>/``)."""
        username = self.username_for(slug)
        token = secrets.token_urlsafe(24)
        options = {**user_options, "token": token}
        async with self._client() as client:
            # born in the temporary users' group: the service's token reaches no other user (hub/temporary_users.py)
            await self._call(client, "POST", "binder/temporary-users", "create the session user", json={"name": username})
            try:
                await progress(f"Starting server for {username}\n")
                response = await self._call(client, "POST", f"users/{quote(username)}/server", "start the session", json=options)
                if response.status_code == 202:
                    await self._follow_progress(client, username, progress)
                user = (await self._call(client, "GET", f"users/{quote(username)}", "read the session")).json()
                server = user.get("servers", {}).get("", {})
                if not server.get("ready"):
                    raise LaunchError("The session stopped right after it started; see the build log and try again.", 500)
                return {"username": username, "path": server["url"], "token": token}
            except BaseException:
                await self.remove_user(username, client)
                raise

    async def _follow_progress(self, client: httpx.AsyncClient, username: str, progress: ProgressFn) -> None:
        async with client.stream("GET", f"users/{quote(username)}/server/progress") as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                item = json.loads(line[5:])
                if item.get("failed"):
                    raise LaunchError(f"The session failed to start: {item.get('message', 'unknown reason')}", 500)
                if item.get("message"):
                    await progress(item["message"] + "\n")
                if item.get("ready"):
                    return

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, what: str, **kwargs) -> httpx.Response:
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise LaunchError(f"Could not reach JupyterHub to {what} ({type(e).__name__}); try again shortly.", 503) from e
        if response.status_code >= 400:
            # the spawner's reasons (sandbox refused: 503, bad options: 400) pass through as they are
            status = response.status_code if response.status_code in (400, 403, 409, 429, 503) else 500
            raise LaunchError(f"Could not {what}: {_hub_message(response)}", status)
        return response

    async def remove_user(self, username: str, client: httpx.AsyncClient | None = None) -> None:
        """Best effort: a failed launch should not leave a user (or its server) behind."""
        own_client = client is None
        client = client or self._client()
        try:
            await client.delete(f"users/{quote(username)}/server")
            await client.delete(f"users/{quote(username)}")
        except httpx.HTTPError as e:
            self.log.warning("Could not remove user %s: %s", username, e)
        finally:
            if own_client:
                await client.aclose()

    async def running_sessions(self) -> dict[str, str]:
        """Anonymous sessions the hub runs now: user name → repository slug (for admission)."""
        sessions: dict[str, str] = {}
        async with self._client() as client:
            offset = 0
            while True:
                response = await self._call(
                    client, "GET", f"users?state=active&limit=200&offset={offset}", "list running sessions",
                    headers={"Accept": "application/jupyterhub-pagination+json"},
                )
                page = response.json()
                for user in page["items"]:
                    if user["name"].startswith(ANONYMOUS_PREFIX):
                        sessions[user["name"]] = slug_of(user["name"])
                next_page = (page.get("_pagination") or {}).get("next")
                if not next_page:
                    return sessions
                offset = next_page["offset"]

    async def server_ready(self, username: str) -> bool:
        """Does the hub say ``username``'s server is running and ready (a pooled server before hand-over)?"""
        async with self._client() as client:
            response = await client.get(f"users/{quote(username)}", timeout=5)
        if response.status_code != 200:
            return False
        return bool(response.json().get("servers", {}).get("", {}).get("ready"))

    async def hub_status(self) -> dict[str, Any]:
        """For /health: is the hub API answering with our token?"""
        async with self._client() as client:
            try:
                response = await client.get("", timeout=5)
                return {"ok": response.status_code == 200, "status_code": response.status_code}
            except httpx.HTTPError as e:
                return {"ok": False, "error": type(e).__name__}


def user_slug(slug: str) -> str:
    """The part of a repository's slug that goes into its temporary users' names (lower case, safe characters)."""
    return re.sub(r"[^a-z0-9._-]+", "-", slug.lower())[:30].strip("-._") or "repo"


def slug_of(username: str) -> str:
    """Inverse of ``username_for``: ``binder-<slug>-<8 hex>`` → ``<slug>``."""
    return username[len(ANONYMOUS_PREFIX) : -9]


def _hub_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.reason_phrase))
    except ValueError:
        return f"HTTP {response.status_code}"
