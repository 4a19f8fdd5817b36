"""One place that decides whether a provider may contact a URL (server-side request forgery guard).

A launch makes the server fetch whatever URL the user typed, so by default every URL a provider
contacts (API calls, each redirect hop, git remotes) must resolve to public addresses only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from .base import ProviderError

ALLOW_OPTION = "RepoProvider.allow_local_repos"


def _refuse(url: str, reason: str) -> ProviderError:
    return ProviderError(
        f"Refusing to fetch {url}: {reason}; set c.{ALLOW_OPTION} = True to allow local repositories "
        "(development and tests only)",
        403,
    )


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    # is_global is False for loopback, private, link-local, shared (CGNAT), reserved and unspecified ranges
    return ip.is_global and not ip.is_multicast


async def host_addresses(host: str, port: int | None) -> list[str]:
    """All addresses ``host`` resolves to (non-blocking DNS)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ProviderError(f"Could not resolve host {host!r}: check the repository address ({e})", 502) from None
    return sorted({info[4][0] for info in infos})


async def check_url_allowed(url: str, allow_local: bool) -> None:
    """Raise ProviderError(403) if ``url`` is ``file://`` or its host resolves to a non-public address.

    Also accepts scp-like git addresses (``user@host:path``).
    """
    if allow_local:
        return
    parts = urlsplit(url)
    if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        raise _refuse(url, "local file paths are not allowed")
    host = parts.hostname
    if not parts.scheme and "@" in url and ":" in url:  # git's scp-like syntax: git@host:org/repo
        host = url.split("@", 1)[1].split(":", 1)[0]
    if not host:
        raise ProviderError(f"No host name in {url!r}: give a full URL such as https://host/org/repo", 400)
    for address in await host_addresses(host, parts.port):
        if not _is_public(address):
            raise _refuse(url, f"{host} resolves to the non-public address {address}")
