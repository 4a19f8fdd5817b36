"""Reclaiming sessions on schedule: jupyterhub-idle-culler as JupyterHub services.

The hub configuration calls::

    from bia_binder.portal.culling import configure_culler
    configure_culler(c, idle_timeout=12 * 3600, max_age=7 * 24 * 3600)

Two culler services are registered:

``idle-culler``
    stops every session (anonymous and logged-in alike) idle for ``idle_timeout`` seconds or
    older than ``max_age`` seconds. Logged-in users and their homes stay.
``idle-culler-temporary``
    additionally *deletes* the anonymous temporary users: members of the JupyterHub group
    :data:`TEMPORARY_USERS_GROUP`. Its role is limited to that group by JupyterHub's scope
    filters (``!group=``), so it cannot delete anyone else even by mistake.

Contract for the binder service, which creates the anonymous users (named ``binder-…``):
after ``POST /hub/api/users/<name>`` it adds the user to the group with
``POST /hub/api/groups/binder-temporary/users {"users": [<name>]}`` (scope
``groups!group=binder-temporary``). The group is created at hub start-up.

When JupyterHub deletes a user it calls the spawner's ``delete_forever()``; the spawner removes
the user's files there with :func:`delete_user_directories` (anonymous session directories)
so that culled anonymous users leave nothing behind. :func:`is_temporary_user` tells the two
kinds of users apart (group member or ``binder-`` name).

:func:`configure_culler` adds to ``c.JupyterHub.services``, ``load_roles`` and ``load_groups``
(traitlets' ``extend``/``update``): a config file that *assigns* these after the call replaces them.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from traitlets.config import Config

TEMPORARY_USERS_GROUP = "binder-temporary"
TEMPORARY_USER_PREFIX = "binder-"

#: what jupyterhub-idle-culler needs to stop servers (its README's list)
_STOP_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def culler_command(idle_timeout: int, max_age: int, cull_every: int, *, cull_users: bool, concurrency: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={idle_timeout}",
        f"--max-age={max_age}",
        f"--cull-every={cull_every}",
        f"--concurrency={concurrency}",
    ]
    if cull_users:
        command.append("--cull-users=true")
    return command


def configure_culler(
    c: Config,
    *,
    idle_timeout: int = 12 * 3600,
    max_age: int = 7 * 24 * 3600,
    cull_every: int = 600,
    concurrency: int = 10,
    temporary_group: str = TEMPORARY_USERS_GROUP,
) -> None:
    """Add the two culler services and their roles to JupyterHub's config ``c``.

    ``idle_timeout``: seconds without activity before a session is stopped; ``max_age``: seconds
    after which any session is stopped, active or not (0 disables); ``cull_every``: seconds
    between checks; ``temporary_group``: the group whose users are deleted when culled.
    """
    if idle_timeout <= 0 or cull_every <= 0 or max_age < 0:
        raise ValueError("culler: idle_timeout and cull_every must be positive seconds, max_age 0 (off) or positive")
    def command(cull_users: bool) -> list[str]:
        return culler_command(idle_timeout, max_age, cull_every, cull_users=cull_users, concurrency=concurrency)

    # extend/update keep what the config set before (and traitlets applies them after, too)
    c.JupyterHub.services.extend(
        [
            {"name": "idle-culler", "command": command(cull_users=False)},
            {"name": "idle-culler-temporary", "command": command(cull_users=True)},
        ]
    )
    group_filter = f"!group={temporary_group}"
    c.JupyterHub.load_roles.extend(
        [
            {"name": "idle-culler", "scopes": list(_STOP_SCOPES), "services": ["idle-culler"]},
            {
                "name": "idle-culler-temporary",
                "scopes": [f"{scope}{group_filter}" for scope in (*_STOP_SCOPES, "admin:users")],
                "services": ["idle-culler-temporary"],
            },
        ]
    )
    c.JupyterHub.load_groups.update({temporary_group: {"users": []}})


def is_temporary_user(user: Any, group: str = TEMPORARY_USERS_GROUP) -> bool:
    """Whether a JupyterHub user (``.name``, ``.groups``) is an anonymous temporary user."""
    return user.name.startswith(TEMPORARY_USER_PREFIX) or any(g.name == group for g in user.groups)


def delete_user_directories(username: str, roots: Iterable[Path]) -> list[Path]:
    """Remove ``<root>/<username>`` under each root; returns what was removed.

    Refuses names that would leave the root (``..``, ``/``): user names come from the hub API.
    """
    if not username or username in (".", "..") or "/" in username or "\0" in username:
        raise ValueError(f"refusing to delete files of user name {username!r}")
    removed = []
    for root in roots:
        target = Path(root) / username
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            removed.append(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
            removed.append(target)
    return removed
