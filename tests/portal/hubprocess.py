"""A real JupyterHub (with configurable-http-proxy) in a temporary directory, for the portal tests.

Each hub gets free loopback ports, its own database and cookie secret, an admin service token
for the REST API, and the test's extra config lines appended to a generated config file.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from bia_binder.up import free_port

REPO = Path(__file__).resolve().parents[2]
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
START_TIMEOUT = 90  # seconds: the machine is shared, start-up can be slow under load


class HubProcess:
    def __init__(self, workdir: Path, extra_config: str, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.token = secrets.token_hex(16)
        self.log_path = workdir / "jupyterhub.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.config_path = workdir / "jupyterhub_config.py"
        self.config_path.write_text(self._base_config() + "\n" + textwrap.dedent(extra_config))

    def _base_config(self) -> str:
        return textwrap.dedent(
            f"""
            c = get_config()  # noqa
            c.JupyterHub.bind_url = "{self.url}"
            c.JupyterHub.hub_bind_url = "http://127.0.0.1:{self.hub_port}"
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = ["{PROXY}"]
            c.ConfigurableHTTPProxy.pid_file = "{self.workdir}/proxy.pid"
            c.JupyterHub.db_url = "sqlite:///{self.workdir}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{self.workdir}/cookie_secret"
            c.JupyterHub.redirect_to_server = False
            c.JupyterHub.cleanup_servers = True
            c.JupyterHub.services = [{{"name": "portal-test", "api_token": "{self.token}"}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["portal-test"]}}]
            """
        )

    def start(self, wait: bool = True) -> HubProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the proxy and services die with it
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.api_url}/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"jupyterhub did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # SIGTERM lets the hub stop its proxy, services and spawned servers itself.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in the hub's group
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._stop_orphaned_proxy()

    def _stop_orphaned_proxy(self) -> None:
        """A hub that died early leaves its proxy (in a session of its own) running."""
        pid_file = self.workdir / "proxy.pid"
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.proxy_api_port).encode() in cmdline:  # still our proxy, not a reused pid
            os.kill(pid, signal.SIGKILL)
