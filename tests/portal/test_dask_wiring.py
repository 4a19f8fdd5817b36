"""dask-gateway in what `bia-binder up` ships: configured for logged-in hubs, clusters in the very
environment the spawner builds as the default, and reported (not fatal) where the host cannot run it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from bia_binder.portal.auth import DEV_PASSWORD_ENV
from bia_binder.portal.dask import ACCESS_SCOPE, DaskGatewayService
from bia_binder.environments.default import environment_key as default_environment_key
from bia_binder.sessions.spawner import BinderSpawner
from bia_binder.up import free_port

from .test_stack_config import by_name, load_hub_config

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="clusters drop to the cluster user, which needs root")
NO_USER = "no-such-user-bia"


@needs_root
def test_logged_in_hub_runs_the_gateway_in_the_spawners_default_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DEV_PASSWORD_ENV, "a-test-password")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("dask-gateway\n")
    c = load_hub_config(
        monkeypatch, tmp_path, auth="dev", user_config=f"c.BinderSpawner.default_environment_requirements = {str(requirements)!r}\n"
    )
    service = by_name(c.JupyterHub.services)["dask-gateway"]
    gateway_config = json.loads((tmp_path / "dask-gateway" / "dask_gateway_config.json").read_text())
    backend = gateway_config["DefaultEnvironmentBackend"]

    spawner = BinderSpawner(user=SimpleNamespace(name="alice", url="/user/alice/"), config=c)
    assert backend["environments_dir"] == str(Path(spawner.environments_dir).resolve())
    assert backend["environment_key"] == default_environment_key(spawner.builder, "dask-gateway\n")
    assert service["url"] == f"http://{gateway_config['Proxy']['address']}"
    assert DEV_PASSWORD_ENV not in service["environment"]  # the gateway needs HOME, not the hub's secrets
    assert "HOME" in service["environment"]
    environment = c.Spawner.environment.get_value({})  # added with update()
    assert environment["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:8000/services/dask-gateway"
    assert environment["DASK_GATEWAY__PROXY_ADDRESS"] == f"gateway://{gateway_config['Proxy']['tcp_address']}"
    assert ACCESS_SCOPE in by_name(c.JupyterHub.load_roles)["user"]["scopes"]


def test_no_gateway_for_anonymous_hubs_or_where_it_cannot_run(monkeypatch, tmp_path):
    for data_dir in ("none", "dev"):
        (tmp_path / data_dir).mkdir()
    assert "dask-gateway" not in by_name(load_hub_config(monkeypatch, tmp_path / "none").JupyterHub.services)
    monkeypatch.setenv(DEV_PASSWORD_ENV, "a-test-password")
    c = load_hub_config(monkeypatch, tmp_path / "dev", auth="dev", user_config=f"c.DaskGatewayService.cluster_user = {NO_USER!r}\n")
    assert "dask-gateway" not in by_name(c.JupyterHub.services)
    assert "DASK_GATEWAY__ADDRESS" not in c.Spawner.environment.get_value({})
    turned_off = DaskGatewayService(enabled=False).unavailable_reason()
    assert turned_off == "turned off by c.DaskGatewayService.enabled"


@needs_root  # elsewhere the reason is root, not the user
def test_up_reports_a_gateway_it_cannot_run_and_starts_anyway(tmp_path):
    """`up` says why in its start-up report; the hub starts without the gateway."""
    config = tmp_path / "bia_binder_config.py"
    config.write_text(f"c.DaskGatewayService.cluster_user = {NO_USER!r}\n")
    port = free_port()
    env = {**os.environ, DEV_PASSWORD_ENV: secrets.token_hex(8)}
    args = ["--auth", "dev", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--config", str(config)]
    up = subprocess.Popen(
        [sys.executable, "-m", "bia_binder.cli", "up", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        report = next(line for line in up.stdout if line.startswith(("dask-gateway:", "bia-binder: starting")))
        assert report.startswith("dask-gateway: off:") and f"{NO_USER!r} does not exist" in report, report
        deadline = time.monotonic() + 120
        while not hub_answers(port):
            assert up.poll() is None, f"bia-binder up exited with {up.returncode}"
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.5)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def hub_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/hub/api", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
