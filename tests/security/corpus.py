"""Hostile inputs for the launch endpoints: encodings, unicode, CRLF, dot segments, NUL, option injection,
oversized specs. Paths are written exactly as sent (escapes included)."""

from __future__ import annotations

from itertools import product
from urllib.parse import quote

PROVIDERS = ["gh", "gl", "git", "gist", "zenodo", "figshare", "dataverse", "GH", "g%68", "nope", "%zz", "a%20b", ""]

FRAGMENTS = [
    "%zz", "%", "%%", "%f", "%ff%fe", "%c0%af", "%e2%80%ae", "%00", "%0d%0aSet-Cookie:%20x=1", "%0a", "%09",
    "..", "%2e%2e", "%2e%2e%2f%2e%2e", "..%2f..%2f..", "//evil.example", "%2f%2fevil.example", "%5c%5cevil",
    "--upload-pack=touch%20%2Ftmp%2Fbia-pwned", "-c%20core.sshCommand=id", "ext::sh%20-c%20id",
    "file%3A%2F%2F%2Fetc%2Fpasswd", "http%3A%2F%2F169.254.169.254%2Flatest", "http%3A%2F%2F[::1]%2Fx",
    "%E2%80%8B", "%F0%9F%92%A9", "é", "%C3%A9" * 50, "a" * 300, "x" * 20000, "%25" * 500,
    "org/repo/main", "org/repo/" + quote("`touch /tmp/bia-pwned`", safe=""), "org/repo/$(id)",
    "1234567890123456789012345678901234567890", "doi:10.5281/zenodo.1", "10.5281%2Fzenodo.3242074",
]  # fmt: skip

MALFORMED_PATHS = [
    "/v2/a%20b/x/y", "/v2/a%zz/b/c", "/v2/%ff%fe/x", "/v2/gh/%zz", "/v2/git/%0d%0aSet-Cookie:%20x=1/HEAD",
    "/v2/gh/org/repo/%00", "/hub/%zz", "/%zz", "/user/%zz/lab", "/repo/%zz/%zz", "/v2/" + "a" * 3000 + "/b/c",
    "/badge.svg?%zz=%zz", "/health?%00", "/api/repoproviders/%zz", "/static/%2e%2e/%2e%2e/app.py",
    "/static/..%2f..%2fapp.py", "/v2/gh/org/repo/main?urlpath=%zz", "/v2/gh/org/repo/main?urlpath=javascript:alert(1)",
]  # fmt: skip


def hostile_paths() -> list[str]:
    """Every provider × fragment, as a launch page and as an event stream, plus the malformed paths."""
    paths = list(MALFORMED_PATHS)
    for provider, fragment in product(PROVIDERS, FRAGMENTS):
        for endpoint in ("v2", "build"):
            paths.append(f"/{endpoint}/{provider}/{fragment}")
            paths.append(f"/{endpoint}/{provider}/{fragment}/{fragment}")
    paths.append("/v2/gh/" + "a" * 2**20)  # a 1 MB URL
    return paths
