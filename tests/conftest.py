"""Shared fixtures. The whole-stack fixture starts `bia-binder up` once per test module."""

from __future__ import annotations

import glob
import os
import sys
import sysconfig

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


def host_site_dirs() -> list[str]:
    """The package directories of the host's interpreters: the one running the suite, its base, the system's."""
    candidates = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    candidates |= {base["purelib"], base["platlib"]}
    for pattern in ("/usr/lib/python3*/*-packages", "/usr/local/lib/python3*/*-packages"):
        candidates |= set(glob.glob(pattern))
    return sorted(path for path in candidates if os.path.isdir(path))


def installed_distributions(directories: list[str]) -> set[str]:
    """``directory/name-version.dist-info`` of every installed package: cheap (directory listings only)."""
    return {
        os.path.join(directory, entry)
        for directory in directories
        for entry in os.listdir(directory)
        if entry.endswith((".dist-info", ".egg-info"))
    }


@pytest.fixture(scope="session", autouse=True)
def host_interpreters_unchanged():
    """Nothing the suite builds or runs (postBuild's pip, a session's %pip...) may install into a host interpreter."""
    directories = host_site_dirs()
    before = installed_distributions(directories)
    yield
    after = installed_distributions(directories)
    if before != after:
        added, removed = sorted(after - before), sorted(before - after)
        pytest.fail(f"the host's interpreters changed during the tests: added {added[:10]}, removed {removed[:10]}")
