"""A logged-in user's first spawn builds its environment inside Spawner.start: JupyterHub's
start_timeout (read after the pre-spawn hook, before start runs) must leave time for the build."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from traitlets.config import Config

from bia_binder.environments.default import environment_key as default_environment_key
from bia_binder.sessions.spawner import BinderSpawner

START_TIMEOUT = 120
BUILD_TIMEOUT = 900


def spawner_for(username: str, tmp_path: Path, hooked: list) -> BinderSpawner:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six\n")
    config = Config()
    config.BinderSpawner.default_environment_requirements = str(requirements)
    config.Spawner.start_timeout = START_TIMEOUT
    config.Spawner.pre_spawn_hook = hooked.append  # the deployer's own hook still runs
    config.EnvBuilder.build_timeout = BUILD_TIMEOUT
    # the spawner only reads the hub user's name here; a full hub User needs a database
    user = SimpleNamespace(name=username, url=f"/user/{username}/")
    return BinderSpawner(
        user=user, config=config, environments_dir=str(tmp_path / "envs"), sessions_dir=str(tmp_path / "sessions")
    )


def publish_fake_environment(spawner: BinderSpawner, requirements: str) -> None:
    key = default_environment_key(spawner.builder, requirements)
    entry = Path(spawner.environments_dir) / key
    entry.mkdir(parents=True)
    (entry / "environment.json").write_text(json.dumps({"key": key}))


async def test_first_spawn_of_the_default_environment_gets_the_build_time(tmp_path):
    hooked: list = []
    spawner = spawner_for("alice", tmp_path, hooked)
    spawner.user_options = {"profile": "", "environment": "default"}
    await spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == START_TIMEOUT + BUILD_TIMEOUT
    assert hooked == [spawner]

    # built now: the next spawn has the configured timeout again, not the raised one
    publish_fake_environment(spawner, "six\n")
    await spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == START_TIMEOUT
    assert len(hooked) == 2


async def test_repository_environments_may_build_anonymous_sessions_never(tmp_path):
    spawner = spawner_for("bob", tmp_path, [])
    spawner.user_options = {"environment": "gh/org/repo/main"}
    await spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == START_TIMEOUT + BUILD_TIMEOUT  # its ref is resolved only in start()

    spawner.user_options = {"colour": "blue"}  # start() refuses it at once: no build time
    await spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == START_TIMEOUT

    (tmp_path / "anon").mkdir()
    anonymous = spawner_for("binder-abc123", tmp_path / "anon", [])
    anonymous.user_options = {"environment": "0123abcd", "token": "t"}  # built by the binder service first
    await anonymous.run_pre_spawn_hook()
    assert anonymous.start_timeout == START_TIMEOUT
