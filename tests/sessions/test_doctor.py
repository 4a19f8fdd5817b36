"""The guarantee report, and refusing anonymous launches where isolation is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from traitlets.config import Config

from bia_binder.events import LaunchError
from bia_binder.sessions.doctor import guarantee_report

from .conftest import needs_root, small_profile


def missing_bwrap_config() -> Config:
    config = Config()
    config.Sandbox.bwrap_path = "/nonexistent/bwrap"
    return config


@needs_root
def test_report_on_this_host_lists_every_guarantee_as_holding():
    report = guarantee_report()
    assert [name for name, _ in report.guarantees] == [
        "sandbox",
        "uid separation",
        "network isolation",
        "memory limit",
        "cpu limit",
        "pids limit",
    ]
    assert report.isolated and report.anonymous_allowed, report.text()
    assert "Anonymous launches: allowed" in report.text()


def test_report_without_bubblewrap_says_why_and_refuses_anonymous_launches():
    report = guarantee_report(missing_bwrap_config())
    assert "sandbox" in report.missing() and not report.anonymous_allowed
    text = report.text()
    assert "[NO] sandbox" in text and "/nonexistent/bwrap" in text and "install the `bubblewrap` package" in text
    assert "--unsafe-no-sandbox" in text

    unsafe = guarantee_report(missing_bwrap_config(), unsafe=True)
    assert unsafe.anonymous_allowed and "ALLOWED WITHOUT sandbox" in unsafe.text()


@needs_root
def test_anonymous_launch_without_bubblewrap_is_refused_unless_unsafe(sandboxes):
    sandbox = sandboxes.sandbox(bwrap_path="/nonexistent/bwrap")
    with pytest.raises(LaunchError) as refused:
        sandboxes.session("anon", small_profile(), sandbox=sandbox)
    assert refused.value.status_code == 503
    assert "sandbox" in refused.value.message and "--unsafe-no-sandbox" in refused.value.message
    assert "\n" not in refused.value.message

    # a logged-in launch is allowed, and still runs as its own uid
    member = sandboxes.session("member", small_profile(), sandbox=sandbox, anonymous=False)
    assert int(sandboxes.run(member, "import os; print(os.getuid())")) == member.uid != 0

    # the operator accepted the risk: anonymous runs, unsandboxed but with its own uid and limits
    unsafe = sandboxes.sandbox(bwrap_path="/nonexistent/bwrap", allow_unsafe=True)
    anon = sandboxes.session("anon-unsafe", small_profile(), sandbox=unsafe)
    assert "/nonexistent/bwrap" not in " ".join(anon.wrap(["true"]))
    assert int(sandboxes.run(anon, "import os; print(os.getuid())")) == anon.uid != 0


def test_doctor_command_prints_the_report_and_fails_when_isolation_is_missing(tmp_path):
    config_file = tmp_path / "bia_binder_config.py"
    config_file.write_text('c.Sandbox.bwrap_path = "/nonexistent/bwrap"\n')
    doctor = [sys.executable, "-m", "bia_binder.cli", "doctor", "--config", str(config_file)]
    result = subprocess.run(doctor, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "[NO] sandbox" in result.stdout and "refused" in result.stdout

    missing = subprocess.run([*doctor[:-1], str(tmp_path / "absent.py")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "not found" in missing.stdout and "Traceback" not in missing.stderr
