"""Admission: over the session limits, a launch ends with a clear 429 instead of overloading the host."""

from __future__ import annotations

import pytest

from tests.stack import BinderStack, hub_api

pytestmark = pytest.mark.slow

LIMITS = "c.Admission.max_sessions = 2\nc.Admission.per_repo_quota = 1\nc.Admission.retry_after = 120\n"


@pytest.fixture(scope="module")
def limited_stack():
    with BinderStack(config=LIMITS) as stack:
        yield stack


def test_limits_refuse_with_reason_and_free_up_after_stop(limited_stack):
    stack = limited_stack
    spec_a = stack.git_spec("quota/a", {"requirements.txt": "six\n"})
    first = stack.launch(spec_a)
    assert first[-1]["phase"] == "ready", first[-1]

    again = stack.launch(spec_a)
    assert again[-1]["phase"] == "failed" and again[-1]["status_code"] == 429
    assert "this repository" in again[-1]["message"] and "2 minute" in again[-1]["message"]

    second = stack.launch(stack.git_spec("quota/b", {"requirements.txt": "six\n"}))
    assert second[-1]["phase"] == "ready", second[-1]

    full = stack.launch(stack.git_spec("quota/c", {"requirements.txt": "six\n"}))
    assert full[-1]["phase"] == "failed" and full[-1]["status_code"] == 429
    assert "full" in full[-1]["message"]

    # a stopped session frees its slot (the hub's view counts, not the service's memory)
    stack_user = first[-1]["url"].rstrip("/").rsplit("/", 1)[-1]
    assert hub_api(stack, "DELETE", f"users/{stack_user}/server").status_code in (202, 204)
    retry = stack.launch(stack.git_spec("quota/d", {"requirements.txt": "six\n"}))
    assert retry[-1]["phase"] == "ready", retry[-1]
