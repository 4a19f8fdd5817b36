"""HTTP access to upstream services (GitHub, GitLab, Zenodo, ...) with uniform ProviderErrors.

Every request, including each redirect hop, passes the :mod:`.netcheck` guard.
"""

from __future__ import annotations

import email.utils
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .. import __version__
from .base import ProviderError
from .netcheck import check_url_allowed

if TYPE_CHECKING:
    from .base import RepoProvider

USER_AGENT = f"bia-binder/{__version__} (BinderHub-compatible)"


def make_client(provider: "RepoProvider", headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An AsyncClient that refuses local addresses (unless allowed) and follows redirects."""

    async def guard(request: httpx.Request) -> None:
        await check_url_allowed(str(request.url), provider.allow_local_repos)

    async def log_response(response: httpx.Response) -> None:
        provider.log.debug("%s %s → %s", response.request.method, response.request.url, response.status_code)

    return httpx.AsyncClient(
        timeout=provider.timeout,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        event_hooks={"request": [guard], "response": [log_response]},
        follow_redirects=True,
        max_redirects=10,
    )


def _format_wait(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{(seconds + 59) // 60} minutes"


def rate_limit_wait(response: httpx.Response) -> str | None:
    """How long to wait, if ``response`` says a rate limit is exhausted (GitHub, GitLab, generic 429)."""
    headers = response.headers
    exhausted = headers.get("x-ratelimit-remaining") == "0" or headers.get("ratelimit-remaining") == "0"
    if response.status_code != 429 and not (response.status_code == 403 and exhausted):
        return None
    retry_after = headers.get("retry-after")
    if retry_after:
        if retry_after.strip().isdigit():
            return _format_wait(int(retry_after))
        when = email.utils.parsedate_to_datetime(retry_after)
        return _format_wait(when.timestamp() - time.time())
    reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    if reset and reset.strip().isdigit():
        return _format_wait(int(reset) - time.time())
    return "a few minutes"


async def get(
    client: httpx.AsyncClient, url: str, service: str, token_hint: str = "", **kwargs: object
) -> httpx.Response:
    """GET ``url``; raise ProviderError for transport failures, rate limits and 5xx. Other statuses are returned."""
    try:
        response = await client.get(url, **kwargs)
    except httpx.TimeoutException:
        raise ProviderError(f"{service} did not answer within {client.timeout.read} s ({url}); try again later", 504) from None
    except httpx.TooManyRedirects:
        raise ProviderError(f"{service} redirected too many times for {url}", 502) from None
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise ProviderError(f"Could not reach {service} at {url}: {e or type(e).__name__}; try again later", 502) from None
    wait = rate_limit_wait(response)
    if wait:
        raise ProviderError(f"{service} rate limit exceeded: try again in {wait}{token_hint}", 429)
    if response.status_code >= 500:
        raise ProviderError(f"{service} answered {response.status_code} for {url}; try again later", 502)
    return response


def json_body(response: httpx.Response, service: str, kind: type = dict) -> Any:
    """The JSON body, which must be a ``kind`` (dict or list), else 502."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, kind):
        raise ProviderError(f"{service} sent an unexpected answer for {response.url}", 502)
    return body


class SizeBudget:
    """Counts downloaded/unpacked bytes against ``max_repo_size``."""

    def __init__(self, limit: int, what: str):
        self.limit = limit
        self.used = 0
        self.what = what

    def add(self, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise self.too_large()

    def too_large(self) -> ProviderError:
        return ProviderError(
            f"{self.what} is larger than the {self.limit:,} byte limit (RepoProvider.max_repo_size)", 413
        )


async def download(client: httpx.AsyncClient, url: str, target: Path, budget: SizeBudget, service: str) -> None:
    """Stream ``url`` into ``target``, stopping with 413 as soon as the budget is exceeded."""
    try:
        async with client.stream("GET", url) as response:
            wait = rate_limit_wait(response)
            if wait:
                raise ProviderError(f"{service} rate limit exceeded: try again in {wait}", 429)
            if response.status_code in (401, 403, 404, 410):
                raise ProviderError(f"{service} refused the download of {url} ({response.status_code})", 404)
            if response.status_code >= 400:
                raise ProviderError(f"{service} answered {response.status_code} for {url}; try again later", 502)
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    budget.add(len(chunk))
                    out.write(chunk)
    except httpx.TimeoutException:
        raise ProviderError(f"{service} stopped sending {url} (timeout); try again later", 504) from None
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise ProviderError(f"Download of {url} from {service} failed: {e or type(e).__name__}", 502) from None
