"""Shared fixtures. The whole-stack fixture starts `bia-binder up` once per test module."""

from __future__ import annotations

import os

import pytest

from tests.stack import PROJECT_ROOT, BinderStack

# One package cache for the whole run, as `make test` sets it: the sandboxed builds of the
# stacks run as an unprivileged uid, which cannot reach uv's default cache under /root.
os.environ.setdefault("UV_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "uv"))
# Encrypted homes need a master key: one for the run (hubs started by tests inherit it), so that no
# test makes the host's /etc/bia-binder/home-master.key
os.environ.setdefault("BIA_BINDER_HOME_MASTER_KEY", os.urandom(32).hex())

#: the anonymous sessions' disk_limit in the shared stack
SESSION_DISK = "64M"


@pytest.fixture(scope="module")
def binder_stack():
    """A running bia-binder (hub + proxy + binder service) with a git server on loopback.

    Attributes: ``url`` (http://127.0.0.1:<port>), ``data_dir``, ``git`` (tests.gitserver.GitServer),
    ``git_spec(name, files)`` → BinderHub spec, ``launch(spec)`` → list of events.
    """
    # a small disk for anonymous sessions, so that a test can fill it
    with BinderStack(config=f"c.ResourceProfiles.anonymous.update({{'disk_limit': {SESSION_DISK!r}}})\n") as stack:
        yield stack
