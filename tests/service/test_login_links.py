"""A "Log in" link only where a login is configured (without one, /hub/login answers 403)."""

from __future__ import annotations

import httpx
import pytest

from bia_binder.service.app import BinderService
from bia_binder.up import free_port


@pytest.mark.parametrize("logins", [False, True])
async def test_login_links_only_with_a_login(tmp_path, monkeypatch, logins):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    service = BinderService(data_dir=str(tmp_path), logins=logins)
    service.setup()
    port = free_port()
    server = service.make_app().listen(port, "127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            pages = [await client.get("/"), await client.get("/no-such-page"), await client.get("/v2/gh/org/repo/main")]
    finally:
        server.stop()
    assert [page.status_code for page in pages] == [200, 404, 200]
    for page in pages:
        assert ("/hub/login" in page.text) is logins, page.url
        assert ("Log in" in page.text) is logins, page.url
