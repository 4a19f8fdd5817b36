"""Where the host cannot sandbox sessions, anonymous launches are refused unless the operator opts out."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import PROJECT_ROOT, BinderStack

pytestmark = pytest.mark.slow

NO_BWRAP = 'c.Sandbox.bwrap_path = "/nonexistent/bwrap"\n'


def test_anonymous_launch_refused_without_sandbox():
    with BinderStack(extra_args=["--allow-local-repos"], config=NO_BWRAP) as stack:
        assert "refused" in stack.log_tail(200)  # the start-up report says so
        spec = stack.git_spec("lab/refused", {"requirements.txt": "six\n"})
        events = stack.launch(spec)
    assert events[-1]["phase"] == "failed"
    assert events[-1]["status_code"] == 503
    assert "--unsafe-no-sandbox" in events[-1]["message"]


def _below_a_private_directory(path: Path) -> bool:
    return any(not (p.stat().st_mode & stat.S_IXOTH) for p in path.resolve().parents)


@pytest.mark.skipif(
    _below_a_private_directory(PROJECT_ROOT),
    reason="this checkout lies below a private (0700) directory: without bubblewrap a session's uid cannot reach "
    "its code, and up refuses to start (test_up_refuses_at_start_up_what_sessions_could_not_reach)",
)
def test_unsafe_no_sandbox_lets_anonymous_launches_through():
    with BinderStack(extra_args=["--allow-local-repos", "--unsafe-no-sandbox"], config=NO_BWRAP) as stack:
        spec = stack.git_spec("lab/unsafe", {"requirements.txt": "six\n"})
        events = stack.launch(spec)
    assert events[-1]["phase"] == "ready", events[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="sessions get uids of their own only as root")
def test_up_refuses_at_start_up_what_sessions_could_not_reach(tmp_path):
    """Without bubblewrap, a data dir below a private (0700) directory would fail every launch: `up` refuses
    to start instead, naming the directory and what to change."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    data_dir = private / "data"
    data_dir.mkdir()
    config = data_dir / "config.py"
    config.write_text(NO_BWRAP)
    command = [sys.executable, "-m", "bia_binder.cli", "up", "--port", "0", "--data-dir", str(data_dir)]
    result = subprocess.run(
        [*command, "--unsafe-no-sandbox", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert f"{private} (above {data_dir}) is not searchable by other users" in error
    assert f"chmod o+x {private}" in error
    assert "Traceback" not in result.stderr
    assert "starting on" not in result.stdout, "nothing was started"
