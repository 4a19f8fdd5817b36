"""Encrypted homes on real loop-mounted ext4 images: ciphertext at rest, readable only while unlocked,
keys wrapped by the master key (rotation, a wrong master key, a key moved to another user)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from bia_binder.portal.encryption import (
    EncryptionError,
    HomeEncryption,
    host_support,
    unwrap_key,
    wrap_key,
)
from bia_binder.portal.homes import HomeManager

needs_encryption = pytest.mark.skipif(host_support() is not None, reason=f"home encryption: {host_support()}")

SECRET_NAME = "lab-notebook-patient-cohort.txt"
SECRET_TEXT = "the-plain-text-result-0xC0FFEE"


def homes(root: Path, enabled: str = "auto", quota: str = "32M") -> HomeManager:
    config = Config()
    config.HomeManager.root = str(root)
    config.HomeManager.quota = quota
    config.HomeEncryption.enabled = enabled
    config.HomeEncryption.master_key_file = str(root.parent / "secrets" / "home-master.key")
    return HomeManager(config=config)


def image_bytes(manager: HomeManager, username: str) -> bytes:
    return manager.image_path(username).read_bytes()


@pytest.fixture
def manager(tmp_path):
    manager = homes(tmp_path / "homes")
    yield manager
    for name in manager.usernames():
        subprocess.run(["umount", "-l", str(manager.mount_point(name))], capture_output=True, check=False)


@needs_encryption
def test_a_stopped_home_is_ciphertext_on_disk_and_opens_again(manager):
    home = manager.ensure_home("alice", uid=20001, gid=20001)
    assert home == manager.mount_point("alice") / "home" and os.stat(home).st_uid == 20001
    (home / SECRET_NAME).write_text(SECRET_TEXT)
    assert os.listdir(home) == [SECRET_NAME]  # unlocked: plain names and contents
    manager.unmount("alice")

    raw = image_bytes(manager, "alice")
    assert SECRET_NAME.encode() not in raw and SECRET_TEXT.encode() not in raw

    # mounted without its key (what anyone with the image can do): names are scrambled, contents refused
    mount_point = manager.mount_point("alice")
    subprocess.run(["mount", "-o", "loop,ro", str(manager.image_path("alice")), str(mount_point)], check=True)
    try:
        names = os.listdir(mount_point / "home")
        assert len(names) == 1 and names[0] != SECRET_NAME
        with pytest.raises(OSError) as refused:
            (mount_point / "home" / names[0]).read_text()
        assert refused.value.errno == errno.ENOKEY
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)

    home = manager.ensure_home("alice")
    assert (home / SECRET_NAME).read_text() == SECRET_TEXT


@needs_encryption
def test_plain_images_show_their_text_so_the_scan_above_would_catch_a_leak(tmp_path):
    """The raw-bytes check is meaningful: without encryption the same name and text are in the image."""
    manager = homes(tmp_path / "homes", enabled="no")
    home = manager.ensure_home("bob")
    try:
        assert home == manager.mount_point("bob")
        (home / SECRET_NAME).write_text(SECRET_TEXT)
    finally:
        manager.unmount("bob")
    raw = image_bytes(manager, "bob")
    assert SECRET_NAME.encode() in raw and SECRET_TEXT.encode() in raw


@needs_encryption
def test_the_quota_still_holds_in_an_encrypted_home(manager):
    home = manager.ensure_home("carol")
    with pytest.raises(OSError) as full:
        with open(home / "big", "wb") as f:
            for _ in range(64):
                f.write(os.urandom(1024 * 1024))
                f.flush()
                os.fsync(f.fileno())
    assert full.value.errno == errno.ENOSPC
    (home / "big").unlink()
    manager.unmount("carol")


@needs_encryption
def test_keys_are_kept_only_wrapped_and_only_for_their_user(manager):
    manager.ensure_home("dave")
    manager.ensure_home("erin")
    manager.unmount("dave")
    manager.unmount("erin")
    keys = Path(manager.root) / "keys"
    assert sorted(p.name for p in keys.iterdir()) == ["dave.key", "erin.key"]
    assert oct(keys.stat().st_mode & 0o777) == "0o700"
    master = manager.encryption.master_key()
    dave_key = unwrap_key(master, "dave", json.loads((keys / "dave.key").read_text()))
    raw = image_bytes(manager, "dave")
    assert dave_key not in raw and dave_key[:16] not in raw and master not in raw  # no key next to the data
    # erin's wrapped key copied over dave's does not open as dave's (the name is bound into the wrapping)
    (keys / "dave.key").write_text((keys / "erin.key").read_text())
    with pytest.raises(EncryptionError, match="does not open"):
        manager.ensure_home("dave")
    assert not manager.is_mounted("dave")


@needs_encryption
def test_a_wrong_master_key_opens_nothing(manager, monkeypatch):
    manager.ensure_home("frank")
    manager.unmount("frank")
    monkeypatch.setenv("BIA_BINDER_HOME_MASTER_KEY", os.urandom(32).hex())
    with pytest.raises(EncryptionError, match="does not open with this master key"):
        manager.ensure_home("frank")
    assert not manager.is_mounted("frank")


@needs_encryption
def test_rotating_the_master_key_keeps_every_home_readable(manager, monkeypatch):
    monkeypatch.delenv("BIA_BINDER_HOME_MASTER_KEY")  # the key in a file, made on first use
    home = manager.ensure_home("gina")
    (home / "notes").write_text("before rotation")
    manager.unmount("gina")
    key_file = Path(manager.encryption.master_key_file)
    old_key = key_file.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", "users", "rotate-master-key", "--homes-root", manager.root,
         "--master-key-file", str(key_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Re-wrapped 1 home key(s)" in done.stdout
    assert key_file.read_text() != old_key and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert (manager.ensure_home("gina") / "notes").read_text() == "before rotation"
    manager.unmount("gina")
    # the old key no longer opens the re-wrapped key
    wrapped = json.loads((Path(manager.root) / "keys" / "gina.key").read_text())
    with pytest.raises(EncryptionError):
        unwrap_key(bytes.fromhex(old_key), "gina", wrapped)


def test_wrapping_binds_the_user_name():
    master = os.urandom(32)
    wrapped = wrap_key(master, "alice", b"k" * 64)
    assert unwrap_key(master, "alice", wrapped) == b"k" * 64
    with pytest.raises(EncryptionError):
        unwrap_key(master, "mallory", wrapped)


def test_master_key_readable_by_others_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("BIA_BINDER_HOME_MASTER_KEY")
    key_file = tmp_path / "home-master.key"
    HomeEncryption.write_master_key(key_file, os.urandom(32))
    key_file.chmod(0o644)
    with pytest.raises(EncryptionError, match="chmod 600"):
        HomeEncryption(master_key_file=str(key_file)).master_key()


def test_required_encryption_without_support_is_one_line(monkeypatch):
    import bia_binder.portal.encryption as encryption

    monkeypatch.setattr(encryption, "host_support", lambda: "this kernel's ext4 has no encryption support")
    with pytest.raises(EncryptionError, match="required") as refused:
        HomeEncryption(enabled="yes").active()
    assert "\n" not in str(refused.value)
    assert HomeEncryption(enabled="auto").active() is False
    assert "NOT encrypted" in HomeEncryption(enabled="auto").status_line()


@needs_encryption
def test_deleting_a_home_deletes_its_key(manager):
    manager.ensure_home("hana")
    key = manager.encryption.key_path(Path(manager.root), "hana")
    assert key.is_file()
    manager.delete_home("hana")
    assert not key.exists() and not manager.image_path("hana").exists()
