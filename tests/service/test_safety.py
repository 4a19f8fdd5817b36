"""A stack started the way an operator would (no --allow-local-repos): local repositories are refused."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.stack import BinderStack, read_events

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def public_stack():
    with BinderStack(extra_args=["--unsafe-no-sandbox"]) as stack:
        yield stack


@pytest.mark.parametrize(
    "url_of",
    [
        lambda stack: "file:///etc",
        lambda stack: f"{stack.git.url}/org/repo",  # loopback
        lambda stack: "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    ],
    ids=["file", "loopback", "link-local"],
)
def test_local_and_private_repositories_are_refused(public_stack, url_of):
    events = read_events(f"{public_stack.url}/build/git/{quote(url_of(public_stack), safe='')}/HEAD", timeout=60)
    assert events[-1]["phase"] == "failed"
    assert events[-1]["status_code"] == 403
    assert "allow-local-repos" in events[-1]["message"] or "allow_local_repos" in events[-1]["message"]
