"""uv's failures become one line that names the cause (samples are uv's real output, wrapping included)."""

from __future__ import annotations

import pytest

from bia_binder.builder.uv import explain_uv_failure

SAMPLES = [
    (
        [
            "Using Python 3.11.7 environment at: /tmp/env",
            "  × No solution found when resolving dependencies:",
            "  ╰─▶ Because bia-binder-no-such-package-xyz was not found in the package",
            "      registry and you require bia-binder-no-such-package-xyz, we can conclude",
            "      that your requirements are unsatisfiable.",
        ],
        "No matching distribution for 'bia-binder-no-such-package-xyz' (no such package on the package index)",
    ),
    (
        [
            "error: No solution found when resolving dependencies",
            "  cause: Because there is no version of six==99 and you require six==99, we can conclude that your "
            "requirements are unsatisfiable.",
        ],
        "No matching distribution for 'six==99' (no such version on the package index)",
    ),
    (
        [
            "error: Failed to build `foo @ file:///tmp/repo`",
            "  Caused by: The build backend returned an error",
            "  Caused by: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)",
            "",
            "hint: This usually indicates a problem with the package or the build environment.",
        ],
        "Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)",
    ),
    ([], "no output"),
]


@pytest.mark.parametrize("tail,reason", SAMPLES)
def test_failure_reasons(tail: list[str], reason: str) -> None:
    assert explain_uv_failure(tail) == reason


def test_reasons_stay_one_short_line() -> None:
    reason = explain_uv_failure(["error: " + "x" * 1000])
    assert len(reason) <= 300 and "\n" not in reason
