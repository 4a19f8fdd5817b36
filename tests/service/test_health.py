"""/health says ok only once launches can succeed: the hub answers our token, and the proxy routes to this
very process (probed through it). The binder service's app on loopback, in this process."""

from __future__ import annotations

import httpx
import pytest
from tornado import web

from bia_binder.service.app import BinderService
from bia_binder.up import free_port


@pytest.fixture
async def service(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    service = BinderService(data_dir=str(tmp_path))
    service.setup()
    service.port = free_port()
    server = service.make_app().listen(service.port, "127.0.0.1")
    yield service
    server.stop()


def check(service_checks: list[dict], name: str) -> dict:
    found = next(c for c in service_checks if c["service"] == name)
    return {key: value for key, value in found.items() if key != "service"}


async def test_proxy_route_is_ok_only_when_the_proxy_reaches_this_process(service):
    # nothing listens where the proxy should be (it has not started yet)
    service.proxy_url = f"http://127.0.0.1:{free_port()}"
    assert check(await service.health_checks(), "Proxy route") == {"ok": False, "error": "ConnectError"}

    # something else answers there: a proxy still routing / to the hub (its 404), or a previous service
    other = web.Application([(r"/health/route-probe", type("Old", (web.RequestHandler,), {"get": lambda h: h.finish("old")}))])
    other_port = free_port()
    other_server = other.listen(other_port, "127.0.0.1")
    try:
        service.proxy_url = f"http://127.0.0.1:{other_port}"
        assert check(await service.health_checks(), "Proxy route")["ok"] is False
    finally:
        other_server.stop()

    # the route leads here
    service.proxy_url = f"http://127.0.0.1:{service.port}"
    assert check(await service.health_checks(), "Proxy route") == {"ok": True}


async def test_health_is_503_while_the_hub_or_the_route_is_missing(service):
    service.proxy_url = f"http://127.0.0.1:{service.port}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as client:
        response = await client.get("/health")
    assert response.status_code == 503  # no hub listens on 127.0.0.1:9
    body = response.json()
    assert body["ok"] is False and check(body["checks"], "JupyterHub API")["ok"] is False
    assert check(body["checks"], "Proxy route")["ok"] is True
