"""`pip` in a launched session is the session's environment's: `%pip install` installs into that session's own
layer of it (never into the shared environment, never into the host); postBuild's `pip install` into the build."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import pytest

from tests.kernel import run_cell
from tests.stack import BinderStack

pytestmark = pytest.mark.slow


def wheel(name: str, value: int) -> bytes:
    """A minimal pure-Python wheel (no index needed)."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": f"VALUE = {value}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bia-binder-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


REPO = {
    "requirements.txt": "six==1.16.0\n",
    "postBuild": (
        "#!/bin/bash\nset -euxo pipefail\n"
        "pip install --no-index --no-deps ./wheels/hello_post-1.0-py3-none-any.whl\n"
        "echo from-postbuild > $HOME/.made-by-postbuild\n"
    ),
    "wheels/hello_post-1.0-py3-none-any.whl": wheel("hello_post", 1),
    "wheels/hello_layer-1.0-py3-none-any.whl": wheel("hello_layer", 2),
}


@pytest.fixture(scope="module")
def binder_stack():
    # cgroups of its own: another deployment's reconciler on this host (a parallel test run) leaves them alone
    with BinderStack(config='c.Sandbox.cgroup_parent = "bia-binder-layers-test"\n') as stack:
        yield stack


@pytest.fixture(scope="module")
def spec(binder_stack) -> str:
    return binder_stack.git_spec("lab/pip-in-session", REPO)


def launch(binder_stack, spec: str) -> dict:
    events = binder_stack.launch(spec)
    assert events[-1]["phase"] == "ready", events[-3:]
    return events[-1]


def cell(ready: dict, code: str) -> str:
    return asyncio.run(run_cell(ready["url"], ready["token"], code, timeout=300))


def test_percent_pip_installs_into_the_session_and_nowhere_else(binder_stack, spec):
    ready = launch(binder_stack, spec)
    out = cell(ready, "%pip install --no-index --no-deps wheels/hello_layer-1.0-py3-none-any.whl\n")
    assert "Successfully installed hello-layer-1.0" in out, out
    # a new kernel of the same session sees it, in its environment; `pip list` too
    out = cell(
        ready,
        "import sys, hello_layer, hello_post, subprocess\n"
        "print(sys.prefix)\n"
        "print(hello_layer.__file__.startswith(sys.prefix), hello_layer.VALUE, hello_post.VALUE)\n"
        "print(subprocess.run(['pip', 'list', '--format=freeze'], capture_output=True, text=True).stdout)\n",
    ).splitlines()
    prefix = Path(out[0])
    assert out[1] == "True 2 1", out
    assert "hello-layer==1.0" in out and "hello-post==1.0" in out, out
    # the shared environment (the same path on the host) has postBuild's package, not the session's
    site = next(prefix.glob("lib/python*/site-packages"))
    assert (site / "hello_post.py").is_file(), "postBuild's pip install reached the environment"
    assert not (site / "hello_layer.py").exists(), "a session's pip install must not change the shared environment"

    # another session of the same environment starts from the environment as built
    other = launch(binder_stack, spec)
    out = cell(other, "import importlib.util\nprint(importlib.util.find_spec('hello_layer') is None)\n")
    assert out.strip() == "True"


def test_the_runtime_contract_of_repo2docker(binder_stack, spec):
    ready = launch(binder_stack, spec)
    out = cell(
        ready,
        "import os\n"
        "path = os.environ['PATH'].split(os.pathsep)\n"
        "print(os.environ['REPO_DIR'], os.getcwd(), os.environ['HOME'])\n"
        "print(os.path.expanduser('~/.local/bin') in path, os.environ['REPO_DIR'] + '/.local/bin' in path)\n"
        "print(open(os.path.expanduser('~/.made-by-postbuild')).read().strip())\n",
    ).splitlines()
    assert out[0] == "/home/jovyan /home/jovyan /home/jovyan"
    assert out[1] == "True True"
    assert out[2] == "from-postbuild", "what postBuild writes to ~ is there at run time"
