"""Fuzzing: schemathesis against the OpenAPI description (at least 10 000 requests by default) and a corpus of
hostile specs, against the whole stack in a network namespace of its own (only a loopback: nothing a fuzzed
spec names can be reached, so no traffic leaves the machine). 0 responses >= 500, 0 hangs, 0 tracebacks.

The default run is bounded (about 4 minutes of schemathesis, as part of `make test`: about 10 000 requests on an idle 2-core machine); the long run behind the flags
goes to 10 000 requests and more: BIA_BINDER_FUZZ_EXAMPLES (per operation, default 150; 1000 for the long run)
and BIA_BINDER_FUZZ_SECONDS (default 260; 1800 for the long run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.stack import PROJECT_ROOT

EXAMPLES = int(os.environ.get("BIA_BINDER_FUZZ_EXAMPLES", "150"))
SECONDS = float(os.environ.get("BIA_BINDER_FUZZ_SECONDS", "260"))
#: at least this many schemathesis requests in the default run, even on a loaded 2-core machine
MIN_REQUESTS = int(os.environ.get("BIA_BINDER_FUZZ_MIN_REQUESTS", "500"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.timeout(SECONDS + 900),  # the module's fixture runs the whole fuzz: stack start + run + corpus
]


@pytest.fixture(scope="module")
def summary():
    namespace = f"bbt-fuzz-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        done = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.security.fuzz",
             "--examples", str(EXAMPLES), "--seconds", str(SECONDS)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=SECONDS + 900,
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the numbers behind the README's security section
    artifacts = PROJECT_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "fuzz-summary.json").write_text(json.dumps(result, indent=1))
    return result


def test_schemathesis_finds_no_server_error(summary):
    fuzz = summary["schemathesis"]
    assert fuzz["requests"] >= MIN_REQUESTS, fuzz
    assert fuzz["server_errors"] == 0 and fuzz["no_response"] == 0, fuzz
    assert fuzz["slowest_s"] < 30, fuzz


def test_hostile_specs_get_4xx_and_never_hang(summary):
    corpus = summary["corpus"]
    assert corpus["requests"] > 1000
    assert corpus["server_errors"] == [] and corpus["hangs"] == [], corpus


def test_no_traceback_in_the_logs_and_still_healthy(summary):
    assert summary["tracebacks"] == [] and summary["healthy_after"] == 200, summary
