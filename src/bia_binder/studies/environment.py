"""The one environment every study session runs in, built from a lock file kept in the repository.

``environments/study/pylock.toml`` (PEP 751, made from ``requirements.in`` as docs/study.md says:
the default bioimage environment plus what the starter notebook draws with). Its hash is part of
every permanent link, and the environment's cache key is made from it: a new study never builds,
it reuses the one environment, so its first launch costs about what a warm launch does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from traitlets import Bool, Unicode
from traitlets.config import LoggingConfigurable

from ..builder import EnvBuilder
from ..builder.base import Environment, LogFn
from ..events import LaunchError

LOCK_FILE = Path(__file__).resolve().parents[1] / "environments" / "study" / "pylock.toml"
#: run after the lock is installed: compiles the bytecode once. Not part of the environment's key, which
#: permanent links name through the lock's hash: bytecode changes how fast the environment starts, not
#: what it holds, so an environment built before it keeps serving the links made with it
POST_BUILD = LOCK_FILE.with_name("postBuild")


class StudyEnvironment(LoggingConfigurable):
    lock_file = Unicode(
        str(LOCK_FILE),
        config=True,
        help="PEP 751 lock (pylock.toml) of the environment study sessions run in. Its hash goes into every study's "
        "permanent link; a permanent link made with another lock launches while that environment is still cached.",
    )
    prebuild = Bool(
        True,
        config=True,
        help="Build the study environment when the service starts, so that no study launch waits for it.",
    )

    def lock_text(self) -> str:
        try:
            return Path(self.lock_file).read_text()
        except OSError as e:
            raise LaunchError(f"cannot read the study environment's lock {self.lock_file} ({e.strerror}); "
                              "fix c.StudyEnvironment.lock_file", 500) from e

    def lock_hash(self) -> str:
        """The short hash of the lock, as it appears in permanent links."""
        return hashlib.sha256(self.lock_text().encode()).hexdigest()[:12]

    @staticmethod
    def key(builder: EnvBuilder, lock_hash: str) -> str:
        return builder.cache_key("study-environment", lock_hash)

    async def cached_or_built(self, builder: EnvBuilder, log: LogFn, scratch_dir: str = "", anonymous: bool = False) -> Environment:
        lock = self.lock_text()

        async def write_lock(source: Path) -> None:
            (source / "pylock.toml").write_text(lock)
            (source / "postBuild").write_bytes(POST_BUILD.read_bytes())
            (source / "postBuild").chmod(0o755)

        key = self.key(builder, hashlib.sha256(lock.encode()).hexdigest()[:12])
        return await builder.cached_or_built(key, write_lock, log, scratch_dir, anonymous=anonymous)
