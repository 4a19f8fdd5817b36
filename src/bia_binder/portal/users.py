"""``bia-binder users``: the hub's users with their storage, quota and last activity; reclaiming old homes.

::

    bia-binder users [list] [--json]     every user: admin?, session running?, last activity, home used / quota
    bia-binder users reclaim             homes due for archiving (unused a year) or deletion (archived long ago)
    bia-binder users reclaim --yes       ... and do it

Users come from the hub's REST API (``--hub-api``, default ``$JUPYTERHUB_API_URL`` or
``http://127.0.0.1:8000/hub/api``) with a token holding ``list:users``,
``read:users:activity`` and ``read:servers`` (``--token-file`` or ``$JUPYTERHUB_API_TOKEN``); homes from
:class:`~bia_binder.portal.homes.HomeManager` under ``--homes-root``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from .encryption import HomeEncryption
from .homes import HomeError, HomeManager

DEFAULT_HUB_API = "http://127.0.0.1:8000/hub/api"


class UsersCommandError(RuntimeError):
    """One line for the operator: what went wrong and what to do."""


@dataclass
class UserRow:
    name: str
    admin: bool
    server_running: bool
    last_activity: str | None
    home_used_bytes: int | None
    home_quota_bytes: int | None
    home_mounted: bool
    in_hub: bool


def fetch_hub_users(api_url: str, token: str) -> list[dict[str, Any]]:
    """All users from the hub's REST API (follows its pagination)."""
    users: list[dict[str, Any]] = []
    headers = {"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"}
    offset = 0
    with httpx.Client(timeout=30, headers=headers) as client:
        while True:
            try:
                response = client.get(f"{api_url.rstrip('/')}/users", params={"offset": offset, "limit": 200})
            except httpx.HTTPError as e:
                raise UsersCommandError(
                    f"cannot reach the hub API at {api_url} ({e}); is `bia-binder up` running? Pass --hub-api"
                ) from None
            if response.status_code in (401, 403):
                raise UsersCommandError(
                    f"the hub refused the token ({response.status_code}): "
                    "it needs the scopes list:users, read:users:activity and read:servers"
                )
            if response.status_code != 200:
                raise UsersCommandError(f"the hub API answered {response.status_code} for {response.url}")
            page = response.json()
            users.extend(page["items"])
            next_page = (page.get("_pagination") or {}).get("next")
            if not next_page:
                return users
            offset = next_page["offset"]


def collect_rows(hub_users: list[dict[str, Any]], homes: HomeManager) -> list[UserRow]:
    rows = {}
    for user in hub_users:
        usage = homes.usage(user["name"])
        rows[user["name"]] = UserRow(
            name=user["name"],
            admin=bool(user.get("admin")),
            server_running=bool(user.get("servers")),
            last_activity=user.get("last_activity"),
            home_used_bytes=usage.used_bytes if usage else None,
            home_quota_bytes=usage.quota_bytes if usage else None,
            home_mounted=bool(usage and usage.mounted),
            in_hub=True,
        )
    for name in homes.usernames():  # homes whose user the hub no longer knows: still the operator's disk
        if name not in rows:
            usage = homes.usage(name)
            last_used = datetime.fromtimestamp(usage.last_used, UTC).isoformat() if usage else None
            rows[name] = UserRow(name, False, False, last_used, usage and usage.used_bytes, usage and usage.quota_bytes, False, False)
    return sorted(rows.values(), key=lambda row: row.name)


def human_size(size: int | None) -> str:
    # Five lines do not justify a dependency (humanize) in the hub's environment.
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_table(rows: list[UserRow]) -> str:
    header = ("USER", "ADMIN", "SESSION", "LAST ACTIVITY", "HOME USED", "QUOTA")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.name if row.in_hub else f"{row.name} (not in hub)",
                "yes" if row.admin else "",
                "running" if row.server_running else "",
                (row.last_activity or "never")[:19].replace("T", " "),
                human_size(row.home_used_bytes),
                human_size(row.home_quota_bytes),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines)


def read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as e:
            raise UsersCommandError(f"cannot read the token file {args.token_file}: {e.strerror}") from None
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise UsersCommandError("no hub API token: pass --token-file or set JUPYTERHUB_API_TOKEN (a token with list:users)")
    return token


def list_users(args: argparse.Namespace) -> int:
    homes = HomeManager(root=args.homes_root)
    rows = collect_rows(fetch_hub_users(args.hub_api, read_token(args)), homes)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def reclaim_homes(args: argparse.Namespace) -> int:
    homes = HomeManager(root=args.homes_root)
    plan = homes.reclaim_plan()
    if not plan:
        print("No home is due for archiving or deletion.")
        return 0
    for item in plan:
        last = datetime.fromtimestamp(item.last_used, UTC).strftime("%Y-%m-%d")
        print(f"{item.action:8} {item.username}  (since {last}: {item.path})")
    if not args.yes:
        print(f"{len(plan)} home(s) listed; run again with --yes to carry this out.")
        return 0
    done = homes.reclaim(plan)
    print(f"Done: {len(done)} of {len(plan)} (homes in use are skipped).")
    return 0


def rotate_master_key(args: argparse.Namespace) -> int:
    """Re-wrap every user's home key under a new master key, then install the new key (the old one is kept
    beside it as ``<file>.old`` until the operator has backed up the new one and deletes it)."""
    import secrets
    from pathlib import Path

    from .encryption import MASTER_KEY_ENV, HomeEncryption

    encryption = HomeEncryption(master_key_file=args.master_key_file, keys_dir=args.keys_dir, create_master_key=False)
    if os.environ.get(MASTER_KEY_ENV):
        raise UsersCommandError(f"the master key comes from ${MASTER_KEY_ENV}: rotate it where you keep it, not here")
    key_file = Path(encryption.master_key_file)
    old_key = encryption.master_key()
    new_key = secrets.token_bytes(len(old_key))
    old_copy = key_file.with_name(key_file.name + ".old")
    HomeEncryption.write_master_key(old_copy, old_key)
    count = encryption.rotate(Path(args.homes_root), new_key)
    HomeEncryption.write_master_key(key_file, new_key)
    print(f"Re-wrapped {count} home key(s) under a new master key in {key_file}; back it up now, then delete {old_copy}.")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.users_action == "rotate-master-key":
            return rotate_master_key(args)
        return reclaim_homes(args) if args.users_action == "reclaim" else list_users(args)
    except (UsersCommandError, HomeError) as e:
        print(f"bia-binder users: {e}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("users", help="list users with storage used, quota and last activity; reclaim old homes")
    parser.add_argument(
        "users_action", nargs="?", choices=("list", "reclaim", "rotate-master-key"), default="list",
        help="list (default), reclaim, or rotate-master-key (re-wrap every home key under a new master key)",
    )  # fmt: skip
    parser.add_argument("--hub-api", default=os.environ.get("JUPYTERHUB_API_URL", DEFAULT_HUB_API), help="the hub's REST API URL")
    parser.add_argument("--token-file", help="file holding a hub API token (default: $JUPYTERHUB_API_TOKEN)")
    parser.add_argument("--homes-root", default=HomeManager.root.default_value, help="HomeManager.root: where home images live")
    parser.add_argument("--json", action="store_true", help="machine-readable output (list)")
    parser.add_argument(
        "--master-key-file", default=HomeEncryption.master_key_file.default_value, help="c.HomeEncryption.master_key_file"
    )
    parser.add_argument("--keys-dir", default="", help="c.HomeEncryption.keys_dir (default: <homes root>/keys)")
    parser.add_argument("--yes", action="store_true", help="carry out the reclaim plan instead of only listing it")
    parser.set_defaults(func=run)
