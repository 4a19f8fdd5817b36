"""The JupyterHub configuration bia-binder ships (``jupyterhub -f`` this file; ``bia-binder up`` does).

Routing (one origin): the proxy sends ``/hub/`` to JupyterHub, ``/user/<name>/`` to running
sessions, and everything else to the binder service (``Proxy.extra_routes``), which also
forwards ``/user/<name>/`` requests for servers that are not running to the hub.

``bia-binder up`` passes its settings as ``BIA_BINDER_*`` environment variables; the operator's
own config file (``--config``) is loaded last, so every trait here can be overridden from it.
"""

import os
import sys
from pathlib import Path

from bia_binder.hub.settings import UpSettings

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
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [settings.proxy_command]
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
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "binder-service",
        "description": "start and remove temporary binder users",
        "scopes": ["admin:users", "admin:servers", "read:users", "list:users"],
        "services": ["binder"],
    }
]

# --- sessions -------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "bia_binder.hub.spawner.BinderSpawner"
c.BinderSpawner.environments_dir = str(data_dir / "envs")
c.BinderSpawner.sessions_dir = str(data_dir / "sessions")
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.JupyterHub.allow_named_servers = False
# Inside a session the whole data dir (hub database, secrets, environment cache, other sessions)
# is an empty directory; the session's own environment and home are shown again by the spawner.
c.Sandbox.hidden_paths = [str(data_dir)]
c.Sandbox.state_dir = str(data_dir / "sandbox")
c.Sandbox.allow_unsafe = settings.unsafe_no_sandbox

# --- authentication (logged-in users; anonymous launches need none) ------------------------
c.JupyterHub.authenticator_class = "dummy" if settings.auth == "dev" else "null"

if settings.config_file:
    load_subconfig(settings.config_file)  # noqa: F821 (injected by JupyterHub)
