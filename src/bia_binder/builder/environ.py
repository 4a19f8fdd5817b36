"""The environment variables a build gets: an allow-list, never a copy of the service's own.

A build runs a stranger's code (``setup.py``, ``postBuild``), and the service that starts it holds
the most valuable secret on the host: its hub API token (``JUPYTERHUB_API_TOKEN``), besides
whatever an operator exports (cloud keys, OAuth client secrets). So a build sees only what
installing packages needs: a locale, the package indexes and proxies the operator configured,
uv's and npm's settings, CA bundles. Kubernetes build pods get the same list
(:func:`build_environ` is their ``env`` too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

#: the PATH of builds and sessions: the system's (the sandbox shows nothing else); environments put their bin/ first
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: names passed through unchanged
ALLOWED = frozenset(
    {
        "LANG", "LANGUAGE", "TZ", "TERM", "NO_COLOR",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS", "PIP_NO_INDEX",
        "NPM_CONFIG_REGISTRY", "npm_config_registry",
        "CONDA_OVERRIDE_CUDA", "CONDA_OVERRIDE_GLIBC",
    }
)  # fmt: skip

#: families passed through (locale categories, uv's own settings), unless the name says it holds a secret
ALLOWED_PREFIXES = ("LC_", "UV_")

#: never passed, whatever the name's family: credentials in uv's (UV_INDEX_<NAME>_PASSWORD...) and others' settings
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|CREDENTIAL|PRIVATE|(^|_)KEY($|_)|AUTH", re.IGNORECASE)


def build_environ(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """The allow-listed part of ``base`` (default: this process's environment), a system PATH, and ``overrides``."""
    base = os.environ if base is None else base
    env = {
        name: value
        for name, value in base.items()
        if (name in ALLOWED or name.startswith(ALLOWED_PREFIXES)) and not SECRET_NAME.search(name)
    }
    env["PATH"] = SYSTEM_PATH
    env.update(overrides)
    return env
