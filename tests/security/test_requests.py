"""Attacks with requests alone: hostile launch parameters, a forged Host, malformed encodings, huge and
odd specs. Every answer is a 4xx (or a stream ending in a failed event with a 4xx): never a 5xx."""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.slow

HOSTILE_OPENS = [
    ("urlpath", "https://evil.example/x"),
    ("urlpath", "//evil.example/x"),
    ("urlpath", "/\\evil.example/x"),
    ("urlpath", "\\\\evil.example"),
    ("urlpath", "javascript:alert(document.domain)//"),
    ("urlpath", " javascript:alert(1)"),
    ("urlpath", "JaVaScRiPt:alert(1)"),
    ("urlpath", "data:text/html,<script>alert(1)</script>"),
    ("urlpath", "java\tscript:alert(1)"),
    ("urlpath", "../../hub/admin"),
    ("urlpath", "lab/%2e%2e/%2e%2e/%2e%2e/hub/token"),
    ("labpath", "../../../etc/passwd"),
    ("labpath", "a.ipynb?token=x"),
    ("filepath", "https://evil.example/"),
]


@pytest.fixture(scope="module")
def spec(stack):
    return stack.git_spec("lab/requests", {"requirements.txt": "six\n"})


@pytest.mark.parametrize("name,value", HOSTILE_OPENS, ids=[f"{n}={v!r}" for n, v in HOSTILE_OPENS])
def test_a_launch_parameter_outside_the_session_is_refused_with_a_reason(stack, spec, name, value):
    response = httpx.get(f"{stack.url}/v2/{spec}", params={name: value}, timeout=30)
    assert response.status_code == 400
    assert "path inside the session" in response.text
    assert "data-build-url" not in response.text  # no launch page, so no launch either


def test_paths_inside_the_session_are_kept(stack, spec):
    response = httpx.get(f"{stack.url}/v2/{spec}", params={"urlpath": "/lab/tree/a b.ipynb?x=1", "labpath": "dir/n.ipynb"})
    assert response.status_code == 200
    assert 'data-urlpath="lab/tree/a b.ipynb?x=1"' in response.text and 'data-labpath="dir/n.ipynb"' in response.text


def test_every_page_has_a_strict_content_security_policy(stack, spec):
    for path in ["/", f"/v2/{spec}", "/no/such/page", "/health", "/api/openapi.json", "/badge.svg"]:
        response = httpx.get(f"{stack.url}{path}", timeout=30)
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_a_forged_host_header_does_not_move_the_session(stack, spec):
    _status, events = stream(f"{stack.url}/build/{spec}", {"Host": "evil.example"})
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    assert ready["url"].startswith(f"{stack.url}/user/")
    assert "evil" not in ready["binder_launch_host"] and ready["binder_launch_host"].startswith(stack.url)


MALFORMED_PATHS = [
    "/v2/a%20b/x/y",
    "/v2/a%zz/b/c",
    "/v2/%ff%fe/x",
    "/v2/gh/%zz",
    "/v2/git/%0d%0aSet-Cookie:%20x=1/HEAD",
    "/v2/gh/org/repo/%00",
    "/hub/%zz",
    "/%zz",
    "/user/%zz/lab",
    "/repo/%zz/%zz",
    "/v2/" + "a" * 3000 + "/b/c",
]


@pytest.mark.parametrize("path", MALFORMED_PATHS, ids=[p[:40] for p in MALFORMED_PATHS])
def test_malformed_paths_get_a_4xx_from_the_proxy_and_from_us(stack, path):
    status = raw_get(stack, path)
    assert 400 <= status < 500, status


HOSTILE_SPECS = [
    "a%20b/x/y",
    "a%zz/x",
    "gh/" + quote("org/repo/`touch /tmp/pwned`", safe="/"),
    "git/" + quote("--upload-pack=touch /tmp/bia-pwned", safe="") + "/HEAD",
    "git/" + quote("-c core.sshCommand=touch /tmp/bia-pwned", safe="") + "/HEAD",
    "git/" + quote("ext::sh -c touch% /tmp/bia-pwned", safe="") + "/HEAD",
    "gh/org/repo/" + quote("--output=/tmp/bia-pwned", safe=""),
    "gh/%2e%2e/%2e%2e/x",
    "gh/org/repo/ma%0d%0ain",
    "zenodo/%00",
    "dataverse/" + "x" * 20000,
    "gh/" + "é" * 300 + "/r/main",
]


@pytest.mark.parametrize("spec", HOSTILE_SPECS, ids=[s[:40] for s in HOSTILE_SPECS])
def test_hostile_specs_end_with_one_failed_event_and_a_4xx(stack, spec):
    status, events = stream(f"{stack.url}/build/{spec}")
    if not events:  # refused before the stream (e.g. a request line too long for the proxy)
        assert 400 <= status < 500, status
        return
    assert [e["phase"] for e in events].count("failed") == 1 and events[-1]["phase"] == "failed", events[-1]
    assert 400 <= events[-1]["status_code"] < 500, events[-1]
    assert not os.path.exists("/tmp/bia-pwned")


def stream(url: str, headers: dict[str, str] | None = None) -> tuple[int, list[dict]]:
    events = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream", **(headers or {})}, timeout=httpx.Timeout(30, read=600)) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["phase"] in ("ready", "failed"):
                    break
        return r.status_code, events


def test_a_one_megabyte_url_is_refused(stack):
    assert 400 <= raw_get(stack, "/v2/gh/" + "a" * 2**20) < 500


def raw_get(stack, path: str) -> int:
    """The status of a GET of ``path`` exactly as written (clients would normalise the escapes)."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as s:
        try:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        except OSError:
            pass  # refused while we were still sending (431): its answer is already there to read
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split()[1])
