"""The cache on its own: atomic publication, leftovers of dead builders, pins, LRU eviction, disk accounting."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bia_binder.builder.cache import EnvCache, own_disk_usage


def fake_build(cache: EnvCache, key: str, payload_bytes: int = 0) -> Path:
    """A finished build directory as the builder leaves it (metadata written last)."""
    build_dir = cache.new_build_dir(key)
    (build_dir / "env" / "bin").mkdir(parents=True)
    (build_dir / "repo").mkdir()
    (build_dir / "env" / "payload").write_bytes(os.urandom(payload_bytes))
    (build_dir / "environment.json").write_text(json.dumps({"key": key, "buildpack": "python"}))
    return build_dir


def test_an_entry_appears_only_when_published(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    build_dir = fake_build(cache, "k1")
    assert cache.lookup("k1") is None and cache.keys() == []
    env = cache.publish(build_dir, "k1")
    assert env.root == tmp_path / "k1" and not build_dir.exists()
    assert cache.lookup("k1").key == "k1"
    assert oct((tmp_path / "k1").stat().st_mode & 0o777) == oct(0o755), "sessions run as other users"


def test_publishing_a_key_twice_keeps_the_first(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    cache.publish(fake_build(cache, "k1"), "k1")
    (tmp_path / "k1" / "marker").touch()
    second = fake_build(cache, "k1")
    env = cache.publish(second, "k1")
    assert (env.root / "marker").exists() and not second.exists()


def test_leftovers_of_dead_builders_are_removed(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cache.tmp_dir / f"k1.{dead.pid}.abcdefgh"
    stale.mkdir()
    running = fake_build(cache, "k2")  # this process's own build is alive
    assert cache.remove_stale_builds() == [stale]
    assert not stale.exists() and running.exists()


def test_pins_survive_a_restart_and_block_eviction(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    for i, key in enumerate(["old", "pinned", "new"]):
        cache.publish(fake_build(cache, key, payload_bytes=100_000), key)
        os.utime(tmp_path / key / "last-used", (1000 + i, 1000 + i))
    cache.pin("pinned", "binder-abc/session 1")
    restarted = EnvCache(tmp_path)
    assert restarted.pinned_by("pinned") == ["binder-abc_session_1"]

    removed = restarted.evict(budget_bytes=0)
    assert removed == ["old", "new"], "least recently used first, never the pinned one"
    assert restarted.keys() == ["pinned"]

    restarted.unpin("pinned", "binder-abc/session 1")
    assert restarted.evict(budget_bytes=0) == ["pinned"]
    assert not (tmp_path / ".pins" / "pinned").exists()


def test_eviction_stops_once_within_budget(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    for i, key in enumerate(["a", "b", "c"]):
        cache.publish(fake_build(cache, key, payload_bytes=1_000_000), key)
        os.utime(tmp_path / key / "last-used", (1000 + i, 1000 + i))
    one_entry = cache.entry("c").own_bytes
    assert cache.evict(budget_bytes=int(one_entry * 2.5)) == ["a"]
    assert cache.keys() == ["b", "c"]


def test_lookup_marks_an_entry_recently_used(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    cache.publish(fake_build(cache, "a"), "a")
    os.utime(tmp_path / "a" / "last-used", (1000, 1000))
    cache.lookup("a")
    assert cache.entry("a").last_used > 1000


def test_own_disk_usage_leaves_out_hardlinked_files(tmp_path: Path) -> None:
    shared = tmp_path / "uv-cache-file"
    shared.write_bytes(os.urandom(200_000))
    entry = tmp_path / "entry"
    entry.mkdir()
    os.link(shared, entry / "linked")
    (entry / "own").write_bytes(os.urandom(50_000))
    usage = own_disk_usage(entry)
    assert 50_000 <= usage < 200_000


def test_a_pin_holder_must_have_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EnvCache(tmp_path).pin("k", "///")
