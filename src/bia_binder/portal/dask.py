"""Dask for every session: a profile-sized ``LocalCluster`` and a shared dask-gateway.

Three pieces:

:func:`configure_portal_dask_gateway`
    what ``bia-binder up --auth ...`` runs (configured by ``c.DaskGatewayService.*``): the gateway
    below, its clusters running in the *default bioimage environment* of logged-in sessions, so
    workers import exactly what notebooks import. That environment is built lazily (by a user's
    first session with it); until then the gateway is up but refuses new clusters with a message
    saying so (:class:`~bia_binder.portal.dask_backends.DefaultEnvironmentBackend`). Where the host
    cannot run the gateway (see :meth:`DaskGatewayService.unavailable_reason`), nothing is
    configured and ``bia-binder up`` says why in its start-up report.

:func:`configure_dask_gateway`
    runs ``dask-gateway-server`` (local backend) as the JupyterHub service ``dask-gateway``
    with JupyterHub authentication: the gateway's HTTP API is served through the hub's proxy at
    ``/services/dask-gateway/``, schedulers are reached on a TCP port on the host. Sessions get
    ``DASK_GATEWAY__*`` variables and their token the scope to use the service, so a notebook
    just does ``from dask_gateway import Gateway; Gateway().new_cluster()``.

    Only logged-in users get it (anonymous ``binder-…`` sessions do not). The gateway runs as the
    hub's user; on one machine its local backend
    (:class:`~bia_binder.portal.dask_backends.UnprivilegedLocalBackend`) runs every
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

import importlib.util
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Config, LoggingConfigurable

from ..events import LaunchError
from ..environments import default as default_environment
from .culling import is_temporary_user
from ..settings import UpSettings

SERVICE_NAME = "dask-gateway"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
#: holder of the gateway's pin on the environment its clusters run in (the cache never evicts it)
PIN_HOLDER = "dask-gateway"
#: the gateway's backends live apart: this module is imported by every session's spawner, and
#: must not need dask-gateway-server to be importable
BACKENDS = "bia_binder.portal.dask_backends"
GiB = 1024**3


class DaskGatewayConfigError(ValueError):
    """The gateway cannot work as configured; the message says what to change."""


#: JupyterHub's `server` role: what a session's $JUPYTERHUB_API_TOKEN holds unless configured
DEFAULT_SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")


def gateway_config(
    *,
    http_address: str,
    tcp_address: str,
    clusters_dir: Path,
    cluster_bin_dir: Path | None,
    cluster_user: str,
    max_cores: float,
    max_memory: int,
    cluster_idle_timeout: int,
    backend: str = "UnprivilegedLocalBackend",
) -> dict[str, dict[str, Any]]:
    """dask-gateway-server's configuration (a traitlets JSON config).

    ``cluster_bin_dir`` None: the backend chooses the environment per cluster (``DefaultEnvironmentBackend``).
    """
    config: dict[str, dict[str, Any]] = {
        "DaskGateway": {
            "backend_class": f"{BACKENDS}.{backend}",
            "authenticator_class": "dask_gateway_server.auth.JupyterHubAuthenticator",
        },
        "Proxy": {"address": http_address, "tcp_address": tcp_address, "prefix": f"/services/{SERVICE_NAME}"},
        "UnprivilegedLocalBackend": {"clusters_directory": str(clusters_dir), "cluster_user": cluster_user},
        "LocalClusterConfig": {
            "cluster_max_cores": max_cores,
            "cluster_max_memory": max_memory,
            "idle_timeout": cluster_idle_timeout,
        },
    }
    if cluster_bin_dir is not None:
        config["LocalClusterConfig"].update(cluster_commands(cluster_bin_dir))
    return config


def cluster_commands(bin_dir: Path) -> dict[str, Any]:
    """Scheduler and worker commands of clusters running in the environment of ``bin_dir``.

    Its ``bin/`` first on PATH: what a worker runs in a subprocess comes from the same environment.
    """
    return {
        "scheduler_cmd": [str(bin_dir / "dask"), "scheduler"],
        "worker_cmd": [str(bin_dir / "dask"), "worker"],
        "environment": {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "VIRTUAL_ENV": str(bin_dir.parent)},
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
    check_cluster_environment(cluster_bin_dir, cluster_user)
    config = gateway_config(
        http_address=f"127.0.0.1:{http_port}",
        tcp_address=f"127.0.0.1:{tcp_port}",
        clusters_dir=_clusters_dir(state_dir),
        cluster_bin_dir=cluster_bin_dir,
        cluster_user=cluster_user,
        max_cores=max_cores,
        max_memory=max_memory,
        cluster_idle_timeout=cluster_idle_timeout,
    )
    _add_gateway_service(c, config, state_dir=state_dir, hub_url=hub_url, http_port=http_port, tcp_port=tcp_port)


class DaskGatewayService(LoggingConfigurable):
    """dask-gateway as ``bia-binder up`` runs it for logged-in users (``c.DaskGatewayService.*``)."""

    enabled = Bool(True, config=True, help="Run dask-gateway when users log in (--auth oidc|native|dev).")
    cluster_user = Unicode(
        "nobody",
        config=True,
        help="System user running every cluster's scheduler and workers (clusters of different users are "
        "not isolated from each other).",
    )
    http_port = Int(
        0, config=True, help="Port of the gateway's HTTP API on 127.0.0.1 (proxied at /services/dask-gateway/); 0: any free port."
    )
    tcp_port = Int(0, config=True, help="Port on 127.0.0.1 sessions reach schedulers through; 0: any free port.")
    max_cores = Float(8, config=True, help="Cores one cluster may use in total.")
    max_memory = Int(32 * GiB, config=True, help="Bytes of memory one cluster may use in total.")
    cluster_idle_timeout = Int(3600, config=True, help="Seconds before a cluster nobody uses is shut down.")

    def unavailable_reason(self) -> str | None:
        """Why this host cannot run the gateway (one line), or None."""
        if not self.enabled:
            return "turned off by c.DaskGatewayService.enabled"
        if importlib.util.find_spec("dask_gateway_server") is None:
            return "dask-gateway-server is not installed with bia-binder (run `make install`)"
        if not gateway_server_command().exists():
            return f"{gateway_server_command()} is missing (run `make install`)"
        if os.geteuid() != 0:
            return f"clusters run as the system user {self.cluster_user!r}, and switching to it needs root"
        try:
            pwd.getpwnam(self.cluster_user)
        except KeyError:
            return f"the cluster user {self.cluster_user!r} does not exist on this host (set c.DaskGatewayService.cluster_user)"
        return None


def configure_portal_dask_gateway(c: Config, settings: UpSettings) -> str | None:
    """The shipped hub config's call: dask-gateway for logged-in users, clusters in the default environment.

    Call it after the operator's config is loaded: its ``c.EnvBuilder`` and
    ``c.BinderSpawner.default_environment_requirements`` decide which environment that is, and a
    service it names ``dask-gateway`` replaces ours. Returns why the gateway does not run, or None.
    """
    if any(entry.get("name") == SERVICE_NAME for entry in c.JupyterHub.get("services", [])):
        return None
    gateway = DaskGatewayService(config=c)
    reason = gateway.unavailable_reason()
    if reason is not None:
        gateway.log.warning("dask-gateway is off: %s", reason)
        return reason
    data_dir = Path(settings.data_dir)
    try:
        environments_dir, key = default_environment.location(c, data_dir / "envs")
    except LaunchError as e:
        reason = f"dask-gateway: {e.message}"
        gateway.log.warning("dask-gateway is off: %s", reason)
        return reason
    http_port, tcp_port = gateway.http_port or _free_port(), gateway.tcp_port or _free_port()
    state_dir = data_dir / "dask-gateway"
    # sessions run on this host: they reach the proxy on loopback unless it listens on one address only
    host = "127.0.0.1" if settings.ip in ("", "0.0.0.0", "::") else settings.ip
    hub_url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    config = gateway_config(
        http_address=f"127.0.0.1:{http_port}",
        tcp_address=f"127.0.0.1:{tcp_port}",
        clusters_dir=_clusters_dir(state_dir),
        cluster_bin_dir=None,
        cluster_user=gateway.cluster_user,
        max_cores=gateway.max_cores,
        max_memory=gateway.max_memory,
        cluster_idle_timeout=gateway.cluster_idle_timeout,
        backend="DefaultEnvironmentBackend",
    )
    config["DefaultEnvironmentBackend"] = {"environments_dir": str(environments_dir), "environment_key": key}
    _add_gateway_service(c, config, state_dir=state_dir, hub_url=hub_url, http_port=http_port, tcp_port=tcp_port)
    return None


def gateway_server_command() -> Path:
    return Path(sys.executable).parent / "dask-gateway-server"


def _free_port() -> int:
    from ..up import free_port

    return free_port()


def _clusters_dir(state_dir: Path) -> Path:
    clusters_dir = state_dir / "clusters"
    clusters_dir.mkdir(parents=True, exist_ok=True)
    # the cluster user must reach its own working directory below
    for path in (state_dir, clusters_dir):
        path.chmod(0o755)
    return clusters_dir


def _add_gateway_service(
    c: Config, config: dict[str, Any], *, state_dir: Path, hub_url: str, http_port: int, tcp_port: int
) -> None:
    config_path = state_dir / "dask_gateway_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    service = {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{http_port}",
        "command": [str(gateway_server_command()), "-f", str(config_path)],
        "cwd": str(state_dir),
        # JupyterHub passes services a handful of variables; the gateway needs the operator's
        # locale and HOME, never the hub's secrets
        "environment": {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("JUPYTERHUB_", "BIA_BINDER_")) and "PASSWORD" not in key and "SECRET" not in key
        },
    }
    c.JupyterHub.services.append(service)
    _grant_users_gateway_access(c)
    c.Spawner.environment.update(gateway_client_environment(hub_url, tcp_port))


def check_cluster_environment(bin_dir: Path, username: str) -> None:
    """Fail now, with the reason, rather than at a user's first cluster: ``username`` must run the
    environment's Python and import what schedulers and workers need."""
    account = pwd.getpwnam(username)
    python = bin_dir / "python"
    try:
        probe = subprocess.run(
            [str(python), "-c", "import dask_gateway, distributed"],
            user=account.pw_uid, group=account.pw_gid, extra_groups=[], cwd="/", check=False,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    except OSError:
        probe = None
    if probe is not None and probe.returncode == 0:
        return
    if probe is not None and "ModuleNotFoundError" in probe.stderr:
        missing = probe.stderr.strip().splitlines()[-1].split("No module named")[-1].strip(" '\"")
        raise DaskGatewayConfigError(
            f"dask-gateway: the cluster environment {bin_dir.parent} lacks {missing}: "
            "add dask-gateway and distributed to its requirements (c.BinderSpawner.default_environment_requirements)"
        )
    raise DaskGatewayConfigError(
        f"dask-gateway: {python} cannot be run by the cluster user {username!r}; "
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
