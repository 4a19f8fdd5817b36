"""Isolated local sessions: own uid, bubblewrap sandbox, cgroup limits from a resource profile.

The spawner (running as root) needs only this::

    sandbox = Sandbox(parent=spawner)          # c.Sandbox.hidden_paths = [hub data dir, env cache, sessions dir], ...
    session = sandbox.prepare(
        name=user.name,                        # unique per running session (any JupyterHub user name)
        home=Path(".../sessions/binder-abc"),  # must exist; chowned to the session's uid (0700), its cwd
        profile=profiles.anonymous_profile(),
        readonly=[env.root, data_library],     # shown read-only even when below a hidden path
        anonymous=True,                        # LaunchError(503) when the host cannot isolate it
    )
    argv = session.wrap(cmd)                   # exec this: joins the cgroup, drops to the uid, enters bwrap
    env = session.environ(env)                 # HOME, USER, TMPDIR, MEM_LIMIT, CPU_LIMIT, CUDA_VISIBLE_DEVICES
    ...Popen(argv, env=env) (no setuid/preexec of your own: ``wrap`` does it)...
    session.cleanup()                          # in stop(), first: SIGTERM all, grace, SIGKILL; free uid and cgroup

``prepare`` is idempotent per name (same uid, same cgroup): after a hub restart, call it again
to get the handle back. Sessions are killed when the hub process dies (``die_with_parent``).

Inside the sandbox the whole file system is read-only, ``/tmp`` is private, ``/proc`` shows
only the session's processes, every path of :attr:`Sandbox.hidden_paths` (hub database,
cookie secret, environment cache, other sessions' homes) is replaced by an empty read-only
directory (a file by an empty file); then ``readonly`` paths are shown again read-only, and
``home`` and ``writable`` read-write (``writable`` keeps its owner: make it writable for the
session's uid yourself). The network is shared.

Builds (the installer, the repository's own ``setup.py``, ``postBuild``) run in the same kind of
sandbox through :meth:`Sandbox.prepare_build`: as :attr:`Sandbox.build_uid` instead of a
session's uid, with the checkout as home and the environment being built writable.

What the host can give is probed once per :class:`Sandbox` (:attr:`Sandbox.capabilities`);
what it cannot give is left out of ``wrap`` (anonymous launches are then refused unless
``allow_unsafe``). ``bia_binder.sessions.doctor`` turns the capabilities into the start-up report.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil
from traitlets import Bool, Float, Int, List, TraitError, Tuple, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..events import LaunchError
from . import bubblewrap, network
from .cgroups import LIMITED_CONTROLLERS, CgroupLayout, CgroupLimits, SessionGroup, probe
from .network import Namespace, NetworkError, NetworkPolicy
from .profiles import ResourceProfile

#: NVIDIA's per-device nodes, ``/dev/nvidia0`` ...; the control nodes every CUDA process also needs
_GPU_NODE = re.compile(r"nvidia(\d+)$")
_GPU_SHARED_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")

_UNSAFE_IN_GROUP_NAME = re.compile(r"[^A-Za-z0-9_.@+-]")
#: characters overlayfs' mount options cannot hold in a path
_OVERLAY_UNSAFE = re.compile(r"[,:\\\s]")

#: run as root inside a privileged sandbox before dropping to the session's uid: mounts each writable layer
#: (arguments: count, then "lowerdir=...,upperdir=...,workdir=..." and target per layer, then the command).
#: The mounts live in the sandbox's own mount namespace and vanish with it: nothing to clean up on the host.
LAYER_MOUNT_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    'mount -t overlay bia-binder-layer -o "$1" "$2" '
    '|| echo "bia-binder: $2 stays read-only in this session (no writable layer)" >&2; '
    "shift 2; n=$((n - 1)); done; exec \"$@\""
)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bia-binder" / "sandbox"


@dataclass(frozen=True)
class Check:
    """One guarantee: does it hold, and a one-line why (or why not)."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class Capabilities:
    """What this host lets the sandbox enforce."""

    sandbox: Check
    uid_separation: Check
    limits: dict[str, Check]
    gpus: list[int]
    network: Check = Check(False, "not probed")

    def checks(self) -> list[tuple[str, Check]]:
        """Every guarantee, named as the start-up report names it."""
        limits = [(f"{name} limit", check) for name, check in self.limits.items()]
        return [
            ("sandbox", self.sandbox),
            ("uid separation", self.uid_separation),
            ("network isolation", self.network),
            *limits,
        ]

    def missing(self) -> list[str]:
        return [name for name, check in self.checks() if not check.ok]

    @property
    def isolated(self) -> bool:
        """Everything an anonymous session from the internet needs."""
        return not self.missing()


class SessionRegistry:
    """Which uid (and GPUs) each running session holds, on disk so that restarts and several
    processes never hand one uid to two sessions. A JSON file under an exclusive ``flock``."""

    def __init__(self, path: Path, uid_range: tuple[int, int]):
        self.path = path
        self.uid_range = uid_range

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sessions = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield sessions
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sessions, indent=1, sort_keys=True))
            tmp.replace(self.path)

    def allocate(
        self, name: str, gpus_wanted: int = 0, gpus_available: list[int] | None = None
    ) -> tuple[int, list[int]]:
        """The session's uid (stable per name: the first free one from a hash of the name) and GPUs."""
        with self._locked() as sessions:
            if name in sessions:
                entry = sessions[name]
                return entry["uid"], entry["gpus"]
            # another deployment on this host (its own registry, the same default uid_range) may run a
            # session as a uid this registry holds free: a uid that runs anything is never handed out
            taken = {entry["uid"] for entry in sessions.values()} | _uids_running_processes(*self.uid_range)
            uid = self._first_free_uid(name, taken)
            busy_gpus = {g for entry in sessions.values() for g in entry["gpus"]}
            free_gpus = [g for g in (gpus_available or []) if g not in busy_gpus]
            if len(free_gpus) < gpus_wanted:
                raise LaunchError(
                    f"All GPUs of this server are in use ({len(free_gpus)} free, {gpus_wanted} wanted); "
                    "try again later or choose a profile without GPU.",
                    429,
                )
            sessions[name] = {"uid": uid, "gpus": free_gpus[:gpus_wanted]}
            return uid, free_gpus[:gpus_wanted]

    def release(self, name: str) -> None:
        with self._locked() as sessions:
            sessions.pop(name, None)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every session holding a uid now: name → {"uid", "gpus"}."""
        with self._locked() as sessions:
            return {name: dict(entry) for name, entry in sessions.items()}

    def _first_free_uid(self, name: str, taken: set[int]) -> int:
        low, high = self.uid_range
        size = high - low + 1
        start = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) % size
        for step in range(size):
            uid = low + (start + step) % size
            if uid not in taken and not _uid_has_account(uid):
                return uid
        raise LaunchError(
            f"No free session uid left in {low}-{high}; stop some sessions or widen Sandbox.uid_range.", 503
        )


def _uids_running_processes(low: int, high: int) -> set[int]:
    """Real uids in ``low``..``high`` that own a process on this host now."""
    uids = set()
    for process in psutil.process_iter(["uids"]):
        owner = process.info["uids"]
        if owner is not None and low <= owner.real <= high:
            uids.add(owner.real)
    return uids


def _gid_has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False


def _uid_has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


class Sandbox(LoggingConfigurable):
    """Runs sessions (and builds) isolated: own uid, bubblewrap, cgroup limits."""

    enabled = Bool(True, help="Run sessions inside bubblewrap (read-only system, private /tmp and /proc).").tag(
        config=True
    )

    bwrap_path = Unicode(
        "bwrap", help="bubblewrap executable (Debian package `bubblewrap`); a name is looked up on PATH."
    ).tag(config=True)

    setpriv_path = Unicode("setpriv", help="util-linux setpriv, used to drop to the session's uid.").tag(config=True)

    prlimit_path = Unicode(
        "prlimit", help="util-linux prlimit, bounds processes per uid where no pids cgroup exists."
    ).tag(config=True)

    uid_range = Tuple(
        Int(),
        Int(),
        default_value=(20000, 29999),
        help="Inclusive range of uids given to sessions (unused by host accounts).",
    ).tag(config=True)

    state_dir = Unicode(help="Where the uid/GPU registry lives (default: $XDG_DATA_HOME/bia-binder/sandbox).").tag(
        config=True
    )

    hidden_paths = List(
        Unicode(),
        help="Paths sessions must not see (hub database and secrets, environment cache, sessions root): "
        "each is replaced by an empty directory inside the sandbox. state_dir is always hidden.",
    ).tag(config=True)

    cgroup_root = Unicode("/sys/fs/cgroup", help="Where the cgroup hierarchies are mounted.").tag(config=True)

    cgroup_parent = Unicode(
        "bia-binder", help="Name of the group (in each hierarchy) holding the sessions' groups."
    ).tag(config=True)

    allow_unsafe = Bool(
        False,
        help="Start anonymous sessions even where isolation is missing (`bia-binder up --unsafe-no-sandbox`).",
    ).tag(config=True)

    gpu_devices = List(Int(), help="Indices of the GPUs sessions may get (default: every /dev/nvidiaN).").tag(
        config=True
    )

    die_with_parent = Bool(
        False,
        help="Kill a session's processes when the process that started it (the hub) dies. Off by default: a "
        "hub that crashes and comes back finds its sessions running and adopts them (JupyterHub polls their "
        "pids); what a crash leaves of sessions that did die is freed by bia_binder.sessions.reconcile.",
    ).tag(config=True)

    stop_grace = Float(5.0, help="Seconds between SIGTERM and SIGKILL when a session is cleaned up.").tag(config=True)

    system_paths = List(
        Unicode(),
        default_value=list(bubblewrap.DEFAULT_SYSTEM_PATHS),
        help="The host directories sessions and builds see (read-only); nothing else of the host exists inside. "
        "Paths of hidden_paths below them are hidden.",
    ).tag(config=True)

    home_path = Unicode(
        "/home/jovyan",
        help="Where a session sees its home (its working directory) inside the sandbox, whatever its path on the "
        "host, as in repo2docker's images. Empty: at its host path.",
    ).tag(config=True)

    network_isolation = Bool(
        True,
        help="Give each session and build a network namespace of its own (slirp4netns + nftables): outbound "
        "traffic reaches the internet; this host's services, private ranges and link-local/metadata "
        "addresses do not.",
    ).tag(config=True)

    network_allowed = List(
        Unicode(),
        help="Destinations sessions may reach although a private range holds them, as 'CIDR' or 'CIDR:port' "
        "(e.g. an internal data endpoint '10.1.2.3/32:443').",
    ).tag(config=True)

    layer_gid = Int(
        19998,
        help="Group of the published environments' directories (group-writable), given to a session only inside "
        "its sandbox, where each environment is read-only with a private writable overlay on it: so `pip install` "
        "in a session installs into that session's layer of its environment, never into the shared one. "
        "Outside uid_range and belonging to no host group.",
    ).tag(config=True)

    build_uid = Int(
        19999,
        help="The uid builds run as. One for all builds, because builds share the package caches it owns; "
        "never a session's (keep it outside uid_range) and with no host account.",
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self) -> str:
        return str(default_state_dir())

    @default("gpu_devices")
    def _default_gpu_devices(self) -> list[int]:
        dev = Path("/dev")
        return sorted(int(m.group(1)) for p in dev.glob("nvidia*") if (m := _GPU_NODE.match(p.name)))

    @validate("uid_range")
    def _check_uid_range(self, proposal: dict[str, Any]) -> tuple[int, int]:
        low, high = proposal["value"]
        if not 1000 <= low <= high:
            raise TraitError(f"Sandbox.uid_range {low}-{high}: want 1000 <= first <= last")
        return low, high

    # ---- what the host can give -------------------------------------------------------

    def executable(self, name_or_path: str) -> str | None:
        return shutil.which(name_or_path)

    @cached_property
    def cgroup_layout(self) -> CgroupLayout:
        return CgroupLayout.discover(Path(self.cgroup_root))

    @cached_property
    def registry(self) -> SessionRegistry:
        return SessionRegistry(Path(self.state_dir) / "sessions.json", self.uid_range)

    @cached_property
    def capabilities(self) -> Capabilities:
        """Probed once (a few ms): run a real sandboxed ``true``, make and remove probe cgroups."""
        uid_check = self._check_uid_separation()
        limits = {
            controller: Check(reason is None, reason or f"each session's {controller} is limited by its profile")
            for controller, reason in self._probe_cgroups().items()
        }
        return Capabilities(
            self._check_bwrap(uid_check.ok), uid_check, limits, list(self.gpu_devices), self._check_network()
        )

    def _check_network(self) -> Check:
        if not self.network_isolation:
            return Check(False, "disabled by configuration (Sandbox.network_isolation = False)")
        reason = network.unavailable_reason()
        if reason:
            return Check(False, reason)
        return Check(
            True,
            "each session has its own network namespace: the internet, not this host's services, "
            "private ranges or metadata addresses",
        )

    def _check_uid_separation(self) -> Check:
        if os.geteuid() != 0:
            user = pwd.getpwuid(os.geteuid()).pw_name
            return Check(
                False, f"bia-binder runs as {user!r}, not root: sessions run as that same user (start it as root)"
            )
        if not self.executable(self.setpriv_path):
            return Check(False, f"{self.setpriv_path!r} not found: install util-linux")
        low, high = self.uid_range
        return Check(True, f"each session runs as its own uid from {low}-{high}")

    def _check_bwrap(self, as_other_uid: bool) -> Check:
        if not self.enabled:
            return Check(False, "disabled by configuration (Sandbox.enabled = False)")
        bwrap = self.executable(self.bwrap_path)
        if not bwrap:
            return Check(False, f"bubblewrap ({self.bwrap_path!r}) not found: install the `bubblewrap` package")
        view = bubblewrap.View(home=None, home_inside=None, system_paths=list(map(Path, self.system_paths)))
        probe_argv = [bwrap, *bubblewrap.isolation_args(False), *bubblewrap.view_args(view)]
        if as_other_uid:
            # privileged: bubblewrap mounts as root, setpriv drops to a session uid inside
            probe_argv += [*bubblewrap.privileged_args(), "--", *self._setpriv_args(self.uid_range[1], self.uid_range[1])]
        else:
            probe_argv.append("--")
        probe_argv.append("true")
        try:
            result = subprocess.run(probe_argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return Check(False, f"bubblewrap could not run: {e}")
        if result.returncode != 0:
            why = (result.stderr.strip().splitlines() or ["no message"])[-1]
            return Check(False, f"bubblewrap fails on this host ({why}); are unprivileged user namespaces disabled?")
        return Check(
            True,
            f"bubblewrap: only {', '.join(p for p in self.system_paths if os.path.lexists(p))} (read-only), "
            "the environment and the session's own files; private /tmp and /proc",
        )

    def _probe_cgroups(self) -> dict[str, str | None]:
        if os.geteuid() != 0:
            return dict.fromkeys(LIMITED_CONTROLLERS, "not root: cannot create cgroups (start bia-binder as root)")
        return probe(self.cgroup_layout, self.cgroup_parent)

    def check_allowed(self, anonymous: bool) -> None:
        """Refuse an anonymous launch on a host that cannot isolate it, unless the operator allowed it."""
        caps = self.capabilities
        if not anonymous or caps.isolated or self.allow_unsafe:
            return
        raise LaunchError(
            f"This server cannot isolate anonymous sessions (missing: {', '.join(caps.missing())}); "
            "the operator must fix that (see `bia-binder doctor`) or start with --unsafe-no-sandbox.",
            503,
        )

    # ---- sessions -------------------------------------------------------------------------

    def prepare(
        self,
        name: str,
        home: Path,
        profile: ResourceProfile,
        readonly: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        anonymous: bool = False,
        host_ports: Sequence[int] = (),
        tmp: Path | None = None,
        layers: Sequence[tuple[Path, Path]] = (),
    ) -> Session:
        """Allocate the uid, hand ``home`` to it, create the cgroup and the network namespace.

        ``layers``: (directory, layer directory below ``home``) pairs: each directory (read-only inside, e.g.
        an environment) gets a writable overlay whose changes go to its layer directory, for this session
        only (where the sandbox is privileged; elsewhere it stays read-only).

        ``host_ports``: loopback ports of this host the session may reach (a logged-in session's hub
        API); anonymous sessions reach none. ``tmp``: a directory (below ``home``, so it is handed over
        too) shown as /tmp instead of a memory-backed tmpfs. Raises ``LaunchError`` when refused.
        """
        if not name or len(name) > 200 or "\0" in name:
            raise LaunchError(f"invalid session name {name!r}: want 1-200 characters (a JupyterHub user name)", 400)
        self.check_allowed(anonymous)
        caps = self.capabilities
        if profile.gpus and len(caps.gpus) < profile.gpus:
            raise LaunchError(
                f"Profile {profile.slug!r} needs {profile.gpus} GPU(s) but this server has {len(caps.gpus)}; choose another profile.",
                400,
            )
        home = Path(home).resolve()
        if not home.is_dir():
            raise LaunchError(f"session home {home} does not exist; create it (with the repository copy) first", 500)
        if caps.uid_separation.ok:
            if not self.privileged:
                check_reachable_by_others(home, *readonly, *writable)
            uid, gpus = self.registry.allocate(name, profile.gpus, caps.gpus)
        else:
            uid, gpus = os.geteuid(), list(caps.gpus[: profile.gpus])
        session = Session(sandbox=self, name=name, uid=uid, home=home, profile=profile, gpus=gpus, tmp=tmp)
        session.layers = self._make_layers(home, layers)
        session = self._open(session, readonly, writable, NetworkPolicy(host_ports=tuple(host_ports)))
        if session.separate_uid:
            home.chmod(0o700)
        return session

    def prepare_build(
        self,
        name: str,
        workdir: Path,
        profile: ResourceProfile,
        readonly: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        anonymous: bool = True,
        home_inside: Path | None = None,
        host_ports: Sequence[int] = (),
    ) -> Session:
        """A sandbox for one build, as :attr:`build_uid`: ``workdir`` (the checkout: cwd and HOME) and
        ``writable`` (the environment being built, package caches) writable, everything else as for sessions.

        Builds share their uid, so their processes are told apart by cgroup, not by uid; hand the
        build's files to that uid with :meth:`Session.own` (``workdir`` is handed over here).
        ``name`` must be unique among the builds running on this host (a build directory's name).
        """
        self.check_allowed(anonymous)
        caps = self.capabilities
        workdir = Path(workdir).resolve()
        uid = os.geteuid()
        if caps.uid_separation.ok:
            uid = self._checked_build_uid()
            if not self.privileged:
                check_reachable_by_others(workdir, *readonly, *writable)
        session = Session(
            sandbox=self,
            name=f"build:{name}",
            uid=uid,
            home=workdir,
            home_inside=home_inside,
            profile=profile,
            gpus=[],
            shared_uid=True,
        )
        return self._open(session, readonly, writable, NetworkPolicy(host_ports=tuple(host_ports)))

    def adopt(self, name: str) -> Session | None:
        """The handle of session ``name`` that another process prepared (a hub before its restart), to stop
        and clean it up; None when this host holds nothing of it. Only ``pids()``/``cleanup()`` work on it."""
        entry = self.registry.entries().get(name) if self.capabilities.uid_separation.ok else None
        cgroup = self.cgroup_layout.existing(self.cgroup_parent, cgroup_name(name))
        namespace = Namespace.existing(network.namespace_name(self.network_prefix, name), Path(self.state_dir) / "net")
        if entry is None and cgroup is None and namespace is None:
            return None
        uid = entry["uid"] if entry is not None else os.geteuid()
        session = Session(
            sandbox=self, name=name, uid=uid, home=Path("/nonexistent"), home_inside=Path("/nonexistent"),
            profile=None, gpus=list(entry["gpus"]) if entry else [],
        )  # fmt: skip
        session.cgroup, session.network = cgroup, namespace
        return session

    @property
    def privileged(self) -> bool:
        """bubblewrap runs as root and drops to the session's uid inside (it can show any path)."""
        caps = self.capabilities
        return caps.sandbox.ok and caps.uid_separation.ok

    def _open(
        self, session: Session, readonly: Sequence[Path], writable: Sequence[Path], policy: NetworkPolicy
    ) -> Session:
        """``session`` with its bind paths, its home handed to its uid, its cgroup and network made; nothing
        left on failure."""
        session.readonly = [Path(p).resolve() for p in readonly]
        session.writable = [Path(p).resolve() for p in writable]
        try:
            session.own(session.home)
            self._attach_cgroup(session)
            self._attach_network(session, policy)
        except BaseException:
            session.cleanup()
            raise
        return session

    def _attach_network(self, session: Session, policy: NetworkPolicy) -> None:
        if not self.capabilities.network.ok:
            return
        policy = NetworkPolicy(
            host_ports=policy.host_ports,
            allowed=tuple(self.network_allowed),
            host_addresses=network.host_addresses(),
            nameservers=network.host_nameservers(),
        )
        try:
            session.network = Namespace.open(
                network.namespace_name(self.network_prefix, session.name), Path(self.state_dir) / "net", policy
            )
        except (NetworkError, ValueError) as e:
            raise LaunchError(f"could not give the session its own network: {e}", 503) from e
        session.host_ports = policy.host_ports

    @cached_property
    def network_prefix(self) -> str:
        """Names of this deployment's namespaces start with this (another deployment's are not ours to clean)."""
        return "bb" + hashlib.sha256(str(Path(self.state_dir).resolve()).encode()).hexdigest()[:6]

    def resolv_conf(self) -> Path:
        """The resolver a namespaced session uses: slirp4netns' DNS forwarder (the host's may be on a blocked range)."""
        path = Path(self.state_dir) / "net" / "resolv.conf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(f"nameserver {network.DNS_ADDRESS}\noptions edns0\n")
            path.chmod(0o644)
        return path

    def _checked_build_uid(self) -> int:
        low, high = self.uid_range
        if low <= self.build_uid <= high or _uid_has_account(self.build_uid) or self.build_uid < 1000:
            raise LaunchError(
                f"Sandbox.build_uid {self.build_uid} is not usable for builds (it must be >= 1000, outside "
                f"uid_range {low}-{high} and belong to no host account); configure a free uid.",
                500,
            )
        return self.build_uid

    def _attach_cgroup(self, session: Session) -> None:
        caps = self.capabilities
        if any(check.ok for check in caps.limits.values()):
            session.cgroup = self.cgroup_layout.create(
                self.cgroup_parent, cgroup_name(session.name), self._cgroup_limits(session.profile, caps)
            )

    @staticmethod
    def _cgroup_limits(profile: ResourceProfile, caps: Capabilities) -> CgroupLimits:
        limits = profile.cgroup_limits()
        return CgroupLimits(
            memory_bytes=limits.memory_bytes if caps.limits["memory"].ok else None,
            cpus=limits.cpus if caps.limits["cpu"].ok else None,
            pids=limits.pids if caps.limits["pids"].ok else None,
        )

    def _make_layers(self, home: Path, layers: Sequence[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        """The layer directories (``upper``/``work`` for overlayfs), created below ``home`` so they are handed over
        with it; a pair overlayfs cannot name (its options are comma/colon separated) is left out."""
        made = []
        low, high = self.uid_range
        if layers and (low <= self.layer_gid <= high or _gid_has_group(self.layer_gid) or self.layer_gid < 1000):
            self.log.warning(
                "No writable environment layers: Sandbox.layer_gid %d must be >= 1000, outside uid_range and "
                "belong to no host group",
                self.layer_gid,
            )
            return []
        for lower, layer in layers:
            lower, layer = Path(lower).resolve(), Path(home) / Path(layer).resolve().relative_to(home)
            if _OVERLAY_UNSAFE.search(f"{lower}{layer}"):
                self.log.warning("No writable layer over %s: its path holds a character overlayfs cannot name", lower)
                continue
            for part in ("upper", "work"):
                (layer / part).mkdir(parents=True, exist_ok=True)
            made.append((lower, layer))
        return made

    def _setpriv_args(self, uid: int, gid: int, groups: Sequence[int] = ()) -> list[str]:
        return [
            self.executable(self.setpriv_path) or self.setpriv_path,
            f"--reuid={uid}",
            f"--regid={gid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]


def configure_sandbox(c, data_dir: Path, allow_unsafe: bool) -> None:
    """What ``bia-binder up`` gives the hub (sessions, logged-in builds) and the binder service
    (anonymous builds) alike: the data dir hidden, builds sandboxed as sessions are."""
    # inside a sandbox the whole data dir (hub database, secrets, environment cache, other sessions)
    # is an empty directory; what a session or build needs of it is shown again explicitly
    c.Sandbox.hidden_paths = [str(data_dir)]
    c.Sandbox.state_dir = str(data_dir / "sandbox")
    c.Sandbox.allow_unsafe = allow_unsafe
    c.EnvBuilder.sandboxed = True


def cgroup_name(session_name: str) -> str:
    """A cgroup directory name for any session name: readable, and unique thanks to a hash suffix."""
    digest = hashlib.sha256(session_name.encode()).hexdigest()[:8]
    return f"{_UNSAFE_IN_GROUP_NAME.sub('_', session_name)[:64].lstrip('.')}-{digest}"


def check_reachable_by_others(*paths: Path) -> None:
    """The sandbox opens bind sources as the session's uid: every ancestor must be world-searchable."""
    for path in paths:
        for ancestor in Path(path).resolve().parents:
            if ancestor.exists() and not ancestor.stat().st_mode & 0o001:
                raise LaunchError(
                    f"{ancestor} (above {path}) is not searchable by other users; `chmod o+x {ancestor}` "
                    "or put session homes and environments elsewhere.",
                    500,
                )


def _chown_tree(root: Path, uid: int) -> None:
    """Give ``root`` and everything below to ``uid`` (symlinks themselves, never their targets);
    what ``uid`` already owns is left alone, so a second call on a large tree costs only stats."""

    def give(path: str) -> None:
        try:
            if os.lstat(path).st_uid != uid:
                os.chown(path, uid, uid, follow_symlinks=False)
        except FileNotFoundError:
            pass  # removed meanwhile (a shared package cache's temporary file): nothing left to hand over

    give(str(root))
    for directory, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            give(os.path.join(directory, entry))


@dataclass
class Session:
    """One prepared session: how to start it, and how to end it without leftovers."""

    sandbox: Sandbox
    name: str
    uid: int
    home: Path
    #: None for a handle adopted after a restart (Sandbox.adopt): it can be cleaned up, not started
    profile: ResourceProfile | None
    gpus: list[int]
    #: where the session sees its home; default Sandbox.home_path (when sandboxed), else ``home``
    home_inside: Path | None = None
    readonly: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    cgroup: SessionGroup | None = None
    network: Namespace | None = None
    #: shown as /tmp (see bubblewrap.View.tmp)
    tmp: Path | None = None
    #: loopback ports of the host this session may reach (as network.GATEWAY_ADDRESS:<port>)
    host_ports: tuple[int, ...] = ()
    closed: bool = False
    #: the uid is not this session's alone (builds share Sandbox.build_uid): processes are found by cgroup
    shared_uid: bool = False
    #: (directory, layer directory on the host below ``home``): writable overlays (see Sandbox.prepare)
    layers: list[tuple[Path, Path]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.home_inside is None:
            sandboxed = self.sandbox.capabilities.sandbox.ok and self.sandbox.home_path
            self.home_inside = Path(self.sandbox.home_path) if sandboxed else self.home

    @property
    def gid(self) -> int:
        return self.uid

    @property
    def separate_uid(self) -> bool:
        return self.uid != os.geteuid()

    def own(self, path: Path) -> None:
        """Hand ``path`` and everything below it to the session's uid (where it has its own)."""
        if self.separate_uid:
            _chown_tree(Path(path), self.uid)

    def forward(self, port: int) -> None:
        """Make the session's server on ``port`` reachable at ``127.0.0.1:port`` on the host (for the proxy)."""
        if self.network is not None:
            try:
                self.network.forward(port)
            except NetworkError as e:
                raise LaunchError(f"could not reach the session's port: {e}", 503) from e

    @property
    def listen_address(self) -> str:
        """The address the session's server binds to inside (all of its own namespace; else loopback only)."""
        return "0.0.0.0" if self.network is not None else "127.0.0.1"

    def wrap(self, cmd: list[str], cwd: Path | None = None) -> list[str]:
        """The argv to exec for ``cmd`` (in ``cwd``, default its home): cgroup (joined before exec), process
        limit, network namespace, sandbox, uid drop.

        ``cmd`` stays last, so arguments appended to the result (as ``LocalProcessSpawner`` appends
        ``get_args()`` to ``cmd``) reach the command itself.
        """
        caps = self.sandbox.capabilities
        argv = list(cmd)
        drop_uid = self.sandbox._setpriv_args(self.uid, self.gid) if self.separate_uid else []
        if caps.sandbox.ok:
            bwrap = self.sandbox.executable(self.sandbox.bwrap_path) or "bwrap"
            privileged = bubblewrap.privileged_args() if drop_uid else []
            mounts: list[str] = []
            if drop_uid and self.layers:
                # root inside mounts the layers (CAP_SYS_ADMIN, dropped with everything else by setpriv); the
                # session may write into the environment's group-writable directories, through its layer only
                privileged += ["--cap-add", "CAP_SYS_ADMIN"]
                mounts = ["/bin/sh", "-c", LAYER_MOUNT_SCRIPT, "sh", str(len(self.layers)), *self._layer_mount_args()]
                drop_uid = self.sandbox._setpriv_args(self.uid, self.gid, groups=[self.sandbox.layer_gid])
            argv = [bwrap, *self._bwrap_args(cwd), *privileged, "--", *mounts, *drop_uid, *argv]
        else:
            argv = [*drop_uid, *argv]
        if self.network is not None:
            argv = self.network.enter_argv(argv)
        if self.separate_uid and not caps.limits["pids"].ok:
            # RLIMIT_NPROC counts per uid, and the uid is the session's own: a fork-bomb bound without cgroups
            argv = [self.sandbox.executable(self.sandbox.prlimit_path) or "prlimit", f"--nproc={self.profile.pids_limit}", *argv]
        if self.cgroup is not None:
            argv = self.cgroup.enter_argv(argv)
        return argv

    def _layer_mount_args(self) -> list[str]:
        """overlayfs options and target per layer, with the layer's paths as seen inside the sandbox."""
        args = []
        for lower, layer in self.layers:
            inside = Path(self.home_inside) / layer.relative_to(self.home)
            args += [f"lowerdir={lower},upperdir={inside / 'upper'},workdir={inside / 'work'}", str(lower)]
        return args

    def view(self) -> bubblewrap.View:
        """What this session sees of the host's files."""
        sandbox = self.sandbox
        gpus = [f"/dev/nvidia{gpu}" for gpu in self.gpus]
        files = {}
        if self.network is not None and not network.host_nameservers():
            # the host's resolver is on its loopback (systemd-resolved...): slirp4netns forwards DNS instead
            resolv = Path("/etc/resolv.conf")
            files[Path(os.path.realpath(resolv)) if resolv.is_symlink() else resolv] = sandbox.resolv_conf()
        return bubblewrap.View(
            home=self.home,
            home_inside=self.home_inside,
            system_paths=[Path(p) for p in sandbox.system_paths],
            hidden=[Path(sandbox.state_dir), *map(Path, sandbox.hidden_paths)],
            readonly=self.readonly,
            writable=self.writable,
            files=files,
            # the session's own groups where the hierarchies are mounted, as in a container: tools that
            # size themselves from cgroup limits (dask, JVMs, ...) read its limits, and no other session's
            cgroup_mounts=self.cgroup.mounted_at() if self.cgroup is not None else {},
            devices=gpus,
            optional_devices=list(_GPU_SHARED_NODES) if gpus else [],
            # mounted first, under the session's own paths (bubblewrap.base_mounts); bubblewrap makes their
            # mount points in it before any code of the session runs (a disk-backed /tmp is an anonymous,
            # one-shot session's: its sandbox is set up once), so the session cannot redirect them
            tmp=self.tmp,
        )

    def _bwrap_args(self, cwd: Path | None = None) -> list[str]:
        return bubblewrap.isolation_args(self.sandbox.die_with_parent) + bubblewrap.view_args(self.view(), cwd)

    def environ(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` for the session: its HOME/USER, private TMPDIR, visible limits, its GPUs."""
        result = dict(env)
        user = f"session-{self.uid}" if self.separate_uid else pwd.getpwuid(self.uid).pw_name
        result.update(HOME=str(self.home_inside), USER=user, LOGNAME=user, TMPDIR="/tmp", **self.profile.session_environ())
        result["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        return result

    def pids(self) -> set[int]:
        """Processes of this session still running (its cgroup, or its uid when it has one)."""
        found = self.cgroup.pids() if self.cgroup is not None else set()
        if self.separate_uid and not self.shared_uid:
            found |= {
                p.pid
                for p in psutil.process_iter(["uids", "status"])
                # a zombie is already dead; its parent (the spawner) reaps it
                if p.info["uids"] and p.info["uids"].real == self.uid and p.info["status"] != psutil.STATUS_ZOMBIE
            }
        return found

    def cleanup(self) -> None:
        """End every process of the session (SIGTERM, ``stop_grace``, SIGKILL), remove its cgroup and network
        namespace, free its uid.

        Idempotent; after it, the uid may belong to another session, so this object touches nothing any more.
        """
        if self.closed:
            return
        self._signal_all(signal.SIGTERM, spare_sandbox=True)
        deadline = time.monotonic() + self.sandbox.stop_grace
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        while self.pids() and time.monotonic() < deadline + 10:
            self._signal_all(signal.SIGKILL)
            time.sleep(0.02)
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        if self.network is not None:
            self.network.destroy()
            self.network = None
        if self.separate_uid and not self.shared_uid:
            self.sandbox.registry.release(self.name)
        self.closed = True

    def _signal_all(self, sig: signal.Signals, spare_sandbox: bool = False) -> None:
        """Signal every process; ``spare_sandbox``: not bubblewrap's own, whose death would SIGKILL
        the session (``die_with_parent``) before it could shut down; bubblewrap exits after it anyway."""
        bwrap = os.path.realpath(self.sandbox.executable(self.sandbox.bwrap_path) or "/nonexistent")
        for pid in self.pids():
            try:
                if spare_sandbox and psutil.Process(pid).exe() == bwrap:
                    continue
                os.kill(pid, sig)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
