"""Real launches: a git repository → uv-built environment → a Jupyter server behind the proxy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from urllib.parse import quote

import httpx
import pytest

from tests.kernel import run_cell

pytestmark = pytest.mark.slow

REQUIREMENTS = {"requirements.txt": "six\n", "hello.py": "print('hi')\n"}


def phases(events: list[dict]) -> list[str]:
    return [item["phase"] for item in events]


@pytest.fixture(scope="module")
def launched(binder_stack):
    """One launch of a small repository, shared by the tests that inspect it."""
    spec = binder_stack.git_spec("lab/small-repo", REQUIREMENTS)
    return spec, binder_stack.launch(spec)


def test_launch_streams_binderhub_phases_to_ready(launched):
    _spec, events = launched
    seen = phases(events)
    assert seen[-1] == "ready", events[-3:]
    for phase in ("fetching", "building", "built", "launching"):
        assert phase in seen
    assert all("message" in item for item in events)
    ready = events[-1]
    for field in ("url", "token", "image", "repo_url", "binder_ref_url", "binder_launch_host", "binder_request", "binder_persistent_request"):
        assert ready[field], field


def test_persistent_request_is_pinned_to_the_commit(binder_stack, launched):
    _spec, events = launched
    sha = binder_stack.git.head("lab/small-repo")
    assert events[-1]["binder_persistent_request"].endswith(f"/{sha}")
    assert events[-1]["binder_request"].endswith("/HEAD")


def test_session_needs_its_token(launched):
    ready = launched[1][-1]
    assert httpx.get(f"{ready['url']}api/status", timeout=30).status_code == 403
    response = httpx.get(f"{ready['url']}api/contents/", params={"token": ready["token"]}, timeout=30)
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["content"]}
    assert {"requirements.txt", "hello.py"} <= names


def test_kernel_runs_in_the_repository_environment(launched):
    ready = launched[1][-1]
    code = (
        "import os, sys, six, bia_binder.data\n"
        "print(sys.prefix)\n"
        "print(os.getcwd())\n"
        "print(os.environ['BINDER_PERSISTENT_REQUEST'])\n"
    )
    out = asyncio.run(run_cell(ready["url"], ready["token"], code)).splitlines()
    assert out[0].endswith("/env") and ready["image"] in out[0]
    assert out[1] == "/home/jovyan"  # the session's own copy of the repository, at repo2docker's home
    assert out[2] == ready["binder_persistent_request"]


def test_second_launch_of_same_ref_does_not_build(binder_stack, launched):
    spec, first = launched
    events = binder_stack.launch(spec)
    assert phases(events)[-1] == "ready"
    assert "building" not in phases(events) and "fetching" not in phases(events)
    assert events[-1]["image"] == first[-1]["image"]
    assert events[-1]["url"] != first[-1]["url"]  # a new session, not the same one


def test_concurrent_launches_share_one_build(binder_stack):
    spec = binder_stack.git_spec("lab/shared-build", {"requirements.txt": "six\npackaging\n"})
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(binder_stack.launch, [spec] * 3))
    assert all(phases(events)[-1] == "ready" for events in results), [events[-1] for events in results]
    # the two that joined the build waited for it (a third may also wait in the launch queue)
    assert sum("waiting" in phases(events) for events in results) >= 2
    assert len({events[-1]["image"] for events in results}) == 1
    metrics = httpx.get(f"{binder_stack.url}/metrics", timeout=30).text
    assert 'binderhub_build_total{status="success"}' in metrics


def test_failing_install_is_a_clear_failure_and_others_go_on(binder_stack):
    spec = binder_stack.git_spec("lab/broken", {"requirements.txt": "this-package-does-not-exist-bia\n"})
    events = binder_stack.launch(spec)
    assert events[-1]["phase"] == "failed"
    assert "this-package-does-not-exist-bia" in events[-1]["message"]
    assert events[-1]["status_code"] >= 400
    assert httpx.get(f"{binder_stack.url}/health", timeout=30).status_code == 200


def test_launch_cli_prints_the_url(binder_stack, launched):
    import subprocess
    import sys

    spec, _events = launched
    result = subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", "launch", spec, "--url", binder_stack.url],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Open: http://127.0.0.1" in result.stdout and "?token=" in result.stdout


def test_launch_cli_reports_failure(binder_stack):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", "launch", f"git/{quote('file:///etc', safe='')}/HEAD", "--url", binder_stack.url],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")


def test_binderhub_js_client_launches_to_ready(binder_stack, launched):
    """BinderHub's own JavaScript client (npm @jupyterhub/binderhub-client) understands our stream."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    assert node, "node is required (the machine has Node 20)"
    root = Path(__file__).resolve().parents[2]
    spec, _events = launched
    result = subprocess.run(
        [node, str(Path(__file__).with_name("binderhub_client_launch.mjs")), f"{binder_stack.url}/build/", spec],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert events[-1]["phase"] == "ready" and events[-1]["url"].startswith(binder_stack.url)


def test_session_is_sandboxed_away_from_the_service(binder_stack, launched):
    """Own uid; the hub database, cookie secret and other environments are out of reach."""
    from bia_binder.sessions.doctor import guarantee_report

    if not guarantee_report().isolated:
        pytest.skip("this host cannot sandbox sessions (see bia-binder doctor)")
    ready = launched[1][-1]
    data = binder_stack.data_dir
    code = (
        "import os\n"
        "print(os.getuid())\n"
        f"for p in [{str(data / 'jupyterhub.sqlite')!r}, {str(data / 'secrets' / 'jupyterhub_cookie_secret')!r}]:\n"
        "    try:\n"
        "        open(p, 'rb').read(); print('READABLE')\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__)\n"
        f"try:\n    open({str(data / 'envs' / ready['image'] / 'env' / 'pwned')!r}, 'w'); print('WRITABLE')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    out = asyncio.run(run_cell(ready["url"], ready["token"], code)).split()
    assert int(out[0]) != 0
    assert "READABLE" not in out, out
    # a session may write into its environment (pip in a session: its own overlay layer), never into the
    # shared, published environment other sessions use
    assert not (data / "envs" / ready["image"] / "env" / "pwned").exists()


def test_build_runs_sandboxed_as_the_build_uid(binder_stack):
    """The repository's postBuild runs as Sandbox.build_uid and cannot read the service's secrets."""
    from bia_binder.sessions.doctor import guarantee_report
    from bia_binder.sessions.sandbox import Sandbox

    if not guarantee_report().isolated:
        pytest.skip("this host cannot sandbox builds (see bia-binder doctor)")
    secret = binder_stack.data_dir / "secrets" / "jupyterhub_cookie_secret"
    post_build = f"#!/bin/sh\necho build-uid=$(id -u)\ncat {secret} >/dev/null 2>&1 && echo SECRET-READ || echo no-secret\n"
    spec = binder_stack.git_spec("lab/post-build", {"requirements.txt": "six\n", "postBuild": post_build})
    events = binder_stack.launch(spec)
    log = "".join(item.get("message", "") for item in events)
    assert phases(events)[-1] == "ready", events[-1]
    assert f"build-uid={Sandbox().build_uid}" in log
    assert "no-secret" in log and "SECRET-READ" not in log


def test_anonymous_users_are_temporary_group_members(binder_stack, launched):
    """The culler deletes exactly the members of binder-temporary: every anonymous user joins it."""
    from tests.stack import hub_api

    ready = launched[1][-1]
    username = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    group = hub_api(binder_stack, "GET", "groups/binder-temporary").json()
    assert username in group["users"]


def test_anonymous_session_disk_is_limited_and_goes_when_it_stops(binder_stack):
    """A write past the profile's disk_limit fails for that session only; stopping it removes its disk."""
    from bia_binder.sessions.disks import EphemeralDisks
    from tests.stack import hub_api

    if EphemeralDisks.available():
        pytest.skip(f"no disk limits on this host: {EphemeralDisks.available()}")
    ready = binder_stack.launch(binder_stack.git_spec("lab/disk-filler", REQUIREMENTS))[-1]
    username = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    fill = (
        "import errno\n"
        "try:\n"
        "    with open('big', 'wb') as f:\n"
        "        for _ in range(100):\n"
        "            f.write(b'x' * 2**20); f.flush()\n"
        "    print('WROTE-100M')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno])\n"
    )
    assert asyncio.run(run_cell(ready["url"], ready["token"], fill)).strip() == "ENOSPC"
    assert asyncio.run(run_cell(ready["url"], ready["token"], "import os; os.remove('big'); print('alive')")).strip() == "alive"
    home = binder_stack.data_dir / "sessions" / username
    assert os.path.ismount(home)

    hub_api(binder_stack, "DELETE", f"users/{username}/server")
    deadline = time.monotonic() + 60
    while os.path.ismount(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.ismount(home)
    assert not list((binder_stack.data_dir / "sessions" / ".disks" / "images").glob(f"{username}*"))


EXTENSION_REPO = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "hello-ext"\nversion = "0.1"\n\n'
        '[tool.setuptools]\npy-modules = ["hello_ext"]\n\n'
        '[tool.setuptools.data-files]\n"etc/jupyter/jupyter_server_config.d" = ["hello_ext.json"]\n'
    ),
    "hello_ext.json": '{"ServerApp": {"jpserver_extensions": {"hello_ext": true}}}\n',
    "hello_ext.py": (
        "from jupyter_server.base.handlers import APIHandler\n"
        "from jupyter_server.utils import url_path_join\n"
        "import tornado\n\n"
        "class Hello(APIHandler):\n"
        "    @tornado.web.authenticated\n"
        "    def get(self):\n"
        "        self.finish({'hello': 'from the repository'})\n\n"
        "def _jupyter_server_extension_points():\n"
        "    return [{'module': 'hello_ext'}]\n\n"
        "def _load_jupyter_server_extension(app):\n"
        "    app.web_app.add_handlers('.*$', [(url_path_join(app.base_url, 'hello'), Hello)])\n"
    ),
}


def test_server_extension_from_the_repository_loads(binder_stack):
    """The notebook server runs inside the repository's environment (repo2docker semantics)."""
    events = binder_stack.launch(binder_stack.git_spec("lab/extension", EXTENSION_REPO))
    ready = events[-1]
    assert ready["phase"] == "ready", ready
    response = httpx.get(f"{ready['url']}hello", params={"token": ready["token"]}, timeout=30)
    assert response.status_code == 200 and response.json() == {"hello": "from the repository"}
