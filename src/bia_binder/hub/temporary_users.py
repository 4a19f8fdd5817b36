"""A hub API endpoint that creates one anonymous user, already in the temporary users' group.

Why hand-written: JupyterHub's scopes can limit a token to a group's users (``!group=...``), but
creating a user needs ``admin:users`` without a filter (a new user is in no group yet), and
adding users to the group needs ``groups!group=...``, which would let the token add *any* user
(a logged-in one) to the group and then control them. With this endpoint the binder service's
token creates only ``binder-...`` users, born in ``binder-temporary``, and every other scope it
has is filtered to that group (see ``jupyterhub_config.py``)::

    POST /hub/api/binder/temporary-users   {"name": "binder-org-repo-1a2b3c4d"}
    → 201 {"name": ..., "groups": ["binder-temporary"]}   409 if it exists, 400 for another name

It needs the custom scope ``custom:binder:temporary-users``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from ..portal.culling import TEMPORARY_USERS_GROUP
from ..sessions.spawner import ANONYMOUS_PREFIX

SCOPE = "custom:binder:temporary-users"
SCOPE_DESCRIPTION = {"description": "Create anonymous binder users (binder-*) in the temporary users' group."}

#: the launcher's names: binder-<slug>-<8 hex>; the spawner treats every binder-* user as anonymous
NAME = re.compile(r"^binder-[a-z0-9][a-z0-9._-]{0,60}$")


class TemporaryUsersHandler(APIHandler):
    async def post(self) -> None:
        if self.current_user is None or SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"Creating temporary users needs the scope {SCOPE}")
        body = self.get_json_body() or {}
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not NAME.match(name):
            raise web.HTTPError(400, "name must look like binder-<slug>-<hex> (lower case, at most 67 characters)")
        if self.find_user(name) is not None:
            raise web.HTTPError(409, f"User {name} already exists")
        group = orm.Group.find(self.db, TEMPORARY_USERS_GROUP)
        if group is None:
            group = orm.Group(name=TEMPORARY_USERS_GROUP)
            self.db.add(group)
        user = self.user_from_username(name)
        group.users.append(user.orm_user)
        self.db.commit()
        await self._maybe(self.authenticator.add_user(user))
        self.set_status(201)
        self.write(json.dumps({"name": user.name, "groups": [g.name for g in user.groups]}))

    @staticmethod
    async def _maybe(result) -> None:
        if hasattr(result, "__await__"):
            await result


def configure_temporary_users(c, service_name: str) -> None:
    """The endpoint, its scope, and a role giving the binder service exactly what a launch needs."""
    group = f"!group={TEMPORARY_USERS_GROUP}"
    # JupyterHub.extra_handlers is marked deprecated in favour of services, but no service can do this
    # (see the module docstring); it is still how the hub mounts an API handler of its own
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), (r"/api/binder/temporary-users", TemporaryUsersHandler)]
    c.JupyterHub.custom_scopes = {**c.JupyterHub.get("custom_scopes", {}), SCOPE: SCOPE_DESCRIPTION}
    c.JupyterHub.load_roles = [
        *c.JupyterHub.get("load_roles", []),
        {
            "name": "binder-service",
            "description": "create, start, stop and remove temporary binder users, and nobody else",
            "scopes": [
                SCOPE,
                f"servers{group}",  # start, stop, read servers (and their progress)
                f"read:users{group}",
                f"list:users{group}",  # admission counts the running ones
                f"delete:users{group}",  # a failed launch removes its user
            ],
            "services": [service_name],
        },
    ]


def refuse_anonymous_names(previous: Callable | None = None) -> Callable:
    """A ``post_auth_hook`` refusing logins as ``binder-…`` (the spawner runs those names as anonymous sessions)."""

    async def hook(authenticator: Any, handler: Any, authentication: dict[str, Any] | None) -> dict[str, Any] | None:
        if previous is not None:
            authentication = previous(authenticator, handler, authentication)
            if inspect.isawaitable(authentication):
                authentication = await authentication
        if authentication and str(authentication.get("name", "")).startswith(ANONYMOUS_PREFIX):
            authenticator.log.warning("Refused a login as %s: names %s... are anonymous sessions'",
                                      authentication["name"], ANONYMOUS_PREFIX)
            return None
        return authentication

    return hook
