"""A loopback mirror of Python builds for uv's managed Python, filled by the test itself.

The host has CPython 3.11 only, and no CPython build of another version is reachable from here
(PyPI, Debian, npm). A real interpreter of another version is: Debian bookworm's PyPy 3.9
(``pypy3``, ``pypy3-lib``, and ``pypy3-dev`` for the C headers that packages with C extensions
build against). Its packages are downloaded with ``apt-get download`` (never installed: the host
must keep lacking Python 3.9), unpacked with ``dpkg-deb -x`` and repackaged in the layout of
PyPy's own release tarballs (``pypy3.9-v<version>-linux64/{bin,lib/pypy3.9,include/pypy3.9}``),
which uv installs as ``pypy-3.9.x``; the version in the downloads list is the one the interpreter
itself reports. The tarball is kept in ``.test-cache/pythons`` of the checkout (outside ``.cache``,
whose directory must hold only uv's cache and the builds), so later runs repackage nothing.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.stack import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".test-cache" / "pythons"
DEBIAN_PACKAGES = ("pypy3", "pypy3-lib", "pypy3-dev")
#: uv's names of this machine's architecture, from Debian's
UV_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


class MirrorUnavailable(Exception):
    """The Debian packages could not be downloaded (the reason says why): the test is skipped."""


@dataclass(frozen=True)
class PythonBuild:
    tarball: Path
    implementation: str  # uv's name: "pypy"
    major: int
    minor: int
    patch: int
    arch: str

    @property
    def minor_version(self) -> str:
        return f"{self.major}.{self.minor}"

    def download_entry(self, url: str) -> tuple[str, dict]:
        """This build as an entry of uv's downloads list (uv's ``download-metadata.json`` format)."""
        key = f"{self.implementation}-{self.major}.{self.minor}.{self.patch}-linux-{self.arch}-gnu"
        digest = hashlib.sha256(self.tarball.read_bytes()).hexdigest()
        return key, {
            "name": self.implementation,
            "arch": {"family": self.arch, "variant": None},
            "os": "linux",
            "libc": "gnu",
            "major": self.major,
            "minor": self.minor,
            "patch": self.patch,
            "prerelease": "",
            "url": url,
            "sha256": digest,
            "variant": None,
        }


def debian_pypy_build() -> PythonBuild:
    """Debian's PyPy repackaged as PyPy's release tarball (cached); MirrorUnavailable when apt cannot fetch it."""
    arch = _debian_arch()
    tarball = CACHE / f"pypy-debian-{arch}.tar.gz"
    facts = CACHE / f"pypy-debian-{arch}.json"
    if not (tarball.is_file() and facts.is_file()):
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            version = _repackage(Path(scratch), tarball)
        facts.write_text(json.dumps(version))
    version = json.loads(facts.read_text())
    return PythonBuild(tarball, "pypy", *version, arch=UV_ARCH.get(arch, arch))


def _debian_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _repackage(scratch: Path, tarball: Path) -> list[int]:
    debs = scratch / "debs"
    debs.mkdir()
    try:
        result = subprocess.run(
            ["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MirrorUnavailable(f"apt-get download {' '.join(DEBIAN_PACKAGES)} could not run: {e}") from None
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MirrorUnavailable(f"apt-get download {' '.join(DEBIAN_PACKAGES)} failed: {last}")
    unpacked = scratch / "root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    library_dir = next((unpacked / "usr" / "lib").glob("pypy3.*"))
    name = library_dir.name  # pypy3.9
    top = scratch / "stage" / f"{name}-linux64"
    (top / "bin").mkdir(parents=True)
    (top / "lib").mkdir()
    (top / "include").mkdir()
    # the launcher finds libpypy*-c.so beside itself ($ORIGIN) and its library at ../lib/pypy3.X, as upstream's
    shutil.copy2(unpacked / "usr" / "bin" / name, top / "bin" / name)
    shutil.copy2(next(unpacked.glob(f"usr/lib/*/lib{name}-c.so")), top / "bin")
    for alias in ("pypy3", "pypy", "python3", "python"):
        (top / "bin" / alias).symlink_to(name)
    shutil.copytree(library_dir, top / "lib" / name, symlinks=True)
    (top / "lib" / name / "EXTERNALLY-MANAGED").unlink(missing_ok=True)  # Debian's marker, not upstream's
    shutil.copytree(unpacked / "usr" / "include" / name, top / "include" / name, symlinks=True)
    reported = subprocess.run(
        [str(top / "bin" / name), "-c", "import sys; print(*sys.version_info[:3])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    staged = tarball.with_suffix(".partial")
    with tarfile.open(staged, "w:gz", compresslevel=1) as archive:
        archive.add(top, arcname=top.name)
    os.replace(staged, tarball)
    return [int(part) for part in reported]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    served: list[str]

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self.served.append(self.path)
        super().do_GET()


@dataclass
class PythonMirror:
    """A loopback HTTP server with uv's downloads list and the builds it names."""

    builds: list[PythonBuild]
    directory: Path
    served: list[str] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def downloads_json_url(self) -> str:
        return f"{self.url}/downloads.json"

    def start(self) -> PythonMirror:
        served, directory = self.served, str(self.directory)

        class Handler(_QuietHandler):
            def __init__(self, *args, **kwargs):
                self.served = served
                super().__init__(*args, directory=directory, **kwargs)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        listing = {}
        for build in self.builds:
            (self.directory / build.tarball.name).symlink_to(build.tarball)
            key, entry = build.download_entry(f"{self.url}/{build.tarball.name}")
            listing[key] = entry
        (self.directory / "downloads.json").write_text(json.dumps(listing, indent=1))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def host_arch_supported() -> bool:
    return platform.system() == "Linux" and shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None
