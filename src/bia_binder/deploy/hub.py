"""What the hub pod adds to z2jh's configuration: ``hub.extraConfig`` calls :func:`configure_hub`.

z2jh's own ``jupyterhub_config.py`` has already applied the values (KubeSpawner, profiles, storage,
the idle culler, ``hub.services`` with their generated tokens); this adds what the binder service
needs from the hub, as ``bia-binder up``'s configuration does on one machine:

- the endpoint that creates anonymous users in the temporary group, and the binder service's role,
  limited to that group (:mod:`bia_binder.hub.temporary_users`);
- the group, and a second culler that deletes the temporary users it stops (z2jh's culler only
  stops servers: ``cull.users`` would delete logged-in users too);
- logged-in users cannot log in under the anonymous users' ``binder-`` prefix.
"""

from __future__ import annotations

from typing import Any

from ..hub.temporary_users import configure_temporary_users, refuse_anonymous_names
from ..portal.culling import TEMPORARY_USERS_GROUP, _STOP_SCOPES, culler_command

DEFAULT_CULL = {"timeout": 12 * 3600, "maxAge": 7 * 24 * 3600, "every": 600, "concurrency": 10}


def configure_hub(c: Any, cull: dict[str, Any] | None = None, service_name: str = "binder") -> None:
    """``cull``: z2jh's ``cull`` values (``get_config("cull")`` in extraConfig); the temporary users' culler uses them."""
    configure_temporary_users(c, service_name)
    c.JupyterHub.load_groups = {**c.JupyterHub.get("load_groups", {}), TEMPORARY_USERS_GROUP: {"users": []}}
    cull = {**DEFAULT_CULL, **(cull or {})}
    if cull.get("enabled", True):
        command = culler_command(
            int(cull["timeout"]), int(cull["maxAge"]), int(cull["every"]), cull_users=True, concurrency=int(cull["concurrency"])
        )
        command[0] = "python3"  # the hub image's interpreter, as z2jh's own culler
        c.JupyterHub.services = [*c.JupyterHub.get("services", []), {"name": "idle-culler-temporary", "command": command}]
        group_filter = f"!group={TEMPORARY_USERS_GROUP}"
        c.JupyterHub.load_roles = [
            *c.JupyterHub.get("load_roles", []),
            {
                "name": "idle-culler-temporary",
                "scopes": [f"{scope}{group_filter}" for scope in (*_STOP_SCOPES, "admin:users")],
                "services": ["idle-culler-temporary"],
            },
        ]
    # at login, not with username_pattern: that would also refuse the binder-… users the endpoint creates
    c.Authenticator.post_auth_hook = refuse_anonymous_names(c.Authenticator.get("post_auth_hook"))
