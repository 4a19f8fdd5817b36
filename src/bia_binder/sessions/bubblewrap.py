"""The bubblewrap command line of a sandbox: which of the host's files a session (or build) sees.

A sandbox starts from an empty root (bubblewrap's own tmpfs) and shows, in this order:

1. the system directories (``/usr``, ``/etc``, ... — :attr:`View.system_paths`) read-only,
   reproducing the host's ``/bin -> usr/bin``-style symlinks;
2. a fresh ``/dev``, ``/proc`` and writable, private ``/tmp``, ``/var/tmp`` and ``/dev/shm``;
3. each of :attr:`View.hidden` (paths *inside* the system directories the session must not read,
   such as an operator's config below ``/etc``) as an empty, read-only directory (or empty file);
4. the session's own paths at their host paths — :attr:`View.readonly` (its environment, the data
   library), :attr:`View.writable` — and its home at :attr:`View.home_inside`;
5. single files over system ones (:attr:`View.files`, e.g. ``/etc/resolv.conf`` for its network
   namespace), its own cgroups where the hierarchies are mounted, its GPUs.

Everything else of the host (``/home``, ``/root``, ``/srv``, ``/var``, the service's data
directory, other sessions) does not exist inside.

Run as root, bubblewrap works in privileged mode: it reads every bind source as root, so paths
below private directories (a checkout under ``/root``) can be shown; the directories it creates
on the way are made world-searchable (``--perms 0755 --dir``); and the command it runs keeps only
CAP_SETUID/CAP_SETGID, which ``setpriv`` (the first thing inside) drops together with root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: what a session needs of the host's system (missing ones are skipped)
DEFAULT_SYSTEM_PATHS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")

#: capabilities the privileged sandbox keeps for setpriv, which drops them with root
SETPRIV_CAPS = ("CAP_SETUID", "CAP_SETGID")


@dataclass
class View:
    """What a sandboxed process sees of the host's files (all paths absolute)."""

    #: the session's working directory on the host, and where it appears inside (None: no home)
    home: Path | None
    home_inside: Path | None
    system_paths: Sequence[Path] = tuple(Path(p) for p in DEFAULT_SYSTEM_PATHS)
    hidden: Sequence[Path] = ()
    readonly: Sequence[Path] = ()
    writable: Sequence[Path] = ()
    #: path inside → host file shown there read-only (over a system file)
    files: Mapping[Path, Path] = field(default_factory=dict)
    #: cgroup hierarchy mount point → the session's own group directory
    cgroup_mounts: Mapping[Path, Path] = field(default_factory=dict)
    devices: Sequence[str] = ()
    optional_devices: Sequence[str] = ()
    #: a host directory shown as /tmp (on the session's disk, so /tmp is bounded by disk, not memory);
    #: None: a tmpfs, which counts against the session's memory
    tmp: Path | None = None

    def visible_system_paths(self) -> list[Path]:
        return [p for p in self.system_paths if os.path.lexists(p)]

    def shows(self, path: Path) -> bool:
        """Whether ``path`` exists inside because a system directory shows it (and no hidden path hides it)."""
        inside_system = any(path == p or path.is_relative_to(p) for p in self.visible_system_paths())
        return inside_system and not any(path == h or path.is_relative_to(h) for h in self.hidden)


def isolation_args(die_with_parent: bool) -> list[str]:
    return [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--new-session",  # no TIOCSTI injection into a terminal we might share
        *(["--die-with-parent"] if die_with_parent else []),
    ]  # fmt: skip


def base_mounts(tmp: Path | None = None) -> list[str]:
    """A fresh /dev and /proc; private, world-writable (sticky) temporary directories.

    ``tmp`` (a directory on the session's disk) becomes /tmp here, before any other bind: a
    session's own paths below the host's /tmp (an environment in a test's temporary directory)
    are mounted on top of it, not hidden by it.
    """
    tmp_mount = ["--bind", str(tmp), "/tmp"] if tmp is not None else ["--perms", "1777", "--tmpfs", "/tmp"]
    return [
        "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/dev/shm",
        "--proc", "/proc",
        *tmp_mount,
        "--perms", "1777", "--tmpfs", "/var/tmp",
    ]  # fmt: skip


def system_args(view: View) -> list[str]:
    args: list[str] = []
    for path in view.visible_system_paths():
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        else:
            args += ["--ro-bind", str(path), str(path)]
    return args


def hidden_args(view: View) -> tuple[list[str], list[str]]:
    """Mounts hiding :attr:`View.hidden` paths, and the directories to make read-only at the end."""
    args, directories = [], []
    for path in outermost(view.hidden):
        if not any(path.is_relative_to(p) for p in view.visible_system_paths()):
            continue  # outside every system path: not visible anyway
        if path.is_dir():
            directories.append(str(path))
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    return args, directories


def directory_args(view: View, destinations: Sequence[Path]) -> list[str]:
    """World-searchable directories on the way to each destination that no system path shows.

    Privileged bubblewrap would create them mode 0700 (root's), and the session's uid could not
    reach its own home below them.
    """
    needed: set[Path] = set()
    for destination in destinations:
        for ancestor in destination.parents:
            if ancestor == Path("/") or view.shows(ancestor) or ancestor in (Path("/tmp"), Path("/var/tmp")):
                continue
            if any(ancestor.is_relative_to(d) and ancestor != d for d in destinations):
                continue  # inside another destination: that bind brings it
            needed.add(ancestor)
    args = []
    for directory in sorted(needed, key=lambda p: len(p.parts)):
        args += ["--perms", "0755", "--dir", str(directory)]
    return args


def bind_args(view: View) -> list[str]:
    args: list[str] = []
    for path in view.readonly:
        args += ["--ro-bind", str(path), str(path)]
    for mount, directory in view.cgroup_mounts.items():
        args += ["--ro-bind", str(directory), str(mount)]
    for node in view.devices:
        args += ["--dev-bind", node, node]
    for node in view.optional_devices:
        args += ["--dev-bind-try", node, node]
    for inside, source in view.files.items():
        args += ["--ro-bind", str(source), str(inside)]
    for path in view.writable:
        args += ["--bind", str(path), str(path)]
    if view.home is not None:
        args += ["--bind", str(view.home), str(view.home_inside)]
    return args


def view_args(view: View, cwd: Path | None = None) -> list[str]:
    """The mounts of ``view`` as bubblewrap arguments, ending with ``--chdir``."""
    hidden, hidden_dirs = hidden_args(view)
    home = [view.home_inside] if view.home_inside is not None else []
    destinations = [*view.readonly, *view.writable, *home, *view.files, *view.cgroup_mounts]
    args = system_args(view) + base_mounts(view.tmp) + hidden + directory_args(view, destinations) + bind_args(view)
    # read-only only now: bubblewrap creates the mount points of the binds above inside them
    for path in hidden_dirs:
        args += ["--remount-ro", path]
    directory = cwd or view.home_inside
    return args + (["--chdir", str(directory)] if directory is not None else [])


def privileged_args() -> list[str]:
    """For bubblewrap run as root: keep only what setpriv needs to drop to the session's uid."""
    args: list[str] = []
    for cap in SETPRIV_CAPS:
        args += ["--cap-add", cap]
    return args


def outermost(paths: Sequence[Path]) -> list[Path]:
    """Resolved paths, without those inside another one: once a parent is hidden, the child is gone."""
    resolved = sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    return kept
