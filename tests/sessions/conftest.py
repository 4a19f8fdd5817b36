"""Fixtures for sandbox tests: a throw-away host layout (hub files, environment cache, sessions root)
and a Sandbox with its own cgroup parent, so parallel runs and the real service never collide."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bia_binder.sessions.profiles import ResourceProfile
from bia_binder.sessions.sandbox import Sandbox, Session

#: the host's Python: world-readable (the venv's interpreter may live below a private /root)
HOST_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"

#: uids of this test run: outside the service's default range, and apart from a concurrent run's
#: (whose registry is another file), since a session's cleanup ends every process of its uid
TEST_UIDS = (30000 + (os.getpid() % 2000) * 16, 30000 + (os.getpid() % 2000) * 16 + 15)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="session isolation needs root (uid switch, cgroups)")


@dataclass
class Layout:
    root: Path
    hub_dir: Path
    cache_dir: Path
    env_root: Path
    sessions_dir: Path

    def home(self, name: str) -> Path:
        home = self.sessions_dir / name
        home.mkdir()
        (home / "notebook.ipynb").write_text("{}")
        return home


@pytest.fixture
def layout():
    root = Path(tempfile.mkdtemp(prefix="bia-sandbox-", dir="/tmp"))
    root.chmod(0o755)  # bind sources must be searchable by session uids
    hub_dir = root / "hub"
    hub_dir.mkdir()
    # deliberately world-readable: only the sandbox's hiding protects them in this test layout
    (hub_dir / "jupyterhub.sqlite").write_text("hub database")
    (hub_dir / "jupyterhub_cookie_secret").write_text("cookie secret")
    cache_dir = root / "envs"
    env_root = cache_dir / "abc123"
    (env_root / "env" / "bin").mkdir(parents=True)
    (env_root / "environment.json").write_text('{"key": "abc123"}')
    cache_dir.chmod(0o777)  # even a world-writable cache must be read-only inside
    sessions_dir = root / "sessions"
    sessions_dir.mkdir()
    yield Layout(root, hub_dir, cache_dir, env_root, sessions_dir)
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class SandboxFactory:
    layout: Layout
    sessions: list[Session] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    parent: str = f"bia-binder-test-{os.getpid()}"
    sandboxes: list[Sandbox] = field(default_factory=list)

    def sandbox(self, **traits) -> Sandbox:
        traits.setdefault(
            "hidden_paths", [str(self.layout.hub_dir), str(self.layout.cache_dir), str(self.layout.sessions_dir)]
        )
        traits.setdefault("state_dir", str(self.layout.root / "state"))
        sandbox = Sandbox(
            cgroup_parent=self.parent,
            stop_grace=2.0,
            uid_range=TEST_UIDS,
            **traits,
        )
        self.sandboxes.append(sandbox)
        return sandbox

    def session(
        self,
        name: str,
        profile: ResourceProfile,
        sandbox: Sandbox | None = None,
        anonymous: bool = True,
        disk_tmp: bool = False,
    ) -> Session:
        sandbox = sandbox or self.sandbox()
        home = self.layout.home(name)
        tmp = None
        if disk_tmp:  # as an anonymous session's disk gives it: a directory below its home
            tmp = home / ".tmp"
            tmp.mkdir()
        session = sandbox.prepare(
            name, home, profile, readonly=[self.layout.env_root], anonymous=anonymous, tmp=tmp
        )
        self.sessions.append(session)
        return session

    def start(self, session: Session, code: str, **popen) -> subprocess.Popen:
        """Run Python ``code`` as the session, the way the spawner will."""
        argv = session.wrap([HOST_PYTHON, "-u", "-c", code])
        env = session.environ({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        process = subprocess.Popen(argv, env=env, text=True, **popen)
        self.processes.append(process)
        return process

    def run(self, session: Session, code: str, timeout: float = 120) -> str:
        process = self.start(session, code)
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"session code failed ({process.returncode}): {err}"
        return out

    def close(self) -> None:
        for session in self.sessions:
            session.cleanup()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
        for sandbox in self.sandboxes:
            for hierarchy in sandbox.cgroup_layout.hierarchies:
                parent = hierarchy.mount / self.parent
                if parent.exists():
                    parent.rmdir()


@pytest.fixture
def sandboxes(layout):
    factory = SandboxFactory(layout)
    yield factory
    factory.close()


def small_profile(**overrides) -> ResourceProfile:
    values = dict(slug="test", display_name="test", mem_limit=256 * 2**20, cpu_limit=1.0, pids_limit=64)
    values.update(overrides)
    return ResourceProfile(**values)
