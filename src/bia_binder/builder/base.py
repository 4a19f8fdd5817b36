"""The builder interface: a checked-out repository in, a cached runnable environment out.

Layout of one cache entry, published atomically (built under a temporary name, then renamed):

    <cache_dir>/<key>/
        env/            the environment: env/bin/python, env/bin/jupyter, ...
        repo/           the repository content as fetched (read-only template for sessions)
        environment.json  metadata: key, buildpack, created, start script, env vars
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def cache_key(*parts: str) -> str:
    """Content address of an environment: provider + resolved ref + builder version + config hash."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass
class Environment:
    """A built, published environment (read-only)."""

    key: str
    root: Path
    buildpack: str = "python"
    #: environment variables a session of this environment gets (PATH handled by the spawner)
    env: dict[str, str] = field(default_factory=dict)
    #: host directories holding the environment's base interpreter, which sandboxes must show read-only
    #: (uv's managed Pythons; empty for the host's own interpreters, which /usr shows)
    interpreter_dirs: list[str] = field(default_factory=list)

    @property
    def host_paths(self) -> list[Path]:
        """What a sandboxed session of this environment must see of the host besides the system: the entry
        itself and its interpreter's directories."""
        return [self.root, *(Path(d) for d in self.interpreter_dirs)]

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def repo_dir(self) -> Path:
        return self.root / "repo"

    @property
    def bin_dir(self) -> Path:
        return self.env_dir / "bin"

    @property
    def start_script(self) -> Path | None:
        """The repository's ``start`` file (repo2docker), if any: wraps the session command.

        Like every configuration file it is read from ``binder/`` or ``.binder/`` when that folder exists.
        """
        config_dir = next(
            (self.repo_dir / d for d in ("binder", ".binder") if (self.repo_dir / d).is_dir()), self.repo_dir
        )
        start = config_dir / "start"
        return start if start.is_file() else None

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as a session runs it: through ``start`` when the repository has one."""
        start = self.start_script
        if not start:
            return list(argv)
        # as repo2docker: the script's own interpreter (#!/bin/bash...) when it names one, else sh
        runs_itself = os.access(start, os.X_OK) and start.read_bytes()[:2] == b"#!"
        return [str(start), *argv] if runs_itself else ["/bin/sh", str(start), *argv]

    def session_environ(self, base: Mapping[str, str], repo_dir: str | None = None) -> dict[str, str]:
        """The environment variables of a session: ``base`` plus this environment's and repo2docker's runtime
        contract: ``REPO_DIR`` (default: ``base``'s HOME, where the repository's copy is), then on PATH
        ``~/.local/bin`` and ``$REPO_DIR/.local/bin`` before the environment's ``bin/``.

        ``NPM_CONFIG_PREFIX`` is the environment, so ``npm install --global`` lands on PATH.
        """
        environ = {key: value for key, value in base.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        environ.update(self.env)
        home = base.get("HOME") or os.path.expanduser("~")
        repo_dir = repo_dir or home
        environ["REPO_DIR"] = repo_dir
        environ["VIRTUAL_ENV"] = str(self.env_dir)
        environ["NPM_CONFIG_PREFIX"] = str(self.env_dir)
        user_bins = [os.path.join(home, ".local", "bin"), os.path.join(repo_dir, ".local", "bin")]
        environ["PATH"] = os.pathsep.join(
            [*dict.fromkeys(user_bins), str(self.bin_dir), base.get("PATH") or os.defpath]
        )
        return environ

    @classmethod
    def load(cls, root: Path) -> Environment:
        meta = json.loads((root / "environment.json").read_text())
        return cls(
            key=meta["key"],
            root=root,
            buildpack=meta.get("buildpack", "python"),
            env=meta.get("env", {}),
            interpreter_dirs=meta.get("interpreter_dirs", []),
        )


LogFn = Callable[[str], None]
