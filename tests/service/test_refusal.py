"""Where the host cannot sandbox sessions, anonymous launches are refused unless the operator opts out."""

from __future__ import annotations

import stat
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
    reason="this checkout lies below a private (0700) directory: without bubblewrap, a session's uid cannot reach "
    "its code (known limit: launches then fail with 'not searchable by other users')",
)
def test_unsafe_no_sandbox_lets_anonymous_launches_through():
    with BinderStack(extra_args=["--allow-local-repos", "--unsafe-no-sandbox"], config=NO_BWRAP) as stack:
        spec = stack.git_spec("lab/unsafe", {"requirements.txt": "six\n"})
        events = stack.launch(spec)
    assert events[-1]["phase"] == "ready", events[-1]
