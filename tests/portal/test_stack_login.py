"""The login portal on the whole stack: `bia-binder up --auth dev`, a user logs in, picks a
profile and the default environment in the spawn form, works in a persistent home; a repository
environment lands in the home as a copy; bad choices and a missing password fail in one line."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bia_binder.portal.culling import TEMPORARY_USERS_GROUP
from tests.kernel import run_cell
from tests.stack import BinderStack, hub_api

pytestmark = pytest.mark.slow

PASSWORD = secrets.token_hex(8)
#: small stand-in for the bioimage list, so a cold uv cache does not dominate the test
DEFAULT_REQUIREMENTS = "six\n"
MiB = 1024**2

CONFIG = """
c.BinderSpawner.default_environment_requirements = {requirements!r}
c.HomeManager.quota = "64M"
# the hub answers a start request still under way after 2 s (not 10 s) with 202, so the test can
# follow a build's progress; invalid options fail well within it (400)
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 2}}
c.ResourceProfiles.logged_in = [
    {{"slug": "small", "display_name": "Small test profile", "mem_limit": "2G", "cpu_limit": 1, "storage": "persistent"}},
    {{"slug": "medium", "display_name": "Medium test profile", "mem_limit": "3G", "cpu_limit": 2, "storage": "persistent"}},
]
"""

#: what a session reports about itself (one JSON line)
INSPECT = """
import json, os, sys
st = os.statvfs(os.environ["HOME"])
print(json.dumps({
    "home": os.environ["HOME"], "cwd": os.getcwd(), "uid": os.getuid(), "prefix": sys.prefix,
    "home_bytes": st.f_blocks * st.f_frsize, "mem_limit": os.environ.get("MEM_LIMIT"),
    "dask_workers": os.environ.get("DASK_LABEXTENSION__FACTORY__KWARGS__N_WORKERS"),
    "rclone_config": open(os.environ["RCLONE_CONFIG"]).read(),
}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    requirements = tmp_path_factory.mktemp("default-env") / "requirements.txt"
    requirements.write_text(DEFAULT_REQUIREMENTS)
    with BinderStack(
        extra_args=["--allow-local-repos", "--auth", "dev"],
        config=CONFIG.format(requirements=str(requirements)),
        env={"BIA_BINDER_DEV_PASSWORD": PASSWORD},
    ) as running:
        yield running


def logged_in_client(stack: BinderStack, username: str) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=60, follow_redirects=False)
    client.get("/hub/login")
    response = client.post(
        "/hub/login?next=/hub/home",
        data={"username": username, "password": PASSWORD, "_xsrf": client.cookies.get("_xsrf")},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def wait_until_ready(stack: BinderStack, username: str, timeout: float = 240) -> None:
    """Poll the hub after a start request: ready, or gone (the spawn failed), or still pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = hub_api(stack, "GET", f"users/{username}").json()["servers"].get("")
        if server is None:
            raise AssertionError(f"the server of {username} failed to start:\n{stack.log_tail()}")
        if server["ready"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the server of {username} did not become ready:\n{stack.log_tail()}")


def wait_until_stopped(stack: BinderStack, username: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while hub_api(stack, "GET", f"users/{username}").json()["servers"]:
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.3)


def user_token(stack: BinderStack, username: str) -> str:
    response = hub_api(stack, "POST", f"users/{username}/tokens", json={"note": "test"})
    assert response.status_code == 201, response.text
    return response.json()["token"]


async def inspect_session(stack: BinderStack, username: str, token: str) -> dict:
    return json.loads(await run_cell(f"{stack.url}/user/{username}/", token, INSPECT))


def start_from_api(stack: BinderStack, username: str, options: dict) -> httpx.Response:
    hub_api(stack, "POST", f"users/{username}")  # 201 new, 409 exists: both fine
    return hub_api(stack, "POST", f"users/{username}/server", json=options)


def test_the_default_environment_is_built_when_the_service_starts(stack):
    """With a login configured, nobody waits for the first build of the default environment."""
    from bia_binder.builder import EnvBuilder
    from bia_binder.environments.default import environment_key

    key = environment_key(EnvBuilder(cache_dir=str(stack.data_dir / "envs")), DEFAULT_REQUIREMENTS)
    deadline = time.monotonic() + 240
    while not (stack.data_dir / "envs" / key / "environment.json").is_file():
        assert time.monotonic() < deadline, f"no default environment {key} after 240 s:\n{stack.log_tail()}"
        time.sleep(0.5)
    assert all(not user["servers"] for user in hub_api(stack, "GET", "users").json()), "a session built it"


@pytest.fixture(scope="module")
def alice(stack):
    """alice logs in and starts the default environment with the 'medium' profile from the form."""
    client = logged_in_client(stack, "alice")
    form = client.get("/hub/spawn")
    assert form.status_code == 200, form.text[:500]
    response = client.post(
        "/hub/spawn",
        data={"profile": "medium", "environment": "default", "repository": "", "_xsrf": client.cookies.get("_xsrf")},
    )
    assert response.status_code in (200, 302), response.text[:500]
    wait_until_ready(stack, "alice")
    yield {"client": client, "form": form.text, "token": user_token(stack, "alice")}
    client.close()


def test_spawn_form_offers_the_profiles_and_environments(alice):
    form = alice["form"]
    for text in ('value="small"', 'value="medium"', "Medium test profile", 'value="default"', 'name="repository"'):
        assert text in form


async def test_logged_in_session_runs_singleuser_in_a_quota_home(stack, alice):
    seen = await inspect_session(stack, "alice", alice["token"])
    if os.geteuid() == 0:  # sandboxed: the home is mounted at repo2docker's path, whatever its host path
        assert seen["home"] == "/home/jovyan"
    else:
        assert Path(seen["home"]).is_relative_to(stack.data_dir.resolve() / "homes")
    assert seen["cwd"] == seen["home"]
    # the 64M image is the home's filesystem: the quota holds
    assert 32 * MiB < seen["home_bytes"] <= 64 * MiB
    if os.geteuid() == 0:
        assert seen["uid"] != 0  # its own uid, not the hub's
    # the medium profile: its limits are visible, a LocalCluster fits them, rclone knows the EBI remotes
    assert seen["mem_limit"] == str(3 * 1024**3)
    assert seen["dask_workers"] == "2"
    assert "[bia]" in seen["rclone_config"]
    # singleuser serves with hub OAuth: without a token or cookie the API refuses
    assert httpx.get(f"{stack.url}/user/alice/api/contents", timeout=30).status_code in (302, 403)


async def test_home_survives_a_session_restart(stack, alice):
    marker = secrets.token_hex(8)
    await run_cell(f"{stack.url}/user/alice/", alice["token"], f"open('notes.txt', 'w').write({marker!r})")
    assert hub_api(stack, "DELETE", "users/alice/server").status_code in (202, 204)
    wait_until_stopped(stack, "alice")
    started = start_from_api(stack, "alice", {"profile": "small", "environment": "default"})
    assert started.status_code in (201, 202), started.text
    wait_until_ready(stack, "alice")
    token = user_token(stack, "alice")
    assert await run_cell(f"{stack.url}/user/alice/", token, "print(open('notes.txt').read())") == marker + "\n"
    assert (await inspect_session(stack, "alice", token))["mem_limit"] == str(2 * 1024**3)


def spawn_progress(stack: BinderStack, username: str) -> list[dict]:
    """The hub's progress event stream of a starting server, to its end."""
    events = []
    headers = {"Authorization": f"token {stack.admin_token}"}
    url = f"{stack.url}/hub/api/users/{username}/server/progress"
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=240)) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    break
    return events


async def test_repository_environment_is_built_and_copied_into_the_home(stack):
    files = {
        "requirements.txt": "six\n",
        "analysis.py": "ANSWER = 42\n",
        # a build that outlasts slow_spawn_timeout, so it can be watched
        "postBuild": "#!/bin/sh\necho postBuild-ran\nsleep 5\n",
    }
    spec = stack.git_spec("lab/persistent", files)
    started = start_from_api(stack, "bob", {"profile": "small", "environment": spec})
    assert started.status_code == 202, started.text
    progress = spawn_progress(stack, "bob")
    assert progress[-1].get("ready"), progress[-3:]
    messages = "\n".join(item.get("message", "") for item in progress)
    assert "Building the environment" in messages and "postBuild-ran" in messages
    token = user_token(stack, "bob")
    code = "import glob, json, six; print(json.dumps(sorted(glob.glob('*/analysis.py'))))"
    copies = json.loads(await run_cell(f"{stack.url}/user/bob/", token, code))
    assert len(copies) == 1 and copies[0].endswith("lab-persistent/analysis.py")  # ~/<repo-slug>/
    hub_api(stack, "DELETE", "users/bob/server")
    wait_until_stopped(stack, "bob")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"profile": "huge", "environment": "default"}, "unknown resource profile 'huge'"),
        ({"environment": "nowhere/x/y"}, "neither 'default' nor a repository"),
        ({"colour": "blue"}, "unknown session option"),
    ],
)
def test_bad_choices_fail_with_a_reason(stack, options, expected):
    response = start_from_api(stack, "carol", options)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert expected in message and "\n" not in message
    assert not hub_api(stack, "GET", "users/carol").json()["servers"]


def test_cullers_run_and_the_temporary_group_exists(stack):
    assert hub_api(stack, "GET", f"groups/{TEMPORARY_USERS_GROUP}").status_code == 200
    cullers = []
    for process in psutil.Process(stack.proc.pid).children(recursive=True):
        try:
            if "jupyterhub_idle_culler" in process.cmdline():
                cullers.append(process.cmdline())
        except psutil.Error:  # a process that ended meanwhile
            pass
    assert sorted("--cull-users=true" in argv for argv in cullers) == [False, True], cullers
    culler_exits = [line for line in stack.log_tail(10_000).splitlines() if "culler" in line and "exited" in line]
    assert not culler_exits, culler_exits


def test_dev_auth_without_password_stops_up_in_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "BIA_BINDER_DEV_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", "up", "--auth", "dev", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "BIA_BINDER_DEV_PASSWORD" in lines[0], done.stderr
    assert not (tmp_path / "data").exists()  # nothing started, nothing created
