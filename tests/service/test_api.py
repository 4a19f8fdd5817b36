"""BinderHub's HTTP API on a running stack: everything but real builds (see test_launch.py)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from tests.stack import read_events

pytestmark = pytest.mark.slow


def get(stack, path: str, **kwargs) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", timeout=30, **kwargs)


def test_health_reports_checks(binder_stack):
    response = get(binder_stack, "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    services = {check["service"]: check for check in body["checks"]}
    assert services["JupyterHub API"]["ok"] is True


def test_versions_name_the_builder(binder_stack):
    body = get(binder_stack, "/versions").json()
    assert body["binderhub"].startswith("bia-binder ")
    assert body["builder_info"]["builder_version"]


def test_repoproviders_lists_every_binderhub_provider(binder_stack):
    body = get(binder_stack, "/api/repoproviders").json()
    ids = {entry["id"] for entry in body} if isinstance(body, list) else set(body)
    assert {"gh", "gl", "git", "gist", "zenodo", "figshare", "dataverse"} <= ids


def test_badge_is_svg(binder_stack):
    for path in ("/badge.svg", "/badge_logo.svg"):
        response = get(binder_stack, path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert "launch" in response.text and "binder" in response.text


def test_legacy_repo_link_redirects_to_v2(binder_stack):
    response = get(binder_stack, "/repo/org/repo/notebooks/a.ipynb", follow_redirects=False)
    assert response.status_code in (301, 302)
    assert response.headers["location"] == "/v2/gh/org/repo/HEAD?urlpath=notebooks%2Fa.ipynb"


def test_hub_is_served_under_hub_prefix(binder_stack):
    response = get(binder_stack, "/hub/api/")
    assert response.status_code == 200
    assert "version" in response.json()


def test_stopped_user_urls_go_to_the_hub(binder_stack):
    response = get(binder_stack, "/user/nobody/lab?x=1", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/hub/user/nobody/lab?x=1"


def test_build_without_event_stream_accept_is_one_failed_event(binder_stack):
    response = get(binder_stack, "/build/gh/org/repo/main")
    assert response.status_code == 400
    payload = json.loads(response.text.strip().removeprefix("data:"))
    assert payload["phase"] == "failed" and payload["status_code"] == 400 and payload["message"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/build/nosuchprovider/org/repo/main", 404),
        ("/build/gh/only-org", 400),
    ],
)
def test_bad_specs_fail_with_a_reason(binder_stack, path, status):
    events = read_events(f"{binder_stack.url}{path}", timeout=60)
    assert events[-1]["phase"] == "failed", events
    assert events[-1]["status_code"] == status
    assert "\n" not in events[-1]["message"].strip()


def test_missing_git_repository_is_404(binder_stack):
    url = quote(f"{binder_stack.git.url}/no/such-repo", safe="")
    events = read_events(f"{binder_stack.url}/build/git/{url}/HEAD", timeout=60)
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 404


def test_unreachable_git_host_fails_cleanly(binder_stack):
    from tests.stack import free_port

    url = quote(f"http://127.0.0.1:{free_port()}/org/repo", safe="")
    events = read_events(f"{binder_stack.url}/build/git/{url}/HEAD", timeout=120)
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] in (404, 502, 504)


def test_launch_page_renders_for_any_spec(binder_stack):
    response = get(binder_stack, "/v2/gh/org/repo/main?urlpath=lab/tree/a.ipynb")
    assert response.status_code == 200
    assert "build/gh/org/repo/main" in response.text


def test_unknown_page_is_404_not_500(binder_stack):
    assert get(binder_stack, "/no/such/page").status_code == 404


def test_metrics_count_failures(binder_stack):
    read_events(f"{binder_stack.url}/build/nosuchprovider/x/y", timeout=30)
    text = get(binder_stack, "/metrics").text
    assert 'binderhub_launch_total{status="failure"}' in text
    assert 'binderhub_failures_total{status_code="404"}' in text
