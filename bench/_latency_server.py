"""A static file server for the data benchmark: every request waits ``--latency-ms`` first,
like a remote object store; answers Range requests. Prints its port, then serves until killed.

    python bench/_latency_server.py DIRECTORY --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web


def make_app(root: Path, latency: float) -> web.Application:
    @web.middleware
    async def delay(request: web.Request, handler):
        await asyncio.sleep(latency)
        return await handler(request)

    async def serve(request: web.Request) -> web.StreamResponse:
        path = (root / request.match_info["path"]).resolve()
        if root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)  # handles Range and uses sendfile

    app = web.Application(middlewares=[delay])
    app.router.add_get("/{path:.*}", serve)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    runner = web.AppRunner(make_app(args.root.resolve(), args.latency_ms / 1000), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
