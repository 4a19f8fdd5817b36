"""Free what dead sessions left behind, however they died: an OOM kill, ``kill -9``, a crash of the hub.

A session holds, on this host: a uid (the sandbox's registry), cgroups, a network namespace with
its slirp4netns, an anonymous session's disk (image, loop device, mount) and working directory,
and a pin on its environment. The spawner frees them when it stops a session; what a crash keeps
it from freeing is found here, from the host's own state, and freed:

- a registered session none of whose processes runs any more (by uid and by cgroup) is dead;
- namespaces, cgroups and disks of this deployment that no live session owns, and that are older
  than :attr:`Reconciler.grace` (a session being prepared right now owns them too, not yet started).

Live sessions are left alone: the hub adopts them (JupyterHub polls their pids after a restart).
``bia-binder up`` runs it before the hub starts; the binder service runs it every
:attr:`Reconciler.interval` seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..builder.cache import EnvCache
from . import network
from .disks import IMAGE_SUFFIX, EphemeralDisks, owner_from_disk_name
from .network import Namespace
from .sandbox import Sandbox, cgroup_name


@dataclass
class Freed:
    """What one pass freed (names), for the log and the tests."""

    sessions: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    disks: list[str] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(vars(self).values())

    def summary(self) -> str:
        return "; ".join(f"{len(v)} {k} ({', '.join(v[:5])})" for k, v in vars(self).items() if v) or "nothing"


class Reconciler(LoggingConfigurable):
    grace = Float(
        120.0,
        help="Seconds a namespace, cgroup or disk without a live session is left alone (it may belong to a "
        "session being started right now).",
    ).tag(config=True)

    interval = Float(300.0, help="Seconds between passes in the binder service (0: only at start-up).").tag(config=True)

    shared_cgroup_grace = Float(
        120.0,
        help="Seconds an empty cgroup without a registered session is left alone even at start-up: the cgroup "
        "parent (c.Sandbox.cgroup_parent) is shared by every deployment on this host, and another one's session "
        "or build may be about to enter it. (Namespaces and disks are this deployment's alone.)",
    ).tag(config=True)

    def __init__(self, sandbox: Sandbox, sessions_dir: Path, cache_dir: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox
        self.sessions_dir = Path(sessions_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.disks = EphemeralDisks(parent=self, root=str(self.sessions_dir / ".disks"), sessions_dir=str(self.sessions_dir))

    def run(self) -> Freed:
        freed = Freed()
        live = self._free_dead_sessions(freed)
        self._free_leftover_namespaces(live, freed)
        self._free_leftover_cgroups(live, freed)
        self._free_leftover_disks(live, freed)
        self._free_leftover_pins(live, freed)
        if freed:
            self.log.warning("Freed what dead sessions left: %s", freed.summary())
        return freed

    # ---- sessions the registry knows ------------------------------------------------------------

    def _free_dead_sessions(self, freed: Freed) -> set[str]:
        """Names of the live sessions; every dead one's uid, cgroups, network and disk freed."""
        if not self.sandbox.capabilities.uid_separation.ok:
            return set(self._names_with_processes())
        uids_running = {p.info["uids"].real for p in psutil.process_iter(["uids", "status"]) if p.info["uids"] and p.info["status"] != psutil.STATUS_ZOMBIE}
        live = set()
        for name, entry in self.sandbox.registry.entries().items():
            group = self.sandbox.cgroup_layout.existing(self.sandbox.cgroup_parent, cgroup_name(name))
            if entry["uid"] in uids_running or (group is not None and group.pids()):
                live.add(name)
                continue
            self._free_session(name)
            freed.sessions.append(name)
        return live

    def _names_with_processes(self) -> list[str]:
        names = []
        for name in self.sandbox.cgroup_layout.children(self.sandbox.cgroup_parent):
            group = self.sandbox.cgroup_layout.existing(self.sandbox.cgroup_parent, name)
            if group is not None and group.pids():
                names.append(name)
        return names

    def _free_session(self, name: str) -> None:
        session = self.sandbox.adopt(name)
        if session is not None:
            session.cleanup()
        self._remove_disk(name)
        if name.startswith("binder-"):  # anonymous: nobody can start it again
            shutil.rmtree(self.sessions_dir / name, ignore_errors=True)

    # ---- resources without a registered session --------------------------------------------------

    def _free_leftover_namespaces(self, live: set[str], freed: Freed) -> None:
        owned = {network.namespace_name(self.sandbox.network_prefix, name) for name in live}
        for name in network.leftover_namespaces(self.sandbox.network_prefix, owned):
            namespace = Namespace(name=name, state_dir=Path(self.sandbox.state_dir) / "net")
            if namespace.age() < self.grace or namespace.pids_inside():
                continue
            namespace.destroy()
            freed.namespaces.append(name)

    def _free_leftover_cgroups(self, live: set[str], freed: Freed) -> None:
        owned = {cgroup_name(name) for name in live}
        layout, parent = self.sandbox.cgroup_layout, self.sandbox.cgroup_parent
        for name in sorted(layout.children(parent) - owned):
            group = layout.existing(parent, name)
            if group is None or group.pids() or _age(group.directories[0]) < max(self.grace, self.shared_cgroup_grace):
                continue
            try:
                group.destroy(timeout=2)
                freed.cgroups.append(name)
            except OSError as e:
                self.log.warning("Could not remove cgroup %s: %s", name, e)

    def _free_leftover_disks(self, live: set[str], freed: Freed) -> None:
        images = self.disks.images_dir
        if not images.is_dir():
            return
        for image in images.glob(f"*{IMAGE_SUFFIX}"):
            owner = owner_from_disk_name(image.name.removesuffix(IMAGE_SUFFIX))
            if owner in live or _age(image) < self.grace or _used_by_a_process(self.disks.mount_point(owner)):
                continue
            self._remove_disk(owner)
            freed.disks.append(owner)

    def _free_leftover_pins(self, live: set[str], freed: Freed) -> None:
        """Pins of sessions that are gone keep environments from eviction forever."""
        if self.cache_dir is None or not self.sandbox.capabilities.uid_separation.ok:
            return
        cache = EnvCache(self.cache_dir)
        for key in cache.keys():
            for holder in cache.pinned_by(key):
                if holder not in live and holder.startswith("binder-"):
                    cache.unpin(key, holder)
                    freed.pins.append(f"{holder}@{key[:8]}")

    def _remove_disk(self, owner: str) -> None:
        if not self.disks.is_mounted(owner):
            _detach_loops(self.disks.image_path(owner))  # a crash between attaching and mounting
        try:
            self.disks.delete(owner)  # unmounting detaches the loop device (mount -o loop: autoclear)
        except Exception as e:  # noqa: BLE001 - a busy mount must not stop the rest of the pass
            self.log.warning("Could not remove the disk of %s: %s", owner, e)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _used_by_a_process(mount_point: Path) -> bool:
    """Whether a process works below ``mount_point`` (a session that is not registered: sandbox off)."""
    if not os.path.ismount(mount_point):
        return False
    prefix = str(mount_point)
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info.get("cwd") or ""
        if cwd == prefix or cwd.startswith(prefix + "/"):
            return True
    return False


def _detach_loops(image: Path) -> None:
    """Detach loop devices still attached to ``image``."""
    try:
        listed = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    for line in listed.splitlines():
        device = line.split(":", 1)[0]
        if device.startswith("/dev/loop"):
            subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30)
