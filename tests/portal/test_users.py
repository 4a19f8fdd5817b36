"""`bia-binder users` against a real hub and real home images."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bia_binder.cli import main
from bia_binder.portal.auth import DEV_PASSWORD_ENV
from bia_binder.portal.homes import DAY, HomeManager

from .hubprocess import free_port

MB = 1024 * 1024


@pytest.fixture
def homes(tmp_path: Path):
    manager = HomeManager(root=str(tmp_path / "homes"), quota="32M")
    yield manager
    for username in manager.usernames():
        manager.unmount(username)


@pytest.mark.slow
def test_users_lists_storage_quota_and_activity(start_hub, homes: HomeManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = start_hub(
        """
        from bia_binder.portal.auth import configure_auth
        configure_auth(c, "dev", admin_users={"admin1"})
        """,
        env={DEV_PASSWORD_ENV: "users-test"},
    )
    for name in ("alice@lifescience-ri.eu", "bob"):
        assert hub.api("POST", f"/users/{name}").status_code == 201
    (homes.ensure_home("alice@lifescience-ri.eu") / "big.bin").write_bytes(os.urandom(3 * MB))
    homes.ensure_home("zoe")  # a home whose user the hub no longer has
    token_file = tmp_path / "token"
    token_file.write_text(hub.token)
    common = ["--hub-api", hub.api_url, "--token-file", str(token_file), "--homes-root", homes.root]

    assert main(["users", *common, "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"admin1", "alice@lifescience-ri.eu", "bob", "zoe"}
    alice = rows["alice@lifescience-ri.eu"]
    assert 3 * MB <= alice["home_used_bytes"] < 32 * MB and alice["home_quota_bytes"] == 32 * MB
    assert rows["admin1"]["admin"] and not rows["bob"]["admin"]
    assert rows["bob"]["home_used_bytes"] is None
    assert not rows["zoe"]["in_hub"]

    assert main(["users", *common]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["USER", "ADMIN", "SESSION", "LAST", "ACTIVITY", "HOME", "USED", "QUOTA"]
    alice_line = next(line for line in table if line.startswith("alice@"))
    assert "32.0 MiB" in alice_line
    assert any(line.startswith("zoe (not in hub)") for line in table)


def test_unreachable_hub_and_missing_token_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert main(["users", "--hub-api", "http://127.0.0.1:1/hub/api", "--homes-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    token_file = tmp_path / "token"
    token_file.write_text("abc")
    dead = f"http://127.0.0.1:{free_port()}/hub/api"
    assert main(["users", "--hub-api", dead, "--token-file", str(token_file), "--homes-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bia-binder users: cannot reach the hub API") and err.count("\n") == 1


def test_reclaim_lists_first_and_acts_only_with_yes(homes: HomeManager, capsys: pytest.CaptureFixture[str]) -> None:
    homes.ensure_home("olduser")
    homes.unmount("olduser")
    year_ago = time.time() - 400 * DAY
    os.utime(homes.image_path("olduser"), (year_ago, year_ago))

    assert main(["users", "reclaim", "--homes-root", homes.root]) == 0
    out = capsys.readouterr().out
    assert "archive  olduser" in out and "--yes" in out
    assert homes.image_path("olduser").exists()

    assert main(["users", "reclaim", "--yes", "--homes-root", homes.root]) == 0
    assert "Done: 1 of 1" in capsys.readouterr().out
    assert homes.archived_path("olduser").exists() and not homes.image_path("olduser").exists()
