"""What ``bia-binder up`` tells the processes it starts (the hub, and through it the binder service).

Passed as ``BIA_BINDER_*`` environment variables so that the hub's config file and the managed
binder service (which JupyterHub starts with an environment we choose) read the same values.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields

PREFIX = "BIA_BINDER_UP_"


@dataclass
class UpSettings:
    data_dir: str
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    service_port: int = 8585
    proxy_command: str = "configurable-http-proxy"
    config_file: str = ""
    allow_local_repos: bool = False
    unsafe_no_sandbox: bool = False
    auth: str = "none"
    keep_sessions: bool = False

    def to_environ(self) -> dict[str, str]:
        return {f"{PREFIX}{f.name.upper()}": _encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "UpSettings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"{PREFIX}{f.name.upper()}")
            if raw is not None:
                values[f.name] = _decode(raw, f.type)
        if "data_dir" not in values:
            raise RuntimeError("BIA_BINDER_UP_DATA_DIR is not set: start the service with `bia-binder up`")
        return cls(**values)

    @property
    def public_url(self) -> str:
        """Where users reach the service (listening on every address: this host's name)."""
        host = socket.getfqdn() if self.ip in ("", "0.0.0.0", "::") else self.ip
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"


def _encode(value) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _decode(raw: str, type_name: str):
    if type_name == "bool":
        return raw == "1"
    if type_name == "int":
        return int(raw)
    return raw
