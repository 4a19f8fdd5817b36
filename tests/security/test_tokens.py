"""Where a session's token must never be: another origin, a log line, a process argument list, the hub's
database (readable by the service's user only), another session."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import subprocess

import pytest

from tests.kernel import run_cell

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def used(stack):
    """A whole launch and use: launch, open the lab with ?token= as a browser would, run a cell."""
    spec = stack.git_spec("lab/token-probe", {"requirements.txt": "six\n"})
    events = stack.launch(spec)
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    import httpx

    assert httpx.get(f"{ready['url']}lab", params={"token": ready["token"]}, timeout=60).status_code == 200
    out = asyncio.run(run_cell(ready["url"], ready["token"], "import os; print(sorted(k for k in os.environ if 'TOKEN' in k))"))
    return ready, out


def test_no_token_in_any_process_argument_list(used):
    ready, _ = used
    arguments = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert ready["token"] not in arguments


def test_no_token_in_any_log(stack, used):
    ready, _ = used
    logs = [stack.log_path, *stack.data_dir.glob("sessions/.*.log")]
    assert len(logs) > 1, "no session log to look into"
    for log in logs:
        assert ready["token"] not in log.read_text(errors="replace"), log


def test_the_hub_database_is_the_services_alone_and_keeps_no_session_token(stack, used):
    ready, _ = used
    database = stack.data_dir / "jupyterhub.sqlite"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert ready["token"].encode() not in database.read_bytes()
    with sqlite3.connect(database) as db:
        options = [row[0] for row in db.execute("select user_options from spawners")]
    assert options and not any("token" in json.loads(o or "{}") for o in options), options


def test_the_session_holds_its_own_token_only(used):
    """JUPYTER_TOKEN (its own) is the only token-named variable an anonymous session has: no hub token."""
    _ready, out = used
    assert out.strip() == "['JUPYTER_TOKEN']"
