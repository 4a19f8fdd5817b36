"""The portal's ready-made environments: where their lock files come from, their keys, building them.

Each lives in a directory of this package: ``requirements.in`` (what we ask for), ``requirements.txt``
(its lock, made by ``make locks``: the builder installs exactly these pins) and, for the default one, a
``postBuild`` that registers the kernels of the host's languages (R, Octave, Kotlin, Bash).

- ``bioimage`` (the default): the bioimage stack, kernels for R, Octave, Kotlin and Bash, OMERO, ImageJ from
  Python, ImJoy (off by default);
- ``deeplearning``: PyTorch (CPU wheels), cellpose, bioimageio.core.

Three processes need the default one and find it by the same key: the hub's spawner (builds it on first
use), the binder service (builds it ahead of time when a login is configured) and dask-gateway (runs
clusters in it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ..builder import EnvBuilder
from ..builder.base import Environment, LogFn
from ..events import LaunchError

#: what `c.BinderSpawner.default_environment_requirements` points at unless configured
REQUIREMENTS = Path(__file__).parent / "bioimage" / "requirements.txt"
#: ... and `c.BinderSpawner.deep_learning_requirements`
DEEP_LEARNING_REQUIREMENTS = Path(__file__).parent / "deeplearning" / "requirements.txt"
POST_BUILD = "postBuild"


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


def read_post_build(requirements_path: str | Path) -> str:
    """The ``postBuild`` beside a requirements file, or '' when there is none."""
    script = Path(requirements_path).parent / POST_BUILD
    return script.read_text() if script.is_file() else ""


#: pinned packages PyPI has no wheel of for our Python, and how an operator makes one (a find-links directory)
LOCAL_WHEELS = {"zeroc-ice": "`make omero-wheels` (OMERO's Ice runtime)"}


def check_wheels_at_hand(builder: EnvBuilder, requirements: str) -> None:
    """Fail at once, naming the fix, when the lock pins a package whose wheel only a find-links
    directory can hold and none holds it: uv would otherwise fall back to compiling its sdist
    (zeroc-ice: minutes of C++, then a compile error on Python 3.11)."""
    for name, how in LOCAL_WHEELS.items():
        pin = re.search(rf"^{re.escape(name)}==(\S+)", requirements, re.MULTILINE)
        if not pin:
            continue
        wheel = f"{name.replace('-', '_')}-{pin.group(1)}-*.whl"
        if not any(next(Path(directory).glob(wheel), None) for directory in builder.find_links):
            raise LaunchError(
                f"the default environment pins {name}=={pin.group(1)}, whose wheel is in no c.EnvBuilder.find_links "
                f"directory ({', '.join(builder.find_links) or 'none configured'}): build it on the host with {how}, then "
                "restart the service",
                503,
            )


def environment_key(builder: EnvBuilder, requirements: str, post_build: str = "") -> str:
    content = requirements if not post_build else f"{requirements}\0{POST_BUILD}\0{post_build}"
    return builder.cache_key("default", hashlib.sha256(content.encode()).hexdigest())


def location(config: Any, default_dir: Path) -> tuple[Path, str]:
    """Cache directory and key of the default environment, as the hub's spawner computes them from ``config``."""
    environments_dir = Path(config.get("BinderSpawner", {}).get("environments_dir") or default_dir).resolve()
    path = requirements_file(config)
    builder = EnvBuilder(config=config, cache_dir=str(environments_dir))
    return environments_dir, environment_key(builder, read_requirements(path), read_post_build(path))


async def cached_or_built(
    builder: EnvBuilder, requirements: str, log: LogFn, scratch_dir: str = "", post_build: str = ""
) -> Environment:
    """The environment of ``requirements`` (and ``post_build``), built now if no process has built it yet."""

    async def write_sources(source: Path) -> None:
        check_wheels_at_hand(builder, requirements)
        (source / "requirements.txt").write_text(requirements)
        if post_build:
            (source / POST_BUILD).write_text(post_build)
            (source / POST_BUILD).chmod(0o755)

    key = environment_key(builder, requirements, post_build)
    return await builder.cached_or_built(key, write_sources, log, scratch_dir)
