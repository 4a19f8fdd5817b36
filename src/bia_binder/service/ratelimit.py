"""Per-client launch rate limit, like BinderHub's ``RateLimiter`` (launches per period per client address).

``RateLimiter.hit(address)`` counts one launch of a client and raises :class:`RateLimited` (429, with
the seconds until the oldest launch in the window expires: the ``Retry-After``) once the client has
started ``limit`` launches in the last ``period`` seconds. The client's address comes from
:meth:`RateLimiter.client_address`: the nearest address in ``X-Forwarded-For`` that is not one of
our own proxies (``trusted_proxies``), so a client cannot choose its own key by sending the header.

Hand-written rather than a library: a sliding window of timestamps per address is a few lines,
and the packages for Tornado (or limits' storage back-ends) would add more than they save.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque

from tornado.httputil import HTTPServerRequest
from traitlets import Float, Int, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..events import LaunchError


class RateLimited(LaunchError):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message, 429)
        self.retry_after = retry_after


class RateLimiter(LoggingConfigurable):
    """At most ``limit`` launches per client address within any ``period`` seconds."""

    limit = Int(60, help="Launches one client address may start within `period` seconds; 0: no limit.").tag(config=True)

    period = Float(600, help="The rate limit's window, in seconds.").tag(config=True)

    trusted_proxies = List(
        Unicode(),
        default_value=["127.0.0.0/8", "::1/128"],
        help="Addresses or networks of proxies in front of the service (configurable-http-proxy runs on loopback). "
        "The client is the nearest address in X-Forwarded-For that is not one of them; add your load "
        "balancer's, e.g. ['127.0.0.0/8', '10.0.0.0/8'].",
    ).tag(config=True)

    @validate("trusted_proxies")
    def _valid_networks(self, proposal):
        for value in proposal["value"]:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise TraitError(f"RateLimiter.trusted_proxies: {value!r} is not an address or network") from None
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._launches: dict[str, deque[float]] = {}
        self._hits_since_prune = 0

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies)

    def client_address(self, request: HTTPServerRequest) -> str:
        """The address that sent ``request``: walking from the connection's peer back through
        ``X-Forwarded-For``, the first hop that is not a trusted proxy (only trusted hops add entries)."""
        peer = request.connection.context.address[0] if hasattr(request.connection, "context") else request.remote_ip
        forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
        chain = [*forwarded, str(peer)]
        for hop in reversed(chain):
            if not self._trusted(hop):
                return hop
        return chain[0]

    def hit(self, client: str, now: float | None = None) -> None:
        """Count one launch of ``client``; raise :class:`RateLimited` (not counted) over the limit."""
        if self.limit <= 0:
            return
        now = time.monotonic() if now is None else now
        launches = self._launches.setdefault(client, deque())
        while launches and launches[0] <= now - self.period:
            launches.popleft()
        if len(launches) >= self.limit:
            retry_after = max(1, math.ceil(launches[0] + self.period - now))
            raise RateLimited(
                f"Too many launches from your address ({self.limit} within {self.period:g} s); "
                f"try again in {retry_after} s.",
                retry_after,
            )
        launches.append(now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget clients with no launch in the window (now and then: bounded memory, cheap hits)."""
        self._hits_since_prune += 1
        if self._hits_since_prune < 1000:
            return
        self._hits_since_prune = 0
        for client in [c for c, launches in self._launches.items() if not launches or launches[-1] <= now - self.period]:
            del self._launches[client]


__all__ = ["RateLimited", "RateLimiter"]
