"""bia_binder.data runs in session environments that have only the data extra installed."""

from __future__ import annotations

import subprocess
import sys

SERVICE_ONLY = ("jupyterhub", "tornado", "traitlets", "prometheus_client", "bia_binder.service", "bia_binder.hub")


def test_importing_the_library_pulls_in_no_service_dependency():
    code = (
        "import sys, bia_binder.data\n"
        f"leaked = [m for m in {SERVICE_ONLY!r} if m in sys.modules]\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""
