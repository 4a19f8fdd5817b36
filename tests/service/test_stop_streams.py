"""A stop (SIGTERM, or the hub gone) ends every launch under way with exactly one `failed` event, not a cut
stream. The service's app on loopback, in this process; the launch is held up by a git host that never
answers."""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import quote

import httpx

from bia_binder.service.app import BinderService
from bia_binder.up import free_port


async def test_launches_under_way_end_with_one_failed_event_when_the_service_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers: the resolve waits
    spec = f"git/{quote(f'http://127.0.0.1:{silent.getsockname()[1]}/org/repo.git', safe='')}/HEAD"
    service = BinderService(data_dir=str(tmp_path), allow_local_repos=True)
    service.setup()
    port = free_port()
    server = service.make_app().listen(port, "127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def launch() -> list[dict]:
                async with client.stream("GET", f"/build/{spec}", headers={"Accept": "text/event-stream"}) as response:
                    return [json.loads(line[5:]) async for line in response.aiter_lines() if line.startswith("data:")]

            launches = [asyncio.ensure_future(launch()) for _ in range(3)]
            for _ in range(100):
                if len(service.launch_streams) == 3:
                    break
                await asyncio.sleep(0.05)
            assert len(service.launch_streams) == 3
            await service.end_launch_streams()
            results = await asyncio.wait_for(asyncio.gather(*launches), 10)
    finally:
        server.stop()
        silent.close()
    for events in results:
        failed = [e for e in events if e["phase"] == "failed"]
        assert len(failed) == 1 and events[-1] is failed[0]
        assert failed[0]["status_code"] == 503 and "launch again" in failed[0]["message"]
    # (their launches are still waiting on the git host: the process exits right after, see BinderService.main)
