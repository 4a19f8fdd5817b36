"""A member of a federation as the gateway sees it, on loopback: a small Tornado app speaking the real
wire format of a bia-binder member (``/health`` with ``load``, ``/api/federation/holds`` with a token,
``/build/...`` as Server-Sent Events in BinderHub's phases, keepalive comments).

It builds nothing: a launch of a ref it does not hold "builds" (fetching/building events), then holds
it. ``behaviour`` makes it fail the way real members fail, at a chosen point of the next launches.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import httpserver, web
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets

TOKEN = "federation-test-token"

#: behaviours: "ok"; "die" (after the first building line the process is gone: connections reset, port closed);
#: "hang" (the stream stops after the first building line, connection open); "http-500" (the stream is refused);
#: "fail-500-launching" (a 500 after built: the session did not start); "full" (429);
#: "fail-build" (a 500 while building: the repository's install fails); "bad-spec" (400);
#: "rate-limited" (HTTP 429 for this client, before the launch starts)
BEHAVIOURS = ("ok", "die", "hang", "http-500", "fail-500-launching", "full", "fail-build", "bad-spec", "rate-limited")


class FakeMember:
    def __init__(self, name: str, token: str = TOKEN, free_slots: int | None = None, delay: float = 0.01):
        self.name = name
        self.token = token
        self.behaviour = "ok"
        self.healthy = True
        self.free_slots = free_slots
        self.delay = delay
        self.held: set[str] = set()
        self.built: list[str] = []  # refs it built
        self.launches: list[str] = []  # specs it was asked to launch
        self.forwarded_for: list[str] = []  # X-Forwarded-For of each launch
        self.sessions = 0
        self.health_checks = 0
        self.holds_queries = 0
        self._server: httpserver.HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def entry(self, weight: float = 1, **extra: Any) -> dict[str, Any]:
        """This member as an entry of c.FederationGateway.members."""
        return {"name": self.name, "url": self.url, "weight": weight, "token": self.token, **extra}

    def start(self) -> "FakeMember":
        app = web.Application(
            [
                (r"/health", _Health, {"member": self}),
                (r"/api/federation/holds", _Holds, {"member": self}),
                (r"/build/([^/]+)/(.+)", _Build, {"member": self}),
            ]
        )
        self._server = httpserver.HTTPServer(app)
        if self.port:  # restarted on the same port, as a member coming back
            self._server.listen(self.port, "127.0.0.1")
        else:
            sockets = bind_sockets(0, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]
            self._server.add_sockets(sockets)
        return self

    async def kill(self) -> None:
        """As kill -9: the port closes and every open connection drops."""
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def revive(self) -> None:
        self.behaviour = "ok"
        self.start()


class _Handler(web.RequestHandler):
    def initialize(self, member: FakeMember) -> None:
        self.member = member


class _Health(_Handler):
    def get(self) -> None:
        m = self.member
        m.health_checks += 1
        load = {"sessions": m.sessions, "max_sessions": 0, "free_slots": m.free_slots, "builds": 0}
        self.set_status(200 if m.healthy else 503)
        self.finish({"ok": m.healthy, "checks": [{"service": "JupyterHub API", "ok": m.healthy}], "load": load})


class _Holds(_Handler):
    def get(self) -> None:
        self.member.holds_queries += 1
        if self.request.headers.get("Authorization") != f"token {self.member.token}":
            raise web.HTTPError(403)
        self.finish({"held": self.get_argument("ref") in self.member.held, "building": False})


class _Build(_Handler):
    async def send(self, phase: str, message: str, **fields: Any) -> None:
        self.write(f"data: {json.dumps({'phase': phase, 'message': message, **fields})}\n\n")
        await self.flush()
        await asyncio.sleep(self.member.delay)

    async def get(self, provider: str, spec: str) -> None:
        m = self.member
        m.launches.append(spec)
        m.forwarded_for.append(self.request.headers.get("X-Forwarded-For", ""))
        ref = spec.rsplit("/", 1)[-1]
        behaviour = m.behaviour
        if behaviour == "http-500":
            raise web.HTTPError(500)
        if behaviour == "rate-limited":  # as a member's RateLimiter refuses: a real 429 with one failed event
            self.set_status(429)
            self.set_header("Content-Type", "text/event-stream")
            self.finish('data: {"phase": "failed", "message": "Too many launches from your address", "status_code": 429}\n\n')
            return
        self.set_header("Content-Type", "text/event-stream")
        try:
            if behaviour == "bad-spec":
                await self.send("failed", "Spec is not of the form ...", status_code=400)
                return
            if behaviour == "full":
                await self.send("failed", "This server is full (4 of 4 sessions are running); try again later.", status_code=429)
                return
            await self.write_comment()
            if ref in m.held:
                await self.send("built", "Found built environment, launching...\n", imageName=ref)
            else:
                await self.send("fetching", f"Fetching {ref} on {m.name}\n")
                await self.send("building", f"Installing on {m.name}\n")
                if behaviour == "die":
                    await m.kill()
                    return
                if behaviour == "hang":
                    await asyncio.sleep(3600)
                if behaviour == "fail-build":
                    await self.send("failed", "installing requirements.txt failed: no such package", status_code=500)
                    return
                m.built.append(ref)
                m.held.add(ref)
                await self.send("built", "Built environment, launching...\n", imageName=ref)
            await self.send("launching", "Launching server...\n")
            if behaviour == "fail-500-launching":
                await self.send("failed", "Could not start the session: spawner failed", status_code=500)
                return
            m.sessions += 1
            user = f"binder-{m.name}-{m.sessions}"
            await self.send(
                "ready", f"server running at {m.url}user/{user}/\n", url=f"{m.url}user/{user}/", token="t0ken", image=ref,
                repo_url="x", binder_ref_url="x", binder_launch_host=m.url, binder_request=f"v2/{provider}/{spec}",
                binder_persistent_request=f"v2/{provider}/{spec}",
            )
        except StreamClosedError:
            pass

    async def write_comment(self) -> None:
        self.write(":keepalive\n\n")
        await self.flush()
