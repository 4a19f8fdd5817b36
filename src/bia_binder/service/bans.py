"""Ban lists of specs and repositories, like BinderHub's ``banned_specs``::

    c.BanList.banned_specs = [r"^gh/evil-org/.*", r"^gist/spammer/"]
    c.BanList.banned_repositories = [r"^https://github\.com/evil-org/"]

A spec is ``<provider>/<spec>`` as in a launch link (``gh/org/repo/main``), unescaped; a repository is
the URL a spec resolves to, so one ban covers every way of naming it (``gh/...``, ``git/<url>/...``).
Patterns are Python regular expressions matched case-insensitively from the start (``re.match``, as
BinderHub does). A banned launch gets 403 and :attr:`BanList.message`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from traitlets import List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..events import LaunchError


class BanList(LoggingConfigurable):
    banned_specs = List(
        Unicode(), help="Regular expressions; a launch whose '<provider>/<spec>' matches one is refused with 403."
    ).tag(config=True)

    banned_repositories = List(
        Unicode(), help="Regular expressions matched against the repository URL a spec resolves to; refused with 403."
    ).tag(config=True)

    message = Unicode(
        "{what} is banned from launching on this server; ask its operators if you think this is a mistake.",
        help="What a banned launch is told; {what} is the spec or repository.",
    ).tag(config=True)

    @validate("banned_specs", "banned_repositories")
    def _valid_patterns(self, proposal):
        for pattern in proposal["value"]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise TraitError(f"BanList.{proposal['trait'].name}: {pattern!r} is not a regular expression ({e})") from None
        return proposal["value"]

    def check_spec(self, provider: str, spec: str) -> None:
        """Raise ``LaunchError`` (403) if ``provider/spec`` is banned; ``spec`` as in the URL (escaped)."""
        full = f"{provider}/{unquote(spec)}"
        if any(re.match(pattern, full, re.IGNORECASE) for pattern in self.banned_specs):
            raise LaunchError(self.message.replace("{what}", full), 403)

    def check_repository(self, repo_url: str) -> None:
        """Raise ``LaunchError`` (403) if the resolved repository ``repo_url`` is banned."""
        if any(re.match(pattern, repo_url, re.IGNORECASE) for pattern in self.banned_repositories):
            raise LaunchError(self.message.replace("{what}", repo_url), 403)


__all__ = ["BanList"]
