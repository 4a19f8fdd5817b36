"""jupyterhub-idle-culler as hub services, with real single-user servers and short timeouts."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub
from traitlets.config import Config

from bia_binder.portal.auth import DEV_PASSWORD_ENV
from bia_binder.portal.culling import TEMPORARY_USERS_GROUP, configure_culler, delete_user_directories

from .hubprocess import HubProcess

SINGLEUSER = Path(sys.executable).parent / "jupyterhub-singleuser"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_culler_services_and_scoped_roles() -> None:
    c = Config()
    c.JupyterHub.services = [{"name": "binder", "url": "http://127.0.0.1:8585"}]
    configure_culler(c, idle_timeout=3600, max_age=7200, cull_every=60)
    hub = JupyterHub(config=c)  # the values JupyterHub will see
    services = {s["name"]: s for s in hub.services}
    assert set(services) == {"binder", "idle-culler", "idle-culler-temporary"}
    assert "--timeout=3600" in services["idle-culler"]["command"]
    assert "--max-age=7200" in services["idle-culler"]["command"]
    assert not any(arg.startswith("--cull-users") for arg in services["idle-culler"]["command"])
    assert "--cull-users=true" in services["idle-culler-temporary"]["command"]
    temporary_role = next(r for r in hub.load_roles if r["name"] == "idle-culler-temporary")
    assert all(scope.endswith(f"!group={TEMPORARY_USERS_GROUP}") for scope in temporary_role["scopes"])
    assert TEMPORARY_USERS_GROUP in hub.load_groups
    with pytest.raises(ValueError, match="idle_timeout"):
        configure_culler(Config(), idle_timeout=0)


def test_delete_user_directories_stays_inside_roots(tmp_path: Path) -> None:
    (tmp_path / "binder-abc" / "sub").mkdir(parents=True)
    (tmp_path / "binder-abc" / "sub" / "f.txt").write_text("x")
    (tmp_path / "other").mkdir()
    assert delete_user_directories("binder-abc", [tmp_path]) == [tmp_path / "binder-abc"]
    assert not (tmp_path / "binder-abc").exists() and (tmp_path / "other").exists()
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError, match="refusing"):
            delete_user_directories(bad, [tmp_path])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_idle_and_old_sessions_are_stopped_and_temporary_users_removed(start_hub, tmp_path: Path) -> None:
    homes = tmp_path / "homes"
    homes.mkdir()
    hub: HubProcess = start_hub(
        f"""
        from pathlib import Path
        from jupyterhub.spawner import SimpleLocalProcessSpawner
        from bia_binder.portal.auth import configure_auth
        from bia_binder.portal.culling import configure_culler, delete_user_directories

        configure_auth(c, "dev")

        class CleaningSpawner(SimpleLocalProcessSpawner):
            def delete_forever(self):
                delete_user_directories(self.user.name, [Path("{homes}")])

        c.JupyterHub.spawner_class = CleaningSpawner
        c.Spawner.cmd = ["{SINGLEUSER}"]
        c.Spawner.args = ["--ServerApp.allow_root=True"]
        c.SimpleLocalProcessSpawner.home_dir_template = "{homes}/{{username}}"
        c.Spawner.start_timeout = 120
        c.Spawner.http_timeout = 120
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}  # POST .../server answers at once
        configure_culler(c, idle_timeout=10, max_age=25, cull_every=2)
        """,
        env={DEV_PASSWORD_ENV: "culler-test"},
    )
    users = ("binder-abc123", "researcher", "busy")
    for name in users:
        assert hub.api("POST", f"/users/{name}").status_code == 201
    assert hub.api("POST", f"/groups/{TEMPORARY_USERS_GROUP}/users", json={"users": ["binder-abc123"]}).status_code == 200
    for name in users:
        assert hub.api("POST", f"/users/{name}/server").status_code in (201, 202)
        (homes / name).mkdir(exist_ok=True)
        (homes / name / "work.txt").write_text(f"{name}'s work")

    # Each server must be seen ready: the first may be culled (idle 10 s) before the last is up.
    seen_ready: set[str] = set()

    def all_seen_ready() -> bool:
        for name in set(users) - seen_ready:
            user = hub.api("GET", f"/users/{name}").json()
            if user.get("servers", {}).get("", {}).get("ready"):
                seen_ready.add(name)
        return seen_ready == set(users)

    wait_for(all_seen_ready, 120, "all servers to be ready")

    def report_activity(name: str) -> None:
        now = datetime.now(UTC).isoformat()
        hub.api("POST", f"/users/{name}/activity", json={"last_activity": now, "servers": {"": {"last_activity": now}}})

    stop_activity = threading.Event()

    def keep_busy() -> None:
        while not stop_activity.wait(1):
            report_activity("busy")

    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()

    # idle for 10 s → both servers stopped; the temporary user is deleted with its files
    wait_for(lambda: hub.api("GET", "/users/binder-abc123").status_code == 404, 90, "binder-abc123 to be removed")
    assert not (homes / "binder-abc123").exists()
    wait_for(lambda: not hub.api("GET", "/users/researcher").json()["servers"], 90, "researcher's server to be stopped")
    assert hub.api("GET", "/users/researcher").status_code == 200
    assert (homes / "researcher" / "work.txt").read_text() == "researcher's work"

    # "busy" reports activity every second, yet its session is stopped at max_age (25 s)
    try:
        wait_for(lambda: not hub.api("GET", "/users/busy").json()["servers"], 120, "busy's server to be stopped at max_age")
    finally:
        stop_activity.set()
        busy.join(timeout=30)
    assert hub.api("GET", "/users/busy").status_code == 200
