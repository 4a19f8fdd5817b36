"""Shared fixtures. The whole-stack fixture starts `bia-binder up` once per test module."""

from __future__ import annotations

import pytest

from tests.stack import BinderStack


@pytest.fixture(scope="module")
def binder_stack():
    """A running bia-binder (hub + proxy + binder service) with a git server on loopback.

    Attributes: ``url`` (http://127.0.0.1:<port>), ``data_dir``, ``git`` (tests.gitserver.GitServer),
    ``git_spec(name, files)`` → BinderHub spec, ``launch(spec)`` → list of events.
    """
    with BinderStack() as stack:
        yield stack
