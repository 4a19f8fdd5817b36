"""Per-user ext4 home images: real loop mounts, real ENOSPC, persistence, usage, reclaiming."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bia_binder.portal.homes import DAY, HomeError, HomeManager, home_name, username_from_home_name

MB = 1024 * 1024


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[HomeManager]:
    manager = HomeManager(root=str(tmp_path / "homes"), quota="24M")
    yield manager
    for username in manager.usernames():
        manager.unmount(username)


def write_bytes(path: Path, size: int) -> None:
    chunk = os.urandom(MB)  # random: ext4 cannot compress or dedupe it away
    with open(path, "wb") as f:
        for _ in range(size // MB):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def test_home_names_are_safe_and_reversible() -> None:
    for username in ("alice", "a.b@lifescience-ri.eu", "binder-abc", "..", "../etc", "Élodie smith", "a_b"):
        name = home_name(username)
        assert "/" not in name and name not in (".", "..") and not name.startswith((".", "-"))
        assert username_from_home_name(name) == username
    assert home_name("a_b") != home_name("a_5fb")


def test_default_quota_is_10_gib_and_images_are_sparse(tmp_path: Path) -> None:
    manager = HomeManager(root=str(tmp_path / "homes"))
    assert manager.quota == 10 * 1024**3
    path = manager.ensure_home("bigquota")
    try:
        usage = manager.usage("bigquota")
        assert usage.quota_bytes == 10 * 1024**3
        assert usage.size_bytes > 9 * 1024**3  # minus ext4's own bookkeeping
        assert manager.image_path("bigquota").stat().st_blocks * 512 < 512 * MB
        assert os.path.ismount(manager.mount_point("bigquota")) and path == manager.home_path("bigquota")
    finally:
        manager.unmount("bigquota")


def test_write_past_quota_fails_and_other_users_are_unaffected(homes: HomeManager) -> None:
    alice = homes.ensure_home("alice", uid=1234, gid=1234)
    bob = homes.ensure_home("bob")
    assert alice.stat().st_uid == 1234
    with pytest.raises(OSError) as full:
        write_bytes(alice / "too-big.bin", 40 * MB)
    assert full.value.errno in (errno.ENOSPC, errno.EDQUOT)
    write_bytes(bob / "fits.bin", 8 * MB)  # bob still has all of his space
    assert (bob / "fits.bin").stat().st_size == 8 * MB
    assert homes.usage("alice").used_bytes > homes.usage("bob").used_bytes


def test_data_persists_across_unmount_and_remount(homes: HomeManager) -> None:
    home = homes.ensure_home("carol")
    (home / "notebook.ipynb").write_text('{"cells": []}')
    write_bytes(home / "data.bin", 5 * MB)
    mounted_usage = homes.usage("carol")
    homes.unmount("carol")
    assert not homes.is_mounted("carol") and not (homes.mount_point("carol") / "notebook.ipynb").exists()

    unmounted_usage = homes.usage("carol")  # read from the image's superblock
    assert not unmounted_usage.mounted
    assert 5 * MB <= unmounted_usage.used_bytes < homes.quota
    assert abs(unmounted_usage.used_bytes - mounted_usage.used_bytes) < MB

    home = homes.ensure_home("carol")
    assert (home / "notebook.ipynb").read_text() == '{"cells": []}'
    assert (home / "data.bin").stat().st_size == 5 * MB


def test_year_old_homes_are_listed_then_archived_then_deleted(homes: HomeManager) -> None:
    for username in ("old", "recent", "busy"):
        home = homes.ensure_home(username)
        (home / "result.txt").write_text(username)
    homes.unmount("old")
    homes.unmount("recent")
    year_ago = time.time() - 400 * DAY
    for username in ("old", "busy"):
        os.utime(homes.image_path(username), (year_ago, year_ago))

    plan = homes.reclaim_plan()
    # "busy" is as old, but mounted (in use): never reclaimed under a running session
    assert [(a.username, a.action) for a in plan] == [("old", "archive")]
    assert homes.reclaim(plan) == plan
    assert not homes.image_path("old").exists() and homes.archived_path("old").exists()
    assert homes.usernames() == ["busy", "old", "recent"]

    later = time.time() + 366 * DAY
    assert [(a.username, a.action) for a in homes.reclaim_plan(now=later)] == [("old", "delete"), ("recent", "archive")]
    homes.reclaim([a for a in homes.reclaim_plan(now=later) if a.action == "delete"])
    assert not homes.archived_path("old").exists()
    assert homes.usage("old") is None


def test_archived_home_comes_back_on_login(homes: HomeManager) -> None:
    (homes.ensure_home("dora") / "thesis.txt").write_text("chapter 1")
    homes.unmount("dora")
    year_ago = time.time() - 400 * DAY
    os.utime(homes.image_path("dora"), (year_ago, year_ago))
    homes.reclaim(homes.reclaim_plan())
    assert (homes.ensure_home("dora") / "thesis.txt").read_text() == "chapter 1"


def test_raised_quota_grows_a_home_and_keeps_its_data(homes: HomeManager) -> None:
    (homes.ensure_home("gina") / "keep.txt").write_text("kept")
    small = homes.usage("gina").size_bytes
    homes.unmount("gina")
    homes.user_quotas = {"gina": "48M"}
    home = homes.ensure_home("gina")
    assert homes.usage("gina").quota_bytes == 48 * MB and homes.usage("gina").size_bytes > small + 20 * MB
    assert (home / "keep.txt").read_text() == "kept"
    write_bytes(home / "more.bin", 30 * MB)  # would not have fitted in 24M


def test_delete_home_removes_everything(homes: HomeManager) -> None:
    homes.ensure_home("erin")
    homes.delete_home("erin")
    assert homes.usernames() == [] and not homes.mount_point("erin").exists()


def test_tools_failing_give_one_line_errors(homes: HomeManager, tmp_path: Path) -> None:
    homes.images_dir.mkdir(parents=True)
    with open(homes.image_path("frank"), "wb") as f:
        f.write(b"not a filesystem")
        f.truncate(homes.quota)
    with pytest.raises(HomeError, match="mounting the disk of frank: mount failed") as error:
        homes.ensure_home("frank")
    assert "\n" not in str(error.value)
