"""The hub configuration `bia-binder up` runs, loaded as JupyterHub loads it: portal pieces wired
in, and the operator's config file merged with (not clobbering) our services, roles and groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from bia_binder.portal.culling import TEMPORARY_USERS_GROUP
from bia_binder.settings import UpSettings

HUB_CONFIG = Path(__file__).resolve().parents[2] / "src" / "bia_binder" / "hub" / "jupyterhub_config.py"


def load_hub_config(monkeypatch, data_dir: Path, auth: str = "none", user_config: str | None = None) -> Config:
    config_file = ""
    if user_config is not None:
        config_file = str(data_dir / "operator_config.py")
        Path(config_file).write_text(user_config)
    for key, value in UpSettings(data_dir=str(data_dir), auth=auth, config_file=config_file).to_environ().items():
        monkeypatch.setenv(key, value)
    return PyFileConfigLoader(HUB_CONFIG.name, str(HUB_CONFIG.parent)).load_config()


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {entry["name"]: entry for entry in entries}


def test_portal_pieces_are_configured(monkeypatch, tmp_path):
    c = load_hub_config(monkeypatch, tmp_path)
    services, roles = by_name(c.JupyterHub.services), by_name(c.JupyterHub.load_roles)
    assert {"binder", "idle-culler", "idle-culler-temporary"} <= set(services)
    assert "--timeout=43200" in services["idle-culler"]["command"]
    assert "--max-age=604800" in services["idle-culler"]["command"]
    # every scope of the binder service is filtered to the temporary users (its custom scope creates them there)
    scopes = roles["binder-service"]["scopes"]
    assert f"servers!group={TEMPORARY_USERS_GROUP}" in scopes
    assert all(s.endswith(f"!group={TEMPORARY_USERS_GROUP}") or s.startswith("custom:") for s in scopes), scopes
    assert TEMPORARY_USERS_GROUP in c.JupyterHub.load_groups
    assert c.JupyterHub.authenticator_class == "null"
    rclone_conf = Path(c.Spawner.environment.get_value({})["RCLONE_CONFIG"])  # added with update()
    assert rclone_conf == tmp_path / "rclone.conf" and "[idr]" in rclone_conf.read_text()
    assert c.HomeManager.root == str(tmp_path / "homes")


def test_dev_auth_uses_the_dev_authenticator(monkeypatch, tmp_path):
    monkeypatch.setenv("BIA_BINDER_DEV_PASSWORD", "a-test-password")
    c = load_hub_config(monkeypatch, tmp_path, auth="dev")
    assert c.JupyterHub.authenticator_class == "bia_binder.portal.auth.DevAuthenticator"


def test_operator_config_adds_to_and_replaces_our_entries_by_name(monkeypatch, tmp_path):
    operator = """
from bia_binder.portal.culling import culler_command
c.JupyterHub.services = [
    {"name": "idle-culler", "command": culler_command(3600, 0, 60, cull_users=False, concurrency=1)},
    {"name": "lab-dashboard", "url": "http://127.0.0.1:9"},
]
c.JupyterHub.load_roles.append({"name": "dashboard", "scopes": ["read:users"], "services": ["lab-dashboard"]})
c.JupyterHub.load_groups = {"lab": {"users": []}}
c.HomeManager.quota = "50G"
"""
    c = load_hub_config(monkeypatch, tmp_path, user_config=operator)
    services, roles = by_name(c.JupyterHub.services), by_name(c.JupyterHub.load_roles)
    assert {"binder", "idle-culler", "idle-culler-temporary", "lab-dashboard"} == set(services)
    assert len(c.JupyterHub.services) == 4  # nothing twice
    assert "--timeout=3600" in services["idle-culler"]["command"]  # theirs won
    assert {"binder-service", "idle-culler", "idle-culler-temporary", "dashboard"} == set(roles)
    assert {TEMPORARY_USERS_GROUP, "lab"} == set(c.JupyterHub.load_groups)
    assert c.HomeManager.quota == "50G"


def test_unknown_auth_mode_is_refused_in_one_line(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown --auth mode 'ldap'"):
        load_hub_config(monkeypatch, tmp_path, auth="ldap")
