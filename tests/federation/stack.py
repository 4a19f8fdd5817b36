"""A federation as an operator runs it: several ``bia-binder up`` members (each with its own data dir, on
loopback) and ``bia-binder federation`` in front of them, all subprocesses. Standalone, so the benchmark
uses it too::

    with FederatedStack(members=3) as fed:
        spec = fed.git_spec("lab/repo", {"requirements.txt": "six\\n"})
        events = fed.launch(spec)
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil

from bia_binder.up import free_port
from tests.gitserver import GitServer
from tests.stack import PROJECT_ROOT, BinderStack, read_events

TOKEN = "federation-stack-token"
#: data dirs live in the checkout, not under /tmp: sessions get a /tmp of their own, which would hide
#: an environment published below the host's /tmp; and not in .cache, whose uv cache must be alone there
#: for builds to hardlink from it (EnvBuilder._build_area)
WORK_ROOT = PROJECT_ROOT / ".test-cache" / "federation-tests"


class _AlreadyRunning:
    """Stands in for a member's own git server when it restarts (the federation shares one)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FederatedStack:
    def __init__(self, members: int = 3, gateway_config: str = "", member_config: str = ""):
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="fed-", dir=WORK_ROOT))
        os.chmod(self.root, 0o755)
        self.git = GitServer()
        config = f"c.FederationMember.token = {TOKEN!r}\nc.BinderService.keepalive_interval = 2\n{member_config}"
        self.names = [f"m{i}" for i in range(members)]
        self.members = {name: BinderStack(data_dir=self.root / name, config=config) for name in self.names}
        for stack in self.members.values():
            stack.git = _AlreadyRunning()  # one git server for the whole federation
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateway_config = gateway_config
        self.config_path = self.root / "federation_config.py"
        self.gateway_log = self.root / "federation.log"
        self.gateway: subprocess.Popen | None = None
        self.weights = {name: 1 for name in self.names}

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FederatedStack":
        self.git.start()
        with concurrent.futures.ThreadPoolExecutor(len(self.members)) as pool:
            list(pool.map(self._start_member, self.members.values()))
        self.write_config()
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "bia_binder.cli", "federation", "--config", str(self.config_path), "--port", str(self.port), "--allow-local-repos"],
            stdout=open(self.gateway_log, "ab"), stderr=subprocess.STDOUT, cwd=self.root,
        )  # fmt: skip
        self.wait_for(lambda: all(m["state"] == "up" for m in self.status()["members"]), 60, "every member up at the gateway")
        return self

    @staticmethod
    def _start_member(stack: BinderStack) -> None:
        """Start a member; once more if it exited while starting: on a loaded machine JupyterHub gives up on
        its binder service when that takes more than 30 s to answer, and three hubs start at once here."""
        try:
            stack.start(timeout=300)
        except RuntimeError:
            stack.start(timeout=300)

    def write_config(self) -> None:
        members = [{"name": name, "url": f"{stack.url}/", "weight": self.weights[name], "token": TOKEN} for name, stack in self.members.items()]
        self.config_path.write_text(
            f"c.FederationGateway.members = {members!r}\n"
            "c.HealthMonitor.interval = 1\n"
            "c.HealthMonitor.rise = 3\n"
            "c.LaunchProxy.stall_timeout = 15\n"
            "c.FederationGateway.keepalive_interval = 2\n" + self.gateway_config
        )

    def set_weight(self, name: str, weight: float) -> None:
        """Edit the config and reload it (SIGHUP), as an operator drains a member."""
        self.weights[name] = weight
        self.write_config()
        self.gateway.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.member_status(name)["weight"] == weight, 30, f"{name}'s weight {weight} at the gateway")

    def kill(self, name: str) -> None:
        """kill -9 of the member: its supervisor, hub, proxy, binder service and sessions."""
        root = psutil.Process(self.members[name].proc.pid)
        processes = [root, *root.children(recursive=True)]
        for process in processes:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=30)

    def restart(self, name: str) -> None:
        """The member comes back on its address (its start-up frees what the killed sessions left)."""
        self.members[name].start(timeout=300)

    def stop(self) -> None:
        if self.gateway and self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(15)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
        with concurrent.futures.ThreadPoolExecutor(len(self.members)) as pool:
            list(pool.map(lambda stack: stack.stop(), self.members.values()))
        self.git.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "FederatedStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- looking and launching ---------------------------------------------------------------
    def status(self) -> dict:
        return httpx.get(f"{self.url}/api/federation/status", timeout=10).json()

    def member_status(self, name: str) -> dict:
        return next(m for m in self.status()["members"] if m["name"] == name)

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gateway is not None and self.gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.gateway_log.read_text()[-3000:]}")
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"not in {timeout}s: {what}\n{self.gateway_log.read_text()[-3000:]}")

    def git_spec(self, name: str, files: dict[str, str]) -> str:
        clone_url, _sha = self.git.create_repo(name, files)
        return f"git/{quote(clone_url, safe='')}/HEAD"

    def launch(self, spec: str, url: str | None = None, timeout: float = 600) -> list[dict]:
        return read_events(f"{url or self.url}/build/{spec}", timeout)

    def environments(self, name: str) -> set[str]:
        """Cache keys of the environments member ``name`` holds."""
        envs = self.members[name].data_dir / "envs"
        return {p.name for p in envs.iterdir() if (p / "environment.json").is_file()} if envs.is_dir() else set()

    def log_tails(self) -> str:
        parts = [f"--- gateway\n{self.gateway_log.read_text(errors='replace')[-3000:]}"]
        parts += [f"--- {name}\n{stack.log_tail(30)}" for name, stack in self.members.items()]
        return "\n".join(parts)


__all__ = ["FederatedStack", "TOKEN"]
