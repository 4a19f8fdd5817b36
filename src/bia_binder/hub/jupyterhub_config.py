"""The JupyterHub configuration bia-binder ships (``jupyterhub -f`` this file; ``bia-binder up`` does).

Routing (one origin): the proxy sends ``/hub/`` to JupyterHub, ``/user/<name>/`` to running
sessions, and everything else to the binder service (``Proxy.extra_routes``), which also
forwards ``/user/<name>/`` requests for servers that are not running to the hub.

``bia-binder up`` passes its settings as ``BIA_BINDER_*`` environment variables; the operator's
own config file (``--config``) is loaded last, so every trait here can be overridden from it.
``JupyterHub.services``, ``load_roles`` and ``load_groups`` are merged instead: entries the
config file adds (or assigns) come on top of ours, and an entry with the name of one of ours
replaces it, e.g. to cull sooner::

    from bia_binder.portal.culling import culler_command
    c.JupyterHub.services = [{"name": "idle-culler", "command": culler_command(
        3600, 86400, 600, cull_users=False, concurrency=10)}]
"""

import os
import sys
from pathlib import Path

from bia_binder.portal.auth import configure_auth
from bia_binder.portal.culling import TEMPORARY_USERS_GROUP, configure_culler
from bia_binder.portal.dask import configure_portal_dask_gateway
from bia_binder.portal.rclone import configure_rclone
from bia_binder.sessions.sandbox import configure_sandbox
from bia_binder.hub.logs import redact_logs
from bia_binder.hub.proxy import proxy_command
from bia_binder.hub.temporary_users import configure_temporary_users
from bia_binder.sessions.spawner import ANONYMOUS_PREFIX
from bia_binder.settings import UpSettings

c = get_config()  # noqa: F821 (injected by JupyterHub)
settings = UpSettings.from_environ()
data_dir = Path(settings.data_dir)

# --- the hub and its proxy ------------------------------------------------------------------
c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
c.JupyterHub.hub_routespec = "/hub/"
c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data_dir / "secrets" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
# `up --keep-sessions`: sessions outlive a stop; the next hub adopts them (BinderSpawner.load_state)
c.JupyterHub.cleanup_servers = not settings.keep_sessions
# session tokens never reach a log line, JupyterHub's included (see hub/logs.py)
redact_logs(c)
# ConfigurableHTTPProxy that gives a restarted proxy our "/" route back at once (see hub/proxy.py)
c.JupyterHub.proxy_class = "bia_binder.hub.proxy.BinderProxy"
c.ConfigurableHTTPProxy.command, proxy_environ = proxy_command(settings.proxy_command)
os.environ.update(proxy_environ)  # the hub starts the proxy with its own environment
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = str(data_dir / "proxy.pid")
c.ConfigurableHTTPProxy.debug = False
c.Proxy.extra_routes = {"/": f"http://127.0.0.1:{settings.service_port}"}

# --- the binder service, managed by the hub -------------------------------------------------
# The service is ours and builds environments: it needs the operator's whole environment
# (HTTPS_PROXY, SSL_CERT_FILE, UV_*/PIP_* settings...), not JupyterHub's short env_keep list.
service_env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTERHUB_")}
c.JupyterHub.services = [
    {
        "name": "binder",
        "url": f"http://127.0.0.1:{settings.service_port}",
        "command": [sys.executable, "-m", "bia_binder.service.app"],
        "environment": service_env,
        "display": False,
        # JupyterHub's 10 s: the hub gives up on the service, and `up` with it, when a busy host takes longer
        # to import it (seen at 30 s on a loaded 2-core machine)
        "timeout": 120,
    }
]
# the service's token reaches temporary users only: it creates them through our endpoint, born in their group
c.JupyterHub.load_roles = []
configure_temporary_users(c, "binder")

# anonymous users join this group; the culler deletes its members (see portal/culling.py)
c.JupyterHub.load_groups = {TEMPORARY_USERS_GROUP: {}}
# idle sessions stopped after 12 h, any session after 7 days; temporary users deleted with them
configure_culler(c)

# --- sessions -------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "bia_binder.sessions.spawner.BinderSpawner"
c.BinderSpawner.environments_dir = str(data_dir / "envs")
c.BinderSpawner.sessions_dir = str(data_dir / "sessions")
c.BinderSpawner.studies_dir = str(data_dir / "studies")  # the binder service writes study notebooks there
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.JupyterHub.allow_named_servers = False
configure_sandbox(c, data_dir, allow_unsafe=settings.unsafe_no_sandbox)
c.BinderSpawner.scratch_dir = str(data_dir / "scratch")
c.HomeManager.root = str(data_dir / "homes")
configure_rclone(c, data_dir / "rclone.conf")
if settings.allow_local_repos:
    # logged-in users' repositories are resolved by the spawner, with the binder service's rules
    c.RepoProvider.allow_local_repos = True

# --- authentication (logged-in users; anonymous launches need none) ------------------------
if settings.auth == "none":
    c.JupyterHub.authenticator_class = "null"
else:
    configure_auth(c, settings.auth)


def merged_by_name(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """Our entries the config file did not replace (same name), then the config file's list
    (which still holds ours when the file appended to it instead of assigning it)."""
    their_names = {entry["name"] for entry in theirs}
    return [entry for entry in ours if entry["name"] not in their_names] + theirs


if settings.config_file:
    ours = {name: list(c.JupyterHub[name]) for name in ("services", "load_roles")}
    our_groups = dict(c.JupyterHub.load_groups)
    load_subconfig(settings.config_file)  # noqa: F821 (injected by JupyterHub)
    for name, entries in ours.items():
        c.JupyterHub[name] = merged_by_name(entries, list(c.JupyterHub[name]))
    c.JupyterHub.load_groups = {**our_groups, **c.JupyterHub.load_groups}

# --- dask-gateway for logged-in users -------------------------------------------------------
# After the operator's config: its EnvBuilder and BinderSpawner settings decide the default
# environment the clusters run in, and its own `dask-gateway` service would replace ours.
if settings.auth != "none":
    configure_portal_dask_gateway(c, settings)

# --- logged-in users cannot take the anonymous users' prefix (the spawner runs those as anonymous) ---
if settings.auth != "none":
    pattern = c.Authenticator.get("username_pattern", "")
    c.Authenticator.username_pattern = f"(?!{ANONYMOUS_PREFIX})" + (f"(?:{pattern})" if pattern else "")
