"""The whole service as a user runs it: ``bia-binder up`` in a subprocess, plus a real git server.

Standalone (no pytest needed) so benchmarks use the same code::

    with BinderStack() as stack:
        spec = stack.git_spec("org/repo", {"requirements.txt": "six\\n"})
        events = stack.launch(spec)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import httpx

from tests.gitserver import GitServer
from bia_binder.up import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class BinderStack:
    def __init__(
        self,
        data_dir: str | Path | None = None,
        extra_args: list[str] | None = None,
        config: str = "",
        env: dict[str, str] | None = None,
    ):
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="bia-stack-")
        self.data_dir = Path(data_dir or self._tmp.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args if extra_args is not None else ["--allow-local-repos", "--unsafe-no-sandbox"]
        self.config = config
        #: extra environment variables of `bia-binder up` (e.g. BIA_BINDER_DEV_PASSWORD)
        self.env = env or {}
        #: token of a test-only hub service with admin scopes (tests inspect users, groups, servers)
        self.admin_token = secrets.token_hex(16)
        self.git = GitServer()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "up.log"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> "BinderStack":
        self.git.start()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "bia_binder.cli", "up", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra_args]
        config_path = self.data_dir / "bia_binder_config.py"
        # every test launch comes from 127.0.0.1: a suite (fuzzing included) would hit the per-client launch rate
        # limit; a stack's own config (after this line) can set one back
        unthrottled = "c.RateLimiter.limit = 0\n"
        config_path.write_text(self._admin_service_config() + unthrottled + self.config)
        args += ["--config", str(config_path)]
        env = {**os.environ, "PATH": f"{PROJECT_ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}", **self.env}
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=env, cwd=self.data_dir)
        self.wait_healthy(timeout)
        return self

    def _admin_service_config(self) -> str:
        return (
            f"c.JupyterHub.services.append({{'name': 'test-admin', 'api_token': {self.admin_token!r}}})\n"
            "c.JupyterHub.load_roles.append({'name': 'test-admin', 'scopes': ['admin-ui', 'admin:users', "
            "'admin:servers', 'admin:groups', 'list:users', 'read:users', 'tokens'], 'services': ['test-admin']})\n"
            # most stack tests launch no study: building its environment at start would only cost them time
            "c.StudyEnvironment.prebuild = False\n"
        )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bia-binder up exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"bia-binder up not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.git.stop()
        self.unmount_leftover_homes()
        if self._tmp:
            self._tmp.cleanup()

    def unmount_leftover_homes(self) -> None:
        """Home images a killed hub left mounted (logged-in users' homes) would pin the data dir."""
        data_dir = str(self.data_dir.resolve())
        with open("/proc/self/mounts") as mounts:
            targets = [line.split()[1] for line in mounts if line.split()[1].startswith(data_dir + "/")]
        for target in sorted(targets, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)

    def __enter__(self) -> "BinderStack":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- repositories and launches -----------------------------------------------------------
    def git_spec(self, name: str, files: dict[str, str | bytes], ref: str = "HEAD") -> str:
        """Create a repository on the git server; return its BinderHub spec ``git/<quoted url>/<ref>``."""
        clone_url, _sha = self.git.create_repo(name, files)
        return f"git/{quote(clone_url, safe='')}/{ref}"

    def launch(self, spec: str, timeout: float = 600) -> list[dict]:
        """Run one launch to its end; return every event."""
        return read_events(f"{self.url}/build/{spec}", timeout)


def read_events(url: str, timeout: float = 600) -> list[dict]:
    events = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=httpx.Timeout(30, read=timeout)) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                item = json.loads(line[5:])
                events.append(item)
                if item.get("phase") in ("ready", "failed"):
                    break
    return events


def hub_api(stack: BinderStack, method: str, path: str, **kwargs) -> httpx.Response:
    """Call the hub's REST API with the stack's test-admin token."""
    return httpx.request(method, f"{stack.url}/hub/api/{path}", headers={"Authorization": f"token {stack.admin_token}"}, timeout=30, **kwargs)
