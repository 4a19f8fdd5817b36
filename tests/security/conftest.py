"""One stack for the attack suites of this package, started as an operator would run a public service:
sandbox required (no --unsafe-no-sandbox); only --allow-local-repos, for the local git server."""

from __future__ import annotations

import psutil
import pytest

from tests.stack import BinderStack


@pytest.fixture(scope="package")
def stack():
    with BinderStack(extra_args=["--allow-local-repos"]) as stack:
        yield stack


def process_of(stack: BinderStack, module: str) -> psutil.Process:
    """A process of the stack by its Python module (``bia_binder.service.app``, ``jupyterhub``)."""
    for process in psutil.Process(stack.proc.pid).children(recursive=True):
        if module in " ".join(process.cmdline()):
            return process
    raise LookupError(f"no {module} process under the stack")


def environ_of(process: psutil.Process) -> dict[str, str]:
    return process.environ()


def service_token(stack: BinderStack) -> str:
    """The binder service's hub API token, as JupyterHub handed it to the service (root can read it)."""
    return environ_of(process_of(stack, "bia_binder.service.app"))["JUPYTERHUB_API_TOKEN"]
