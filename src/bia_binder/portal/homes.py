"""Persistent homes for logged-in users: one sparse ext4 image per user, loop-mounted
(:class:`bia_binder.sessions.disks.LoopDisks`).

The filesystem is the quota: a write past the image's size fails with ``ENOSPC`` for that user
only. Data lives in the image, so it
survives session restarts, culls, unmounts and hub restarts.

Layout under :attr:`HomeManager.root` (default ``/var/lib/bia-binder/homes``)::

    images/<name>.img      the user's filesystem (sparse: uses only what is written)
    mnt/<name>/            where it is mounted while in use
    mnt/<name>/home/       the home itself in an encrypted image (:mod:`bia_binder.portal.encryption`);
                           a plain image made before encryption was on is the home at its top
    keys/<name>.key        the user's home key, wrapped with the service master key
    archive/<name>.img     homes untouched for ``archive_after_days``, kept ``delete_after_days`` more

``<name>`` is the JupyterHub user name, escaped (:func:`home_name`) to be a safe file name.
"Last used" is the image's modification time, which :meth:`HomeManager.ensure_home` and
:meth:`HomeManager.unmount` set, so an idle home's age is exact even if nothing was written.

Used by the spawner (every call needs root: it runs ``mkfs.ext4``, ``mount``, ``umount``;
the calls block for up to seconds, so call them from async code with ``asyncio.to_thread``)::

    homes = HomeManager(parent=self)            # configured from c.HomeManager.*
    path = homes.ensure_home(user.name, uid=uid, gid=gid)   # mounted, quota-enforced
    homes.usage(user.name)                      # HomeUsage(used_bytes, size_bytes, ...)
    homes.unmount(user.name)                    # after the session stopped: locks, then unmounts

and by operators (``bia-binder users``): :meth:`HomeManager.reclaim_plan` lists what is due for
archiving or deletion; :meth:`HomeManager.reclaim` does it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from jupyterhub.traitlets import ByteSpecification
from traitlets import Dict, Integer, Unicode

from ..sessions.disks import IMAGE_SUFFIX, DiskError, DiskUsage, LoopDisks, disk_name, owner_from_disk_name
from .encryption import HomeEncryption

DAY = 24 * 3600
#: at the top of an encrypted image (plain, like lost+found): the home is the ``home/`` directory beside it
ENCRYPTED_MARKER = ".bia-binder-encrypted"
ENCRYPTED_HOME = "home"

#: the names this module has always used (a home is a disk of a logged-in user)
HomeError = DiskError
HomeUsage = DiskUsage
home_name = disk_name
username_from_home_name = owner_from_disk_name


@dataclass(frozen=True)
class ReclaimAction:
    username: str
    action: str  # "archive" or "delete"
    path: Path
    last_used: float


class HomeManager(LoopDisks):
    """Creates, mounts, measures, archives and deletes per-user home filesystems."""

    root = Unicode(
        "/var/lib/bia-binder/homes",
        help="Directory holding the home images, their mount points and the archive.",
    ).tag(config=True)

    quota = ByteSpecification(
        10 * 1024**3,
        help="""Size of each home (the hard quota), e.g. '10G', '500M' or bytes.

        Raising it grows existing homes when next mounted; homes are never shrunk.""",
    ).tag(config=True)

    user_quotas = Dict(
        value_trait=ByteSpecification(),
        help="Per-user quotas overriding `quota`, by hub user name, e.g. {'u-3f2a...': '50G'} "
        "(an LS Login user's name: python -m bia_binder.portal.auth <sub>).",
    ).tag(config=True)

    archive_after_days = Integer(
        365,
        help="Homes not used for this many days are archived (moved out of use) by reclaim().",
    ).tag(config=True)

    delete_after_days = Integer(
        90,
        help="Archived homes are deleted this many days after archiving by reclaim().",
    ).tag(config=True)

    @property
    def archive_dir(self) -> Path:
        return Path(self.root) / "archive"

    def archived_path(self, username: str) -> Path:
        return self.archive_dir / f"{disk_name(username)}{IMAGE_SUFFIX}"

    def ensure_home(self, username: str, uid: int | None = None, gid: int | None = None) -> Path:
        """The user's home, created if new, mounted if not yet: returns its mount point.

        ``uid``/``gid`` own the home's top directory (the session's user); a home archived by
        :meth:`reclaim` is brought back first.
        """
        with self._locked(username):
            return self._ensure_home_locked(username, uid, gid)

    def _ensure_home_locked(self, username: str, uid: int | None, gid: int | None) -> Path:
        image = self.image_path(username)
        if not image.exists() and self.archived_path(username).exists():
            self.log.info("Restoring archived home of %s", username)
            os.replace(self.archived_path(username), image)
        new = not image.exists()
        self._encrypt_new = new and self.encryption.active()
        mount_point = self._mount_locked(username, None if self._encrypt_new or self.is_encrypted(username) else uid, gid)
        if new and self._encrypt_new:
            (mount_point / ENCRYPTED_MARKER).write_text("this filesystem holds an encrypted home (bia-binder)\n")
        if not self.is_encrypted(username):
            return mount_point
        home = mount_point / ENCRYPTED_HOME
        try:
            self.encryption.unlock(Path(self.root), username, mount_point, home)
        except DiskError:
            self.unmount(username)
            raise
        if uid is not None:
            os.chown(home, uid, gid if gid is not None else uid)
        return home

    _encrypt_new = False

    @property
    def encryption(self) -> HomeEncryption:
        return HomeEncryption(parent=self)

    def mkfs_features(self, owner: str) -> list[str]:
        return ["encrypt"] if self._encrypt_new else []

    def is_encrypted(self, username: str) -> bool:
        """Whether the (mounted) home of ``username`` is an encrypted one."""
        return (self.mount_point(username) / ENCRYPTED_MARKER).exists()

    def home_path(self, username: str) -> Path:
        """Where the mounted home of ``username`` is (the mount point, or its encrypted ``home/``)."""
        mount_point = self.mount_point(username)
        return mount_point / ENCRYPTED_HOME if self.is_encrypted(username) else mount_point

    def unmount(self, username: str) -> None:
        """Lock an encrypted home (its key leaves the kernel), then unmount it: its files are ciphertext at rest."""
        if self.is_mounted(username) and self.is_encrypted(username):
            self.encryption.lock(self.mount_point(username), self.home_path(username))
        super().unmount(username)

    def quota_for(self, username: str) -> int:
        return self.user_quotas.get(username, self.quota)

    size_for = quota_for

    def usernames(self) -> list[str]:
        """Users who have a home (in use or archived)."""
        images = [*self.images_dir.glob(f"*{IMAGE_SUFFIX}"), *self.archive_dir.glob(f"*{IMAGE_SUFFIX}")]
        names = {image.name.removesuffix(IMAGE_SUFFIX) for image in images}
        return sorted(owner_from_disk_name(n) for n in names)

    def reclaim_plan(self, now: float | None = None) -> list[ReclaimAction]:
        """What :meth:`reclaim` would do now: homes to archive and archives to delete (none mounted)."""
        now = time.time() if now is None else now
        plan = []
        for username in self.usernames():
            image, archived = self.image_path(username), self.archived_path(username)
            if image.exists() and not self.is_mounted(username):
                last_used = image.stat().st_mtime
                if now - last_used > self.archive_after_days * DAY:
                    plan.append(ReclaimAction(username, "archive", image, last_used))
            if archived.exists():
                archived_at = archived.stat().st_mtime
                if now - archived_at > self.delete_after_days * DAY:
                    plan.append(ReclaimAction(username, "delete", archived, archived_at))
        return plan

    def reclaim(self, plan: list[ReclaimAction]) -> list[ReclaimAction]:
        """Carry out a plan from :meth:`reclaim_plan`; homes mounted since are skipped."""
        return [item for item in plan if self._reclaim_one(item)]

    def _reclaim_one(self, item: ReclaimAction) -> bool:
        with self._locked(item.username):
            if self.is_mounted(item.username):
                self.log.warning("Not reclaiming the home of %s: it is in use", item.username)
                return False
            if item.action == "archive":
                self.archive_dir.mkdir(parents=True, exist_ok=True)
                target = self.archived_path(item.username)
                os.replace(item.path, target)
                os.utime(target)  # the archive's mtime is when it was archived
            else:
                item.path.unlink(missing_ok=True)
                self.encryption.key_path(Path(self.root), item.username).unlink(missing_ok=True)
            mount_point = self.mount_point(item.username)
            if mount_point.is_dir() and not any(mount_point.iterdir()):
                mount_point.rmdir()
            return True

    def delete_home(self, username: str) -> None:
        """Remove the user's home and any archive of it for good (JupyterHub ``delete_forever``)."""
        self.unmount(username)
        key = self.encryption.key_path(Path(self.root), username)
        for path in (self.image_path(username), self.archived_path(username), key):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.mount_point(username), ignore_errors=True)
