"""Dask for every session: a profile-sized ``LocalCluster`` and a shared dask-gateway.

Two pieces, both called from the hub configuration:

:func:`configure_dask_gateway`
    runs ``dask-gateway-server`` (local backend) as the JupyterHub service ``dask-gateway``
    with JupyterHub authentication: the gateway's HTTP API is served through the hub's proxy at
    ``/services/dask-gateway/``, schedulers are reached on a TCP port on the host. Sessions get
    ``DASK_GATEWAY__*`` variables and their token the scope to use the service, so a notebook
    just does ``from dask_gateway import Gateway; Gateway().new_cluster()``.

    Only logged-in users get it (anonymous ``binder-…`` sessions do not). The gateway runs as the
    hub's user; on one machine its local backend (:class:`UnprivilegedLocalBackend`) runs every
    cluster's processes as one unprivileged system user (``cluster_user``, default ``nobody``),
    not as each hub user: clusters of different users are not isolated from each other. The
    Kubernetes backend (deployment issue) gives each cluster its own pods.

:func:`session_dask_environment`
    environment variables for a session of a given profile (CPUs, memory): dask-labextension's
    "New cluster" button and ``LocalCluster(**dask.config.get("labextension.factory.kwargs"))``
    make a cluster that fits the session instead of the whole machine.

:func:`configure_dask_gateway` adds to ``c.JupyterHub.services``/``load_roles`` and
``c.Spawner.environment`` (traitlets' ``append``/``update``): a config file that *assigns* these
after the call replaces them.

Example::

    configure_dask_gateway(c, hub_url="http://127.0.0.1:8000",
                           cluster_bin_dir="/var/lib/bia-binder/envs/<default-env>/env/bin")
    spawner.environment.update(session_dask_environment(cpus=4, memory=16 * 2**30))
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dask_gateway_server.backends.local import LocalBackend
from traitlets import Unicode
from traitlets.config import Config

from .culling import is_temporary_user

SERVICE_NAME = "dask-gateway"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"


class DaskGatewayConfigError(ValueError):
    """The gateway cannot work as configured; the message says what to change."""


#: JupyterHub's `server` role: what a session's $JUPYTERHUB_API_TOKEN holds unless configured
DEFAULT_SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")


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


def gateway_config(
    *,
    http_address: str,
    tcp_address: str,
    clusters_dir: Path,
    cluster_bin_dir: Path,
    cluster_user: str,
    max_cores: float,
    max_memory: int,
    cluster_idle_timeout: int,
) -> dict[str, dict[str, Any]]:
    """dask-gateway-server's configuration (a traitlets JSON config)."""
    return {
        "DaskGateway": {
            "backend_class": f"{__name__}.UnprivilegedLocalBackend",
            "authenticator_class": "dask_gateway_server.auth.JupyterHubAuthenticator",
        },
        "Proxy": {"address": http_address, "tcp_address": tcp_address, "prefix": f"/services/{SERVICE_NAME}"},
        "UnprivilegedLocalBackend": {"clusters_directory": str(clusters_dir), "cluster_user": cluster_user},
        "LocalClusterConfig": {
            "scheduler_cmd": [str(cluster_bin_dir / "dask"), "scheduler"],
            "worker_cmd": [str(cluster_bin_dir / "dask"), "worker"],
            "cluster_max_cores": max_cores,
            "cluster_max_memory": max_memory,
            "idle_timeout": cluster_idle_timeout,
        },
    }


def configure_dask_gateway(
    c: Config,
    *,
    hub_url: str,
    state_dir: Path | str = "/var/lib/bia-binder/dask-gateway",
    cluster_bin_dir: Path | str,
    http_port: int = 8788,
    tcp_port: int = 8786,
    cluster_user: str = "nobody",
    max_cores: float = 8,
    max_memory: int = 32 * 1024**3,
    cluster_idle_timeout: int = 3600,
) -> None:
    """Run dask-gateway-server as the hub service ``dask-gateway`` and point sessions at it.

    ``hub_url``: the public URL of the hub's proxy, as sessions reach it; ``state_dir``: holds the
    gateway's config and the clusters' working directories; ``cluster_bin_dir``: the ``bin/`` of
    the environment clusters run in (it needs ``distributed`` and ``dask-gateway``; use the
    default session environment so workers match notebooks) — it must be executable by
    ``cluster_user``; ``http_port``/``tcp_port``: the gateway's HTTP port (the hub proxies to it)
    and scheduler port, both on 127.0.0.1; ``max_cores``/``max_memory`` (bytes) per cluster;
    ``cluster_idle_timeout``: seconds before an unused cluster is shut down.
    """
    cluster_bin_dir, state_dir = Path(cluster_bin_dir), Path(state_dir)
    _check_runnable_by(cluster_bin_dir / "dask", cluster_user)
    clusters_dir = state_dir / "clusters"
    clusters_dir.mkdir(parents=True, exist_ok=True)
    clusters_dir.chmod(0o755)  # the cluster user must reach its own working directory below
    config_path = state_dir / "dask_gateway_config.json"
    config = gateway_config(
        http_address=f"127.0.0.1:{http_port}",
        tcp_address=f"127.0.0.1:{tcp_port}",
        clusters_dir=clusters_dir,
        cluster_bin_dir=cluster_bin_dir,
        cluster_user=cluster_user,
        max_cores=max_cores,
        max_memory=max_memory,
        cluster_idle_timeout=cluster_idle_timeout,
    )
    config_path.write_text(json.dumps(config, indent=2))
    service = {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{http_port}",
        "command": [str(Path(sys.executable).parent / "dask-gateway-server"), "-f", str(config_path)],
        "cwd": str(state_dir),
    }
    c.JupyterHub.services.append(service)
    _grant_users_gateway_access(c)
    c.Spawner.environment.update(gateway_client_environment(hub_url, tcp_port))


def _check_runnable_by(program: Path, username: str) -> None:
    """Fail now, with the reason, rather than at a user's first cluster."""
    account = pwd.getpwnam(username)
    probe = subprocess.run(
        ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", str(program), "--version"],
        capture_output=True,
        timeout=120,
    )
    if probe.returncode != 0:
        raise DaskGatewayConfigError(
            f"dask-gateway: {program} cannot be run by the cluster user {username!r}; "
            "build the cluster environment where that user can read it (not under /root)"
        )


def _grant_users_gateway_access(c: Config) -> None:
    """Logged-in users, and the tokens of their sessions, may use the gateway (its auth checks this scope).

    Anonymous temporary users are left out: their sessions' tokens do not get the scope.
    """
    # A config that defines the `user` role itself must add ACCESS_SCOPE to it.
    c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", ACCESS_SCOPE]})
    if "server_token_scopes" not in c.Spawner:  # a deployer's own choice must then add ACCESS_SCOPE
        c.Spawner.server_token_scopes = session_token_scopes


def session_token_scopes(spawner: Any) -> list[str]:
    """Scopes of a session's ``$JUPYTERHUB_API_TOKEN``: JupyterHub's default, plus the gateway for logged-in users."""
    scopes = list(DEFAULT_SERVER_TOKEN_SCOPES)
    if not is_temporary_user(spawner.user):
        scopes.append(ACCESS_SCOPE)
    return scopes


def gateway_client_environment(hub_url: str, tcp_port: int) -> dict[str, str]:
    """What ``dask_gateway.Gateway()`` needs in a session (dask config as environment variables)."""
    return {
        "DASK_GATEWAY__ADDRESS": f"{hub_url.rstrip('/')}/services/{SERVICE_NAME}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{tcp_port}",
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"/services/{SERVICE_NAME}",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def session_dask_environment(cpus: float, memory: int) -> dict[str, str]:
    """Dask config for a session with ``cpus`` CPUs and ``memory`` bytes: a LocalCluster that fits it.

    One single-threaded worker per whole CPU (processes sidestep the GIL for image work), memory
    split evenly with a quarter of it left for the notebook's kernel.
    """
    if cpus <= 0 or memory <= 0:
        raise ValueError(f"session_dask_environment: cpus and memory must be positive, got {cpus}, {memory}")
    workers = max(1, int(cpus))
    per_worker = int(memory * 0.75) // workers
    return {
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask.distributed",
        "DASK_LABEXTENSION__FACTORY__CLASS": "LocalCluster",
        "DASK_LABEXTENSION__FACTORY__KWARGS__N_WORKERS": str(workers),
        "DASK_LABEXTENSION__FACTORY__KWARGS__THREADS_PER_WORKER": "1",
        "DASK_LABEXTENSION__FACTORY__KWARGS__MEMORY_LIMIT": str(per_worker),
    }
