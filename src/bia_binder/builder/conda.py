"""The conda executor: a real conda solver and installer (py-rattler), no conda installation needed.

Packages are installed into the build directory but their embedded prefix is the environment's
final path in the cache (rattler's ``alternative_target_prefix``), so publishing by rename is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..events import LaunchError
from .base import LogFn


@dataclass
class CondaSettings:
    channel_alias: str  # base URL of named channels (``conda-forge`` -> ``<alias>/conda-forge``)
    pkgs_dir: Path  # conda package cache, on the cache's filesystem so files are hardlinked


class CondaInstaller:
    def __init__(self, settings: CondaSettings, env_dir: Path, final_env_dir: Path, log: LogFn):
        self.settings = settings
        self.env_dir = env_dir
        self.final_env_dir = final_env_dir
        self.log = log

    async def solve(self, channels: Sequence[str], specs: Sequence[str]) -> list:
        rattler = _rattler()
        config = rattler.ChannelConfig(channel_alias=self.settings.channel_alias.rstrip("/") + "/")
        self.log(f"Solving conda packages {', '.join(specs)} from {', '.join(channels)}\n")
        try:
            records = await rattler.solve(
                sources=[rattler.Channel(channel, config) for channel in channels],
                specs=list(specs),
                gateway=rattler.Gateway(cache_dir=self.settings.pkgs_dir / "repodata"),
                platforms=[rattler.Platform.current(), rattler.Platform("noarch")],
                virtual_packages=[vp.into_generic() for vp in rattler.VirtualPackage.detect()],
            )
        except Exception as e:  # rattler raises its own exception types per cause; each becomes one line
            raise LaunchError(f"solving environment.yml's conda packages failed: {_first_line(e)}", 500) from None
        for record in records:
            self.log(f" + {record.name.normalized}=={record.version} ({record.channel})\n")
        return records

    async def install(self, records: list) -> None:
        rattler = _rattler()
        try:
            await rattler.install(
                records,
                target_prefix=self.env_dir,
                alternative_target_prefix=self.final_env_dir,
                cache_dir=self.settings.pkgs_dir,
                show_progress=False,
                execute_link_scripts=False,
            )
        except Exception as e:  # see solve
            raise LaunchError(f"installing conda packages failed: {_first_line(e)}", 500) from None
        self.log(f"Installed {len(records)} conda package(s)\n")

    def read_lock(self, path: Path) -> tuple[list, list[str]]:
        """The conda records and PyPI requirement lines a pixi/conda lock file pins for this platform."""
        rattler = _rattler()
        try:
            lock = rattler.LockFile.from_path(path)
        except Exception as e:  # see solve
            raise LaunchError(
                f"{path.name} cannot be read ({_first_line(e)}): regenerate it with 'pixi lock'", 400
            ) from None
        environment = lock.default_environment()
        if environment is None:
            raise LaunchError(f"{path.name} has no default environment: regenerate it with 'pixi lock'", 400)
        platform = str(rattler.Platform.current())
        # rattler needs the lock file's own platform object, not an equal new one
        locked = next((p for p in environment.platforms() if str(p.subdir) == platform), None)
        records = environment.conda_repodata_records_for_platform(locked) if locked else None
        if records is None:
            raise LaunchError(
                f"{path.name} locks nothing for {platform}: add {platform} to the platforms and run 'pixi lock'", 400
            )
        pypi = environment.pypi_packages_for_platform(locked) or []
        return records, [f"{package.name} @ {package.location}" for package in pypi]


def _rattler():
    try:
        import rattler
    except ImportError:
        raise LaunchError(
            "conda packages need py-rattler, which is not installed: pip install py-rattler", 500
        ) from None
    return rattler


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
