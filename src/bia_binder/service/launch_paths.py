"""Launch parameters (``urlpath``, ``labpath``, ``filepath``) are paths inside the session, nothing else.

After a launch the page sends the browser, with the session's token, to the session's URL
joined with one of these. An absolute URL (``https://evil.example/``), a scheme
(``javascript:...``), a network path (``//host``, ``/\\host``) or ``..`` that climbs out of the
session would send the token to someone else or run script on our origin; each is refused here
with a 400 that says why (the page checks again before redirecting: ``static/js/binder-url.js``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ..events import LaunchError

MAX_LENGTH = 2048
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LaunchParameterError(LaunchError):
    def __init__(self, name: str, why: str):
        super().__init__(f"{name} must be a path inside the session ({why}); e.g. {name}=lab/tree/notebook.ipynb", 400)


def session_path(name: str, value: str) -> str:
    """``value`` as a path relative to the session's base URL ('' when empty); ``LaunchParameterError`` otherwise.

    ``urlpath`` may carry a query and a fragment; ``labpath``/``filepath`` are file paths.
    """
    if not value:
        return ""
    if len(value) > MAX_LENGTH:
        raise LaunchParameterError(name, f"it is longer than {MAX_LENGTH} characters")
    if _CONTROL.search(value) or "\\" in value or value != value.strip(" "):
        # browsers drop tabs and newlines anywhere and spaces at the ends, read \ as / ...
        raise LaunchParameterError(name, "it contains control characters, backslashes or surrounding spaces")
    if _SCHEME.match(value):
        raise LaunchParameterError(name, "it is a URL with a scheme, not a path")
    if value.startswith("//"):
        raise LaunchParameterError(name, "it names another host")
    path, separator, rest = _split_query(value) if name == "urlpath" else (value, "", "")
    if name != "urlpath" and ("?" in value or "#" in value):
        raise LaunchParameterError(name, "a file path has no query or fragment")
    segments = path.lstrip("/").split("/")
    if _climbs_out(segments):
        raise LaunchParameterError(name, "'..' leaves the session")
    return path.lstrip("/") + separator + rest


def _split_query(value: str) -> tuple[str, str, str]:
    cut = min((i for i in (value.find("?"), value.find("#")) if i >= 0), default=len(value))
    return value[:cut], value[cut : cut + 1], value[cut + 1 :]


def _climbs_out(segments: list[str]) -> bool:
    """Whether resolving ``.``/``..`` (also percent-encoded, as browsers decode them) goes above the start."""
    depth = 0
    for segment in segments:
        decoded = unquote(segment)  # browsers resolve %2e%2e as ..
        if decoded == "..":
            depth -= 1
            if depth < 0:
                return True
        elif decoded not in ("", "."):
            depth += 1
    return False


def validated(arguments: dict[str, str]) -> dict[str, str]:
    """Every launch parameter of a request checked (see :func:`session_path`)."""
    return {name: session_path(name, value) for name, value in arguments.items()}
