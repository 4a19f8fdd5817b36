"""A sandboxed Jupyter server shows its profile's limits to the user (jupyter-resource-usage)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .conftest import HOST_PYTHON, needs_root, small_profile
from bia_binder.up import free_port

pytestmark = [needs_root, pytest.mark.slow]


@pytest.fixture(scope="module")
def server_env():
    """jupyter_server + jupyter-resource-usage on the host's Python, readable by session uids."""
    root = Path(tempfile.mkdtemp(prefix="bia-sandbox-env-", dir="/tmp"))
    root.chmod(0o755)
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (it comes with `make install`)"
    subprocess.run([uv, "venv", "-q", "--python", HOST_PYTHON, str(root / "env")], check=True, timeout=300)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(root / "env" / "bin" / "python"),
            "jupyter_server",
            "jupyter-resource-usage",
        ],
        check=True,
        timeout=600,
    )
    yield root / "env"
    shutil.rmtree(root, ignore_errors=True)


def test_limits_are_shown_by_jupyter_resource_usage(sandboxes, server_env):
    profile = small_profile(mem_limit=512 * 2**20, cpu_limit=1.5, pids_limit=256)
    session = sandboxes.sandbox().prepare("viewer", sandboxes.layout.home("viewer"), profile, readonly=[server_env])
    sandboxes.sessions.append(session)
    port = free_port()
    session.forward(port)  # its own network namespace: the host reaches it through the forwarded port
    argv = session.wrap(
        [str(server_env / "bin" / "jupyter"), "server", "--no-browser", f"--ip={session.listen_address}", f"--port={port}"]
    )
    env = session.environ({"PATH": f"{server_env}/bin:/usr/bin:/bin", "JUPYTER_TOKEN": "t"})
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sandboxes.processes.append(server)

    metrics = None
    deadline = time.monotonic() + 180
    while metrics is None and time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited: {server.stderr.read()[-2000:]}"
        try:
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/metrics/v1", headers={"Authorization": "token t"}, timeout=5
            )
            metrics = answer.json() if answer.status_code == 200 else None
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    assert metrics is not None, "jupyter-resource-usage did not answer"
    assert metrics["limits"]["memory"]["rss"] == 512 * 2**20
    assert 0 < metrics["rss"] < 512 * 2**20  # the server's own memory, measured inside the sandbox
