"""z2jh's own hub configuration, applied to our rendered chart, without a cluster.

The hub pod runs the chart's ``jupyterhub_config.py``, which reads the rendered ConfigMap and
Secret mounted under ``/usr/local/etc/jupyterhub``. Here both are written to a temporary
directory and z2jh's helper module reads them from there; everything else runs as in the pod,
our ``hub.extraConfig`` included. Two edits to the test's copy, both about the test process:
the mount paths, and tornado's curl client (the hub image has pycurl; switching this process's
HTTP client would change it for every other test).
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

from traitlets.config import Config, PyFileConfigLoader

from tests.deploy.charts import REFERENCE_CHARTS, by_kind

HUB_FILES = REFERENCE_CHARTS / "jupyterhub" / "files" / "hub"
MOUNT = "/usr/local/etc/jupyterhub/"
CURL = 'AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient")'

#: what Kubernetes sets in the hub pod for the Services it sees (z2jh reads ports from them)
SERVICE_ENVIRONMENT = {
    "HUB_SERVICE_HOST": "127.0.0.1",
    "HUB_SERVICE_PORT": "8081",
    "PROXY_API_SERVICE_HOST": "127.0.0.1",
    "PROXY_API_SERVICE_PORT": "8001",
    "PROXY_PUBLIC_SERVICE_HOST": "127.0.0.1",
    "PROXY_PUBLIC_SERVICE_PORT": "80",
    "POD_NAMESPACE": "binder",
}


def write_hub_files(objects: list[dict[str, Any]], root: Path) -> Path:
    """The hub pod's ``/usr/local/etc/jupyterhub`` from the rendered ConfigMap and Secret, at ``root``;
    returns the path of z2jh's ``jupyterhub_config.py`` there."""
    [config_map] = by_kind(objects, "ConfigMap", "hub")
    [secret] = by_kind(objects, "Secret", "hub")
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "secret").mkdir(parents=True, exist_ok=True)
    for key, value in config_map.get("data", {}).items():
        (root / "config" / key).write_text(value)
    for key, value in secret.get("data", {}).items():
        (root / "secret" / key).write_bytes(base64.b64decode(value))
    (root / "z2jh.py").write_text((HUB_FILES / "z2jh.py").read_text().replace(MOUNT, f"{root}/"))
    config_py = (HUB_FILES / "jupyterhub_config.py").read_text()
    assert CURL in config_py, "z2jh's config changed: review this harness"
    (root / "jupyterhub_config.py").write_text(config_py.replace(CURL, "pass  # (test harness) " + CURL))
    return root / "jupyterhub_config.py"


def secret_value(objects: list[dict[str, Any]], key: str) -> str:
    """A key of the rendered hub Secret (e.g. a service's generated API token)."""
    [secret] = by_kind(objects, "Secret", "hub")
    return base64.b64decode(secret["data"][key]).decode()


def hub_config(objects: list[dict[str, Any]], workdir: Path) -> Config:
    """The traitlets config the hub pod would load from the rendered ``objects``.

    z2jh reads :data:`SERVICE_ENVIRONMENT` from the process environment: set it first (``monkeypatch.setenv``).
    """
    root = workdir / "etc-jupyterhub"
    write_hub_files(objects, root)
    sys.modules.pop("z2jh", None)  # a previous call's copy, reading another directory
    try:
        return PyFileConfigLoader("jupyterhub_config.py", path=str(root)).load_config()
    finally:
        sys.modules.pop("z2jh", None)
        if str(root) in sys.path:
            sys.path.remove(str(root))
