"""One HTTP policy for every service: connection reuse, timeouts, retries with backoff, clear errors.

The sync httpx client here serves the JSON APIs (calls there are sequential: one page after the
other); the zarr store (``_store.py``) keeps many chunk requests in flight with aiohttp, under the
same settings and retry rules, so a flaky service behaves the same everywhere.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .. import __version__

USER_AGENT = f"bia-binder-data/{__version__}"
#: statuses worth asking again for: the service is overloaded or restarting
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DataAccessError(Exception):
    """A service could not give us what we asked for; the message says what to do."""


class NotFoundError(DataAccessError, LookupError):
    """The accession, id or path does not exist at the service."""


class MalformedResponseError(DataAccessError, ValueError):
    """The service answered, but not in the format its API promises."""


@dataclass(frozen=True)
class HTTPSettings:
    """Timeouts and retries; overridable by environment for slow links and for tests."""

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_connections: int = 64

    @classmethod
    def from_env(cls) -> HTTPSettings:
        return cls(
            timeout=_number("BIA_BINDER_HTTP_TIMEOUT", cls.timeout, float),
            retries=_number("BIA_BINDER_HTTP_RETRIES", cls.retries, int),
            backoff=_number("BIA_BINDER_HTTP_BACKOFF", cls.backoff, float),
            max_connections=_number("BIA_BINDER_HTTP_CONNECTIONS", cls.max_connections, int),
        )

    def delays(self) -> Iterator[float]:
        """Exponential backoff with jitter, so many clients retrying do not hit the service in step."""
        for attempt in range(self.retries):
            yield self.backoff * (2**attempt) * (0.5 + random.random() / 2)

    def client_kwargs(self) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        return {
            "timeout": httpx.Timeout(self.timeout),
            "limits": limits,
            "follow_redirects": True,
            "headers": {"User-Agent": USER_AGENT},
        }


def _number(variable: str, default: float, kind: type[int | float]) -> Any:
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{variable} must be a non-negative {kind.__name__}, not {value!r}; fix or unset it")
    return number


def _is_transient(outcome: httpx.Response | Exception) -> bool:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in RETRY_STATUSES
    return isinstance(outcome, httpx.TransportError)  # timeouts, refused and reset connections


def _describe(outcome: httpx.Response | Exception) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code} {outcome.reason_phrase}".rstrip()
    if isinstance(outcome, httpx.TimeoutException):
        return "timed out"
    return f"{type(outcome).__name__}: {outcome}"


def gave_up(url: str, problem: str, attempts: int) -> DataAccessError:
    return DataAccessError(
        f"GET {url} failed after {attempts} attempts ({problem}); "
        "the service may be down or slow: try again later, or set BIA_BINDER_HTTP_TIMEOUT/BIA_BINDER_HTTP_RETRIES"
    )


class Retries:
    """The attempts at one URL under ``HTTPSettings``' rules, for a client of any kind.

    Iterating counts the attempts; ``pause_after(problem)`` is how long to wait before the next,
    or raises the error that ends them once the retries are spent. Each client waits its own way
    (``time.sleep``, ``asyncio.sleep``, an event that also ends the wait).
    """

    def __init__(self, settings: HTTPSettings, url: str) -> None:
        self.url, self.attempts = url, 0
        self._delays = settings.delays()

    def __iter__(self) -> Iterator[int]:
        while True:
            self.attempts += 1
            yield self.attempts

    def pause_after(self, problem: str) -> float:
        delay = next(self._delays, None)
        if delay is None:
            raise gave_up(self.url, problem, self.attempts)
        return delay


def check_status(response: httpx.Response, what: str) -> None:
    """Turn a final non-2xx answer into an error naming the thing asked for."""
    if response.status_code == 404:
        raise NotFoundError(f"{what} not found (HTTP 404 from {response.request.url}); check the accession or id")
    if response.status_code >= 400:
        raise DataAccessError(f"{what}: {_describe(response)} from {response.request.url}")


def parse_json(response: httpx.Response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedResponseError(
            f"{what}: {response.request.url} did not answer with JSON ({e.msg if hasattr(e, 'msg') else e}); "
            "the service may be misconfigured or the endpoint URL wrong"
        ) from None


class Client:
    """A shared, retrying ``httpx.Client`` for the JSON APIs (one per process, reused connections)."""

    def __init__(self, settings: HTTPSettings | None = None) -> None:
        self.settings = settings or HTTPSettings.from_env()
        self._http = httpx.Client(**self.settings.client_kwargs())

    def get(self, url: str, *, what: str, params: dict[str, Any] | None = None, stream: bool = False) -> httpx.Response:
        """GET with retries on 5xx/429/timeouts; a final error names ``what`` and the URL."""
        outcome: httpx.Response | Exception
        retries = Retries(self.settings, url)
        for _ in retries:
            try:
                request = self._http.build_request("GET", url, params=params)
                outcome = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                outcome = e
            if not _is_transient(outcome):
                break
            if isinstance(outcome, httpx.Response):
                outcome.close()
            time.sleep(retries.pause_after(_describe(outcome)))
        if isinstance(outcome, Exception):
            raise DataAccessError(f"{what}: GET {url} failed ({_describe(outcome)})") from None
        if not outcome.is_success:
            outcome.read()
            check_status(outcome, what)
        return outcome

    def get_json(self, url: str, *, what: str, params: dict[str, Any] | None = None) -> Any:
        return parse_json(self.get(url, what=what, params=params), what)

    def download(self, url: str, dest: Path, *, what: str, progress: bool = True) -> Path:
        """Stream ``url`` to ``dest`` (atomically: a partial file never has the final name)."""
        from tqdm.auto import tqdm

        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        response = self.get(url, what=what, stream=True)
        try:
            total = int(response.headers.get("Content-Length", 0)) or None
            with partial.open("wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for block in response.iter_bytes(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        except httpx.TransportError as e:
            partial.unlink(missing_ok=True)
            raise DataAccessError(f"{what}: download of {url} broke off ({_describe(e)}); try again") from None
        finally:
            response.close()
        partial.replace(dest)
        return dest

    def close(self) -> None:
        self._http.close()


_shared: Client | None = None
_shared_lock = threading.Lock()


def shared_client() -> Client:
    """The process-wide client, so every call reuses the same connection pool.

    Made anew when the ``BIA_BINDER_HTTP_*`` settings change, so a notebook can tune them mid-session.
    """
    global _shared
    settings = HTTPSettings.from_env()
    with _shared_lock:
        if _shared is None or _shared.settings != settings:
            _shared = Client(settings)
        return _shared
