"""Per-session control groups: memory, CPU and pids limits, and "kill everything left".

Works with cgroup v2 (one unified hierarchy), cgroup v1 (one hierarchy per controller)
and the hybrid layout (v1 controllers plus a controller-less v2 ``unified`` mount): each
controller is taken from v2 when v2 offers it, else from its v1 mount. A v2 group is also
made, when the host has a writable v2 hierarchy, even with no controllers: its
``cgroup.kill`` ends every process of a session in one write.

    layout = CgroupLayout.discover()                        # or CgroupLayout.discover(Path(root))
    group = layout.create("bia-binder", "session-name", CgroupLimits(memory_bytes=2**30, cpus=2, pids=512))
    argv = group.enter_argv(["my", "command"])          # joins the group *before* exec: no race
    ...
    group.destroy()                                     # SIGKILL what is left, remove the groups

Processes join a group through :meth:`SessionGroup.enter_argv`: a one-line ``/bin/sh``
prefix writes its own pid into every ``cgroup.procs`` and then ``exec``s the command.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: the controllers a session is limited by
LIMITED_CONTROLLERS = ("memory", "cpu", "pids")

#: v1: cpu.cfs_period_us, v2: the second field of cpu.max
CPU_PERIOD_US = 100_000

# A shell prefix rather than libcgroup's cgexec: cgexec is not installed by default, does not
# know hybrid layouts, and a Python helper would add its start-up time to every launch.
_ENTER_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True)
class CgroupLimits:
    """Limits for one session; ``None`` means unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount: Path
    version: int
    controllers: frozenset[str]


def parse_mountinfo(text: str, under: Path) -> list[Hierarchy]:
    """The cgroup hierarchies mounted at or below ``under``, from ``/proc/self/mountinfo`` text."""
    hierarchies = []
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fields, fs = before.split(), after.split()
        if len(fields) < 5 or len(fs) < 3 or fs[0] not in ("cgroup", "cgroup2"):
            continue
        mount = Path(fields[4])
        if mount != under and under not in mount.parents:
            continue
        if fs[0] == "cgroup2":
            controllers_file = mount / "cgroup.controllers"
            names = controllers_file.read_text().split() if controllers_file.exists() else []
            hierarchies.append(Hierarchy(mount, 2, frozenset(names)))
        else:
            options = set(fs[2].split(","))
            hierarchies.append(Hierarchy(mount, 1, frozenset(options & {"memory", "cpu", "pids", "freezer"})))
    return hierarchies


@dataclass
class CgroupLayout:
    """Where each controller lives on this host."""

    hierarchies: list[Hierarchy]

    @classmethod
    def discover(cls, root: Path = Path("/sys/fs/cgroup")) -> CgroupLayout:
        try:
            text = Path("/proc/self/mountinfo").read_text()
        except OSError:
            text = ""
        return cls(parse_mountinfo(text, root))

    @property
    def v2(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        """The hierarchy that offers ``controller``, v2 first."""
        if self.v2 and controller in self.v2.controllers:
            return self.v2
        return next((h for h in self.hierarchies if h.version == 1 and controller in h.controllers), None)

    def create(self, parent: str, name: str, limits: CgroupLimits) -> SessionGroup:
        """Make the session's groups below ``parent`` and write its limits.

        Raises ``OSError`` (e.g. ``EACCES`` when not root, ``EROFS`` on a read-only mount)
        when a controller the limits need cannot be set; nothing is left behind then.
        """
        wanted = {
            "memory": limits.memory_bytes is not None,
            "cpu": limits.cpus is not None,
            "pids": limits.pids is not None,
        }
        group = SessionGroup(layout=self)
        try:
            if self.v2 is not None:
                group.add_v2(self._make_v2_group, parent, name, [c for c, on in wanted.items() if on])
            for controller, on in wanted.items():
                hierarchy = self.hierarchy_for(controller)
                if not on or hierarchy is None:
                    continue
                directory = hierarchy.mount / parent / name if hierarchy.version == 1 else group.v2_dir
                if hierarchy.version == 1:
                    directory.mkdir(parents=True, exist_ok=True)
                    group.add(directory)
                _write_limit(directory, hierarchy.version, controller, limits)
                group.limited.add(controller)
        except OSError:
            group.destroy()
            raise
        return group

    def existing(self, parent: str, name: str) -> SessionGroup | None:
        """The groups ``name`` below ``parent`` that exist now (made by another process, e.g. before a hub
        restart), or None."""
        group = SessionGroup(layout=self)
        for hierarchy in self.hierarchies:
            directory = hierarchy.mount / parent / name
            if directory.is_dir():
                group.add(directory)
        return group if group.directories else None

    def children(self, parent: str) -> set[str]:
        """Names of the groups below ``parent``, in any hierarchy."""
        names: set[str] = set()
        for hierarchy in self.hierarchies:
            directory = hierarchy.mount / parent
            if directory.is_dir():
                names.update(child.name for child in directory.iterdir() if child.is_dir())
        return names

    def _make_v2_group(self, parent: str, name: str, controllers: list[str]) -> Path:
        assert self.v2 is not None
        enable = [c for c in controllers if c in self.v2.controllers]
        parent_dir = self.v2.mount / parent
        parent_dir.mkdir(exist_ok=True)
        # v2 offers a controller to a group only when every ancestor lists it in subtree_control
        for directory in (self.v2.mount, parent_dir):
            if enable:
                (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in enable))
        directory = parent_dir / name
        directory.mkdir(exist_ok=True)
        return directory


def _write_limit(directory: Path, version: int, controller: str, limits: CgroupLimits) -> None:
    if controller == "memory":
        assert limits.memory_bytes is not None
        if version == 2:
            (directory / "memory.max").write_text(str(limits.memory_bytes))
            _write_if_present(directory / "memory.swap.max", "0")
        else:
            (directory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            # memsw (memory+swap) exists only with swap accounting; equal to the limit = no swap
            _write_if_present(directory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
    elif controller == "cpu":
        assert limits.cpus is not None
        quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
        if version == 2:
            (directory / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
        else:
            (directory / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (directory / "cpu.cfs_quota_us").write_text(str(quota))
    elif controller == "pids":
        (directory / "pids.max").write_text(str(limits.pids))


def _write_if_present(path: Path, value: str) -> None:
    # cgroupfs answers a write to a file it does not have with EACCES, not ENOENT: look first
    if path.exists():
        path.write_text(value)


@dataclass
class SessionGroup:
    """The groups (one per hierarchy) of one session."""

    layout: CgroupLayout
    directories: list[Path] = field(default_factory=list)
    limited: set[str] = field(default_factory=set)

    def add_v2(
        self, make: Callable[[str, str, list[str]], Path], parent: str, name: str, controllers: list[str]
    ) -> None:
        """Add the v2 group; when it would hold no limit it only tracks processes, so failing is fine."""
        needed = self.layout.v2 is not None and any(c in self.layout.v2.controllers for c in controllers)
        try:
            self.add(make(parent, name, controllers))
        except OSError:
            if needed:
                raise

    def add(self, directory: Path) -> None:
        if directory not in self.directories:
            self.directories.append(directory)

    @property
    def v2_dir(self) -> Path:
        v2 = self.layout.v2
        found = [d for d in self.directories if v2 is not None and v2.mount in d.parents]
        if not found:
            raise FileNotFoundError(errno.ENOENT, "no cgroup v2 group for this session")
        return found[0]

    def mounted_at(self) -> dict[Path, Path]:
        """Each of the session's groups by the mount point of its hierarchy."""
        return {
            hierarchy.mount: directory
            for directory in self.directories
            for hierarchy in self.layout.hierarchies
            if hierarchy.mount in directory.parents
        }

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed so that the process joins every group of the session, then execs."""
        procs = [str(d / "cgroup.procs") for d in self.directories]
        return ["/bin/sh", "-c", _ENTER_SCRIPT, "bia-binder-cgroup-enter", *procs, "--", *argv]

    def pids(self) -> set[int]:
        """Every process still in any of the session's groups."""
        found: set[int] = set()
        for directory in self.directories:
            try:
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return found

    def file(self, controller: str, v1_name: str, v2_name: str) -> Path | None:
        """The path of a controller's file (``v1_name`` or ``v2_name`` depending on where it lives)."""
        hierarchy = self.layout.hierarchy_for(controller)
        if controller not in self.limited or hierarchy is None:
            return None
        for directory in self.directories:
            if hierarchy.mount in directory.parents:
                return directory / (v2_name if hierarchy.version == 2 else v1_name)
        return None

    def oom_kills(self) -> int:
        """How many processes the kernel killed for reaching the memory limit."""
        hierarchy = self.layout.hierarchy_for("memory")
        path = self.file("memory", "memory.oom_control", "memory.events")
        if path is None or hierarchy is None or not path.exists():
            return 0
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def memory_usage(self) -> int | None:
        path = self.file("memory", "memory.usage_in_bytes", "memory.current")
        return int(path.read_text()) if path is not None and path.exists() else None

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the session; returns when none is left (or ``timeout``)."""
        try:
            (self.v2_dir / "cgroup.kill").write_text("1")
        except OSError:
            pass  # no v2 group or a kernel before 5.14: kill one by one below
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill what is left and remove the groups (deepest first). Safe to call twice."""
        self.kill(timeout)
        deadline = time.monotonic() + timeout
        for directory in reversed(self.directories):
            # a killed process leaves its group a moment after SIGKILL is delivered
            while directory.exists():
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


def probe(layout: CgroupLayout, parent: str) -> dict[str, str | None]:
    """For each limited controller: ``None`` when a session can be limited by it, else why not."""
    reasons: dict[str, str | None] = {}
    name = f"probe-{os.getpid()}"
    for controller in LIMITED_CONTROLLERS:
        if layout.hierarchy_for(controller) is None:
            reasons[controller] = f"the host mounts no cgroup hierarchy with the {controller} controller"
            continue
        limits = CgroupLimits(
            memory_bytes=2**30 if controller == "memory" else None,
            cpus=1.0 if controller == "cpu" else None,
            pids=64 if controller == "pids" else None,
        )
        try:
            layout.create(parent, name, limits).destroy()
            reasons[controller] = None
        except OSError as e:
            reasons[controller] = f"cannot create a {controller} cgroup below {parent!r}: {e.strerror or e}"
    return reasons
