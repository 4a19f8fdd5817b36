"""The default bioimage environment of logged-in users: where its requirements come from, its key, building it.

Three processes need it and find it by the same key: the hub's spawner (builds it on first use),
the binder service (builds it ahead of time when a login is configured) and dask-gateway (runs
clusters in it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..builder import EnvBuilder
from ..builder.base import Environment, LogFn
from ..events import LaunchError

#: what `c.BinderSpawner.default_environment_requirements` points at unless configured
REQUIREMENTS = Path(__file__).parent / "bioimage" / "requirements.txt"


def requirements_file(config: Any) -> Path:
    """The requirements file the configuration names (a traitlets Config, as every process loads it)."""
    return Path(config.get("BinderSpawner", {}).get("default_environment_requirements") or REQUIREMENTS)


def read_requirements(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise LaunchError(
            f"cannot read the default environment's requirements {path} ({e.strerror}); "
            "fix c.BinderSpawner.default_environment_requirements",
            500,
        ) from e


def environment_key(builder: EnvBuilder, requirements: str) -> str:
    return builder.cache_key("default", hashlib.sha256(requirements.encode()).hexdigest())


def location(config: Any, default_dir: Path) -> tuple[Path, str]:
    """Cache directory and key of the default environment, as the hub's spawner computes them from ``config``."""
    environments_dir = Path(config.get("BinderSpawner", {}).get("environments_dir") or default_dir).resolve()
    requirements = read_requirements(requirements_file(config))
    return environments_dir, environment_key(EnvBuilder(config=config, cache_dir=str(environments_dir)), requirements)


async def cached_or_built(builder: EnvBuilder, requirements: str, log: LogFn, scratch_dir: str = "") -> Environment:
    """The default environment for ``requirements``, built now if no process has built it yet."""

    async def write_requirements(source: Path) -> None:
        (source / "requirements.txt").write_text(requirements)

    return await builder.cached_or_built(environment_key(builder, requirements), write_requirements, log, scratch_dir)
