"""dask-gateway-server backends (imported by the gateway process only; see :mod:`bia_binder.portal.dask`)."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import LocalBackend
from traitlets import Unicode, default

from ..builder.base import Environment
from ..builder.cache import EnvCache
from .dask import (
    PIN_HOLDER,
    DaskGatewayConfigError,
    check_cluster_environment,
    cluster_commands,
)


class UnprivilegedLocalBackend(LocalBackend):
    """dask-gateway's local backend, running every cluster as one unprivileged system user.

    The stock ``LocalBackend`` runs a cluster as the system account named like the hub user,
    which hub users (``binder-…``, LS Login ids) do not have; ``UnsafeLocalBackend`` runs it as
    the gateway (root). Here the gateway stays root and clusters drop to :attr:`cluster_user`.
    """

    cluster_user = Unicode(
        "nobody",
        help="System user that runs the schedulers and workers of every cluster.",
        config=True,
    )

    @default("inherited_environment")
    def _default_inherited_environment(self) -> list[str]:
        # not the gateway's PATH/VIRTUAL_ENV (our own environment, which the cluster user may not
        # even read): a cluster's environment sets those (LocalClusterConfig.environment)
        return ["LANG", "LC_ALL"]

    def set_file_permissions(self, paths: list[str], username: str) -> None:
        # Hand the whole working directory (paths[0]: logs, TLS key and certificate) to the
        # cluster user. The list itself can't be trusted: LocalBackend 2026.3 adds the key and
        # certificate paths to it character by character.
        account = pwd.getpwnam(self.cluster_user)
        workdir = Path(paths[0])
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid)

    def make_preexec_fn(self, cluster: Any) -> Callable[[], None]:
        account = pwd.getpwnam(self.cluster_user)
        workdir = cluster.state["workdir"]

        def preexec() -> None:
            os.setgid(account.pw_gid)
            os.setgroups([])
            os.setuid(account.pw_uid)
            os.chdir(workdir)

        return preexec


class DefaultEnvironmentBackend(UnprivilegedLocalBackend):
    """Clusters run in the default bioimage environment of logged-in sessions.

    The hub builds that environment on a user's first session with it, so the gateway starts
    without it and refuses new clusters, saying why, until it exists; then it pins it (the
    cache never evicts it while the gateway uses it). A cluster keeps the commands it started with.
    """

    environments_dir = Unicode(config=True, help="The hub's environment cache (c.BinderSpawner.environments_dir).")
    environment_key = Unicode(config=True, help="Cache key of the default environment, as the hub's spawner computes it.")

    _environment: Environment | None = None

    async def do_setup(self) -> None:
        await super().do_setup()
        # pins of environments an earlier configuration used would keep them forever
        cache = EnvCache(Path(self.environments_dir))
        for pin in cache.pins_dir.glob(f"*/{PIN_HOLDER}"):
            if pin.parent.name != self.environment_key:
                cache.unpin(pin.parent.name, PIN_HOLDER)

    async def start_cluster(self, user: Any, cluster_options: dict) -> str:
        await self._require_environment()
        return await super().start_cluster(user, cluster_options)

    async def process_cluster_options(self, user: Any, request: dict) -> tuple[Any, Any]:
        options, config = await super().process_cluster_options(user, request)
        commands = cluster_commands(self._environment.bin_dir)
        config.scheduler_cmd, config.worker_cmd = commands["scheduler_cmd"], commands["worker_cmd"]
        config.environment = {**config.environment, **commands["environment"]}
        return options, config

    async def _require_environment(self) -> None:
        root = Path(self.environments_dir) / self.environment_key
        if not (root / "environment.json").is_file():
            self._environment = None
            raise PublicException(
                "dask-gateway: clusters run in the default bioimage environment, which is not built yet: "
                "start a session with the default environment once (that builds it), then try again"
            )
        if self._environment is not None:
            return
        environment = Environment.load(root)
        try:
            await asyncio.to_thread(check_cluster_environment, environment.bin_dir, self.cluster_user)
        except DaskGatewayConfigError as e:
            raise PublicException(str(e)) from None
        EnvCache(Path(self.environments_dir)).pin(self.environment_key, PIN_HOLDER)
        self._environment = environment
        self.log.info("Clusters run in %s as %s", environment.env_dir, self.cluster_user)
