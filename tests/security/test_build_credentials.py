"""Attacks from a build: a stranger's postBuild dumps its environment and walks the filesystem.

It must find no credential: not the binder service's hub token (admin of every temporary user),
not the hub's URL with a usable token, not the hub's database, cookie secret or proxy token.
And the service's own token, if it leaked anyway, must not reach logged-in users.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.stack import hub_api

from .conftest import environ_of, process_of, service_token

pytestmark = pytest.mark.slow

DUMP = """#!/bin/bash
env > "$HOME/build-env.txt"
# every file the build can read, but for the system's packages and kernel interfaces
find / \\( -path /proc -o -path /sys -o -path /usr -o -path /dev \\) -prune -o -type f -readable -print \\
  2>/dev/null > "$HOME/build-files.txt" || true  # find fails on what it may not read: that is the point
"""


@pytest.fixture(scope="module")
def dumped(stack):
    spec = stack.git_spec("attacker/dump-env", {"requirements.txt": "six\n", "postBuild": DUMP})
    events = stack.launch(spec)
    assert events[-1]["phase"] == "ready", events[-3:]
    key = next(e["imageName"] for e in events if e["phase"] == "built")
    repo = stack.data_dir / "envs" / key / "repo"
    return (repo / "build-env.txt").read_text(), (repo / "build-files.txt").read_text().splitlines()


def secrets_of(stack) -> dict[str, str]:
    return {
        "service token": service_token(stack),
        "proxy token": environ_of(process_of(stack, "configurable-http-proxy"))["CONFIGPROXY_AUTH_TOKEN"],
        "cookie secret": (stack.data_dir / "secrets" / "jupyterhub_cookie_secret").read_text().strip()[:32],
        "test admin token": stack.admin_token,
    }


def test_the_build_environment_holds_no_credential(stack, dumped):
    environment, _files = dumped
    names = {line.split("=", 1)[0] for line in environment.splitlines() if "=" in line}
    assert not {n for n in names if n.startswith(("JUPYTERHUB_", "JPY_", "CONFIGPROXY", "BIA_BINDER_UP_"))}, names
    for what, secret in secrets_of(stack).items():
        assert secret and secret not in environment, what


def test_no_file_the_build_can_read_holds_a_credential(stack, dumped):
    _environment, files = dumped
    assert files, "the walk found nothing: the probe is broken"
    data_dir = str(stack.data_dir.resolve())
    # of the data directory, builds see only the shared resolutions (pinned package lists: no secret in them)
    # and their own build directory (where uv's cache shares its folder with other things, builds happen in
    # the cache's .tmp instead of beside uv's cache): one directory, the environment being built
    scratch = f"{data_dir}/envs/.tmp/"
    own = {f[len(scratch):].split("/", 1)[0] for f in files if f.startswith(scratch)}
    assert len(own) <= 1, f"the build sees other builds: {sorted(own)}"
    shown = [
        f for f in files
        if f.startswith(data_dir + "/") and not f.startswith((f"{data_dir}/envs/.resolutions/", scratch))
    ]  # fmt: skip
    assert shown == [], "the build sees the service's data directory"
    assert not [f for f in files if "jupyterhub.sqlite" in f or "/secrets/" in f or "cookie_secret" in f]
    secrets = secrets_of(stack)
    for name in files:
        path = Path(name)
        if not path.is_file() or path.stat().st_size > 2**20:
            continue  # gone (the build's scratch) or a package payload: no config file is that big
        content = path.read_bytes()
        for what, secret in secrets.items():
            assert secret.encode() not in content, f"{what} readable by builds in {name}"


def test_the_service_token_reaches_no_logged_in_user(stack):
    """Even a leaked service token controls temporary users only: it cannot list, start, stop or adopt others."""
    assert hub_api(stack, "POST", "users/alice").status_code in (201, 409)  # a logged-in user, made by the test admin
    token = service_token(stack)

    def call(method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(
            method, f"{stack.url}/hub/api/{path}", headers={"Authorization": f"token {token}"}, timeout=30, **kwargs
        )

    listed = call("GET", "users").json()
    assert all(user["name"].startswith("binder-") for user in listed), [u["name"] for u in listed]
    assert call("GET", "users/alice").status_code in (403, 404)
    assert call("POST", "users/alice/server").status_code in (403, 404)
    assert call("DELETE", "users/alice/server").status_code in (403, 404)
    assert call("DELETE", "users/alice").status_code in (403, 404)
    assert call("POST", "users/alice/tokens", json={}).status_code in (403, 404)
    assert call("POST", "groups/binder-temporary/users", json={"users": ["alice"]}).status_code in (403, 404)
    assert call("POST", "users/mallory").status_code == 403  # no creating users outside the temporary group
    assert call("POST", "binder/temporary-users", json={"name": "alice"}).status_code == 400
    made = call("POST", "binder/temporary-users", json={"name": "binder-probe-0123abcd"})
    assert made.status_code == 201 and made.json()["groups"] == ["binder-temporary"]
    assert call("DELETE", "users/binder-probe-0123abcd").status_code == 204  # its own kind it may remove
    assert hub_api(stack, "GET", "users/alice").status_code == 200  # untouched
