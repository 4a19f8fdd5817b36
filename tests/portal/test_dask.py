"""Dask: a real dask-gateway behind a real JupyterHub computes for a logged-in user; LocalCluster sizing."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.spawner import Spawner
from traitlets.config import Config

from bia_binder.portal.auth import DEV_PASSWORD_ENV
from bia_binder.portal.culling import TEMPORARY_USERS_GROUP
from bia_binder.portal.dask import ACCESS_SCOPE, DaskGatewayConfigError, configure_dask_gateway, session_dask_environment

from .hubprocess import free_port


@pytest.fixture(scope="module")
def cluster_env() -> Iterator[Path]:
    """An environment for cluster processes that the unprivileged cluster user can run.

    Outside pytest's private (0700) temporary directory, from Debian's Python, with the same
    distributed, dask-gateway and numpy versions as the client here.
    """
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs the system's /usr/bin/python3 (runnable by the unprivileged cluster user)")
    root = Path(tempfile.mkdtemp(prefix="bia-dask-env-"))
    root.chmod(0o755)
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", "--python", "/usr/bin/python3", str(root / "env")], check=True, timeout=300)
    pins = [f"{name}=={version(name)}" for name in ("distributed", "dask-gateway", "numpy")]
    subprocess.run([*uv, "pip", "install", "-q", "--python", str(root / "env" / "bin" / "python"), *pins], check=True, timeout=300)
    yield root / "env" / "bin"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """World-traversable, as the gateway's cluster user must reach its working directories."""
    path = Path(tempfile.mkdtemp(prefix="bia-dask-state-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sessions_get_gateway_settings_and_scope(cluster_env: Path, state_dir: Path) -> None:
    c = Config()
    c.Spawner.environment = {"KEEP": "1"}
    configure_dask_gateway(
        c, hub_url="http://127.0.0.1:8000/", cluster_bin_dir=cluster_env, state_dir=state_dir, tcp_port=9786, http_port=9788
    )
    hub, spawner = JupyterHub(config=c), Spawner(config=c)  # the values JupyterHub will see
    env = spawner.environment
    assert env["KEEP"] == "1"
    assert env["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:8000/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://127.0.0.1:9786"
    user_role = next(r for r in hub.load_roles if r["name"] == "user")
    assert set(user_role["scopes"]) == {"self", ACCESS_SCOPE}
    (service,) = hub.services
    assert service["url"] == "http://127.0.0.1:9788"
    gateway_config = json.loads((state_dir / "dask_gateway_config.json").read_text())
    assert gateway_config["LocalClusterConfig"]["worker_cmd"] == [str(cluster_env / "dask"), "worker"]

    researcher = SimpleNamespace(name="alice@lifescience-ri.eu", groups=[])
    anonymous = SimpleNamespace(name="binder-abc123", groups=[SimpleNamespace(name=TEMPORARY_USERS_GROUP)])
    assert ACCESS_SCOPE in spawner.server_token_scopes(SimpleNamespace(user=researcher))
    assert ACCESS_SCOPE not in spawner.server_token_scopes(SimpleNamespace(user=anonymous))


def test_cluster_environment_the_cluster_user_cannot_run_is_refused(state_dir: Path) -> None:
    private = state_dir / "private"
    private.mkdir(mode=0o700)
    (private / "dask").write_text("#!/bin/sh\necho dask\n")
    (private / "dask").chmod(0o755)
    with pytest.raises(DaskGatewayConfigError, match="cannot be run by the cluster user 'nobody'"):
        configure_dask_gateway(Config(), hub_url="http://127.0.0.1:8000", cluster_bin_dir=private, state_dir=state_dir)


def test_local_cluster_fits_the_session_profile() -> None:
    env = {**os.environ, **session_dask_environment(cpus=2, memory=2 * 1024**3)}
    # What dask-labextension's "new cluster" does with the config, in a fresh interpreter.
    code = (
        "import dask, json\n"
        "from dask.distributed import LocalCluster\n"
        "kwargs = dask.config.get('labextension.factory.kwargs')\n"
        "with LocalCluster(**kwargs, dashboard_address=None, host='127.0.0.1') as cluster:\n"
        "    workers = cluster.scheduler_info['workers'].values()\n"
        "    print(json.dumps([[w['nthreads'], w['memory_limit']] for w in workers]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    workers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(workers) == 2
    assert all(threads == 1 for threads, _ in workers)
    assert sum(memory for _, memory in workers) <= 2 * 1024**3
    with pytest.raises(ValueError, match="positive"):
        session_dask_environment(cpus=0, memory=1)


def wait_for_gateway(address: str, timeout: float = 120) -> None:
    """The hub routes /services/dask-gateway only once the gateway service answers; until then
    the hub itself says 404 (slow on a fresh checkout, where every import compiles first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{address}/api/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"dask-gateway did not answer at {address}/api/health within {timeout} s")


@pytest.mark.slow
@pytest.mark.timeout(300)
# dask_gateway.Gateway.__del__ closes an already closed gateway again and complains
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_gateway_cluster_computes_for_a_hub_user(start_hub, cluster_env: Path, state_dir: Path) -> None:
    import dask.array as da
    from dask_gateway import Gateway, JupyterHubAuth

    tcp_port, http_port = free_port(), free_port()
    hub = start_hub(
        f"""
        from bia_binder.portal.auth import configure_auth
        from bia_binder.portal.dask import configure_dask_gateway
        configure_auth(c, "dev")
        configure_dask_gateway(c, hub_url="http://unused", http_port={http_port}, tcp_port={tcp_port},
                               cluster_bin_dir="{cluster_env}", state_dir="{state_dir}", cluster_idle_timeout=120)
        """,
        env={DEV_PASSWORD_ENV: "gateway-test"},
    )
    assert hub.api("POST", "/users/alice").status_code == 201
    only_gateway = hub.api("POST", "/users/alice/tokens", json={"scopes": [ACCESS_SCOPE]}).json()["token"]
    nothing = hub.api("POST", "/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]}).json()["token"]

    address = f"{hub.url}/services/dask-gateway"
    proxy_address = f"gateway://127.0.0.1:{tcp_port}"
    wait_for_gateway(address)
    with Gateway(address=address, proxy_address=proxy_address, auth=JupyterHubAuth(api_token=nothing)) as refused:
        with pytest.raises(Exception, match="401|403|nauthorized|orbidden"):
            refused.list_clusters()

    gateway = Gateway(address=address, proxy_address=proxy_address, auth=JupyterHubAuth(api_token=only_gateway))
    with gateway:
        cluster = gateway.new_cluster()
        try:
            cluster.scale(1)
            with cluster.get_client() as client:
                client.wait_for_workers(1, timeout=120)
                total = da.ones((1000, 1000), chunks=(250, 250)).sum().compute()
                assert total == 1_000_000
                # the user's code ran as the unprivileged cluster user, not as the root gateway
                assert set(client.run(os.getuid).values()) == {pwd.getpwnam("nobody").pw_uid}
            (report,) = gateway.list_clusters()
            assert report.name == cluster.name
        finally:
            cluster.shutdown()
