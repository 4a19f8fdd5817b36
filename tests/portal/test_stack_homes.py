"""Which home a logged-in session gets: the quota-enforced image, or a plain directory (and why)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from bia_binder.sessions.spawner import BinderSpawner

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop-mounting homes needs root")


def spawner_for(username: str, root: Path, **home_config: str) -> BinderSpawner:
    config = Config()
    config.HomeManager.root = str(root)
    config.HomeManager.quota = "16M"
    for name, value in home_config.items():
        config.HomeManager[name] = value
    # the spawner only reads the hub user's name here; a full hub User needs a database
    user = SimpleNamespace(name=username, url=f"/user/{username}/")
    return BinderSpawner(user=user, config=config, sessions_dir=str(root / "sessions"))


@needs_root
async def test_home_is_a_mounted_image_and_is_released_at_stop(tmp_path):
    spawner = spawner_for("erin", tmp_path)
    home = spawner.persistent_home()
    try:
        assert os.path.ismount(home) or os.path.ismount(home.parent)  # the mount, or its encrypted home/
        assert os.statvfs(home).f_blocks * os.statvfs(home).f_frsize <= 16 * 1024**2
        spawner.home_dir = str(home)
        await spawner.release_home()
        assert not os.path.ismount(home) and not os.path.ismount(home.parent) and spawner.home_dir == ""
    finally:
        for mounted in (home, home.parent):
            if os.path.ismount(mounted):
                subprocess.run(["umount", str(mounted)], check=False)


def test_falls_back_to_a_plain_directory_and_says_why(tmp_path, caplog):
    spawner = spawner_for("dave@example.org", tmp_path, mount_options="loop,no-such-mount-option")
    with caplog.at_level(logging.WARNING):
        home = spawner.persistent_home()
    assert home.is_dir() and not os.path.ismount(home)
    assert home.is_relative_to(tmp_path / "plain")
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "plain directory without a quota" in warning and "dave@example.org" in warning
    # the reason: not root, or the failed mount
    assert ("not run as root" in warning) if os.geteuid() else ("mount" in warning)
