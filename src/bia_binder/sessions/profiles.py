"""Resource profiles, defined once for every session backend (local sandbox, KubeSpawner).

A :class:`ResourceProfile` is plain data: memory, CPUs, pids, GPUs, storage. It maps to

- cgroup limits for the local sandbox (:meth:`ResourceProfile.cgroup_limits`),
- KubeSpawner options (:meth:`ResourceProfile.kubespawner_override`: ``mem_limit``,
  ``cpu_limit``, ``extra_resource_limits`` for GPUs) and a KubeSpawner ``profile_list``
  (:meth:`ResourceProfiles.kubespawner_profile_list`),
- the ``MEM_LIMIT``/``CPU_LIMIT`` variables jupyter-resource-usage shows in JupyterLab
  (:meth:`ResourceProfile.session_environ`).

The tiers are configured on :class:`ResourceProfiles`::

    c.ResourceProfiles.anonymous = {"mem_limit": "8G", "cpu_limit": 4}
    c.ResourceProfiles.logged_in = [{"slug": "small", "mem_limit": "16G", "cpu_limit": 4}, ...]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from jupyterhub.traitlets import ByteSpecification
from traitlets import Bool, Dict, Int, List, TraitError, default
from traitlets.config import LoggingConfigurable

from ..events import LaunchError
from .cgroups import CgroupLimits

Storage = Literal["ephemeral", "persistent"]

#: Kubernetes' extended resource name for NVIDIA GPUs (the device plugin's)
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class ResourceProfile:
    """What one session may use. ``mem_limit`` in bytes, ``cpu_limit`` in cores."""

    slug: str
    display_name: str
    mem_limit: int
    cpu_limit: float
    #: processes + threads; bounds fork bombs (a JupyterLab with a kernel uses ~100)
    pids_limit: int = 4096
    gpus: int = 0
    storage: Storage = "ephemeral"
    #: bytes an ephemeral session may write (its working directory is a filesystem of that size); 0: no limit.
    #: Persistent profiles are bounded by the home's quota instead (HomeManager.quota).
    disk_limit: int = 0
    description: str = ""

    def cgroup_limits(self) -> CgroupLimits:
        return CgroupLimits(memory_bytes=self.mem_limit, cpus=self.cpu_limit, pids=self.pids_limit)

    def kubespawner_override(self) -> dict[str, Any]:
        """KubeSpawner trait values for this profile (``kubespawner_override`` of a ``profile_list`` entry)."""
        override: dict[str, Any] = {"mem_limit": self.mem_limit, "cpu_limit": self.cpu_limit}
        limits = {}
        if self.gpus:
            limits[GPU_RESOURCE] = str(self.gpus)
        if self.disk_limit and self.storage == "ephemeral":
            limits["ephemeral-storage"] = str(self.disk_limit)
        if limits:
            override["extra_resource_limits"] = limits
        return override

    def session_environ(self) -> dict[str, str]:
        """Variables jupyter-resource-usage reads to show the limits in JupyterLab (as KubeSpawner sets them)."""
        return {"MEM_LIMIT": str(self.mem_limit), "CPU_LIMIT": f"{self.cpu_limit:g}"}

    @classmethod
    def from_dict(cls, data: dict[str, Any], defaults: dict[str, Any] | None = None) -> ResourceProfile:
        """A profile from configuration (``defaults`` fill keys it lacks); sizes accept ``"8G"``-style
        strings. Raises ``TraitError`` saying what is wrong on bad input."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TraitError(f"unknown resource profile key(s) {sorted(unknown)}; known: {sorted(known)}")
        merged = {**(defaults or {}), **data}
        missing = {"slug", "mem_limit", "cpu_limit"} - set(merged)
        if missing:
            raise TraitError(f"resource profile {data!r} lacks {sorted(missing)}")
        merged.setdefault("display_name", merged["slug"])
        merged["mem_limit"] = int(ByteSpecification().validate(None, merged["mem_limit"]))
        merged["cpu_limit"] = float(merged["cpu_limit"])
        merged["disk_limit"] = int(ByteSpecification().validate(None, merged.get("disk_limit") or 0))
        if merged["mem_limit"] <= 0 or merged["cpu_limit"] <= 0 or int(merged.get("pids_limit", 1)) <= 0:
            raise TraitError(f"resource profile {merged['slug']!r}: limits must be positive")
        if merged.get("storage", "ephemeral") not in ("ephemeral", "persistent"):
            raise TraitError(f"resource profile {merged['slug']!r}: storage must be 'ephemeral' or 'persistent'")
        return cls(**merged)


GiB = 1024**3


def host_cpus() -> int:
    """Cores this process may run on (its affinity mask: what a container or ``taskset`` leaves us)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def capped_to_host(profile: ResourceProfile, cpus: int) -> ResourceProfile:
    """``profile`` with at most ``cpus`` CPUs: a cgroup CPU limit above the host's cores holds nothing back.
    A display name that states the configured count ("... 4 CPU)") states the capped one."""
    if profile.cpu_limit <= cpus:
        return profile
    display_name = re.sub(rf"\b{profile.cpu_limit:g} CPU", f"{cpus:g} CPU", profile.display_name)
    return replace(profile, cpu_limit=float(cpus), display_name=display_name)


class ResourceProfiles(LoggingConfigurable):
    """The anonymous tier and the logged-in tiers, shared by the local and the Kubernetes spawner."""

    anonymous = Dict(
        {
            "slug": "anonymous",
            "display_name": "Anonymous (8 GB, 4 CPU)",
            "mem_limit": 8 * GiB,
            "cpu_limit": 4,
            "storage": "ephemeral",
            "disk_limit": 10 * GiB,
        },
        help="The profile of anonymous (Binder) launches: keys of ResourceProfile, sizes as bytes or '8G'.",
    ).tag(config=True)

    logged_in = List(
        Dict(),
        default_value=[
            {
                "slug": "standard",
                "display_name": "Standard (16 GB, 4 CPU)",
                "mem_limit": 16 * GiB,
                "cpu_limit": 4,
                "storage": "persistent",
            },
            {
                "slug": "large",
                "display_name": "Large (32 GB, 8 CPU)",
                "mem_limit": 32 * GiB,
                "cpu_limit": 8,
                "storage": "persistent",
            },
            {
                "slug": "gpu",
                "display_name": "GPU (32 GB, 8 CPU, 1 GPU)",
                "mem_limit": 32 * GiB,
                "cpu_limit": 8,
                "gpus": 1,
                "storage": "persistent",
            },
        ],
        help="The profiles a logged-in user chooses from, first is the default; keys as for `anonymous`.",
    ).tag(config=True)

    pids_limit = Int(4096, help="Default pids (processes + threads) limit of a profile that sets none.").tag(
        config=True
    )

    cap_cpus_at_host = Bool(
        True,
        help="Cap every profile's CPUs at this host's cores (sessions run here). KubeSpawner's profile_list "
        "keeps the configured values: pods run on other nodes.",
    ).tag(config=True)

    host_cpus = Int(help="Cores of this host (default: those this process may run on).").tag(config=True)

    @default("host_cpus")
    def _default_host_cpus(self) -> int:
        return host_cpus()

    def anonymous_profile(self) -> ResourceProfile:
        return self._for_this_host(ResourceProfile.from_dict(self.anonymous, self._defaults()))

    def logged_in_profiles(self) -> list[ResourceProfile]:
        return [self._for_this_host(profile) for profile in self._configured_logged_in()]

    def _configured_logged_in(self) -> list[ResourceProfile]:
        return [ResourceProfile.from_dict(entry, self._defaults()) for entry in self.logged_in]

    def _for_this_host(self, profile: ResourceProfile) -> ResourceProfile:
        return capped_to_host(profile, self.host_cpus) if self.cap_cpus_at_host else profile

    def by_slug(self, slug: str) -> ResourceProfile:
        """A logged-in profile by its slug; ``LaunchError`` (400) naming the valid slugs otherwise."""
        profiles = self.logged_in_profiles()
        for profile in profiles:
            if profile.slug == slug:
                return profile
        raise LaunchError(f"unknown resource profile {slug!r}; choose one of {[p.slug for p in profiles]}", 400)

    def kubespawner_profile_list(self) -> list[dict[str, Any]]:
        """``KubeSpawner.profile_list`` for the logged-in tiers."""
        return [
            {
                "slug": p.slug,
                "display_name": p.display_name,
                "description": p.description,
                "default": i == 0,
                "kubespawner_override": p.kubespawner_override(),
            }
            for i, p in enumerate(self._configured_logged_in())
        ]

    def _defaults(self) -> dict[str, Any]:
        return {"pids_limit": self.pids_limit}
