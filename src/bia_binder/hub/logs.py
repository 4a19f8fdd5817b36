"""Tokens never reach a log line: a filter on the console handler of the hub and of the binder service.

A session's token opens the session to whoever holds it, and logs are read by more people (and
kept longer) than the hub's database. JupyterHub already scrubs tokens from the URLs it logs;
this filter also covers command lines, headers and JSON bodies that any library might log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: (pattern, replacement): the secret part of each match becomes [secret]
PATTERNS = [
    # ?token=..., &access_token=..., code=/state= of an OAuth redirect
    (re.compile(r"((?:^|[?&;\s])(?:token|access_token|code|state|_xsrf)=)[^&\s\"'<>]+", re.IGNORECASE), r"\1[secret]"),
    # Authorization: token X / Bearer X
    (re.compile(r"\b((?:token|bearer)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1[secret]"),
    # --IdentityProvider.token=X, --NotebookApp.token X ...
    (re.compile(r"(--[A-Za-z_.]*token[= ])\S+", re.IGNORECASE), r"\1[secret]"),
    # JUPYTERHUB_API_TOKEN=X, "JUPYTER_TOKEN": "X", 'api_token': 'X', "token": "X"
    (
        re.compile(r"""((?:[A-Z_]*TOKEN|api_token|token|password|secret)["']?\s*[:=]\s*["']?)[^"'\s,}&]{4,}""", re.IGNORECASE),
        r"\1[secret]",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactTokens(logging.Filter):
    """Rewrites a record whose message holds a token; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


#: for traitlets' ``Application.logging_config`` (JupyterHub's and the binder service's console handler)
LOGGING_CONFIG: dict[str, Any] = {
    "filters": {"redact_tokens": {"()": f"{__name__}.RedactTokens"}},
    "handlers": {"console": {"filters": ["redact_tokens"]}},
}


def redact_logs(c) -> None:
    """Install the filter on JupyterHub's console handler (``c`` is the hub's config)."""
    c.JupyterHub.logging_config = LOGGING_CONFIG
