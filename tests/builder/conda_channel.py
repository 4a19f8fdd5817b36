"""A real conda channel on disk for tests: ``noarch: generic`` package archives and ``repodata.json`` files.

No conda channel is reachable from the test machines; this writes the same formats conda-build
produces (``.tar.bz2`` with ``info/index.json``, ``info/paths.json``, ``info/link.json``), so a real
solver and installer (rattler) consume it exactly as they would a remote channel.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CondaPackage:
    name: str
    version: str
    files: dict[str, str]  # path in the prefix -> content (paths under bin/ are made executable)
    depends: list[str] = field(default_factory=list)
    build: str = "0"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

    def index_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": 0,
            "depends": self.depends,
            "noarch": "generic",
            "subdir": "noarch",
            "license": "BSD-3-Clause",
            "timestamp": int(time.time() * 1000),
        }


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build_archive(package: CondaPackage) -> bytes:
    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(content.encode()).hexdigest(),
            "size_in_bytes": len(content.encode()),
        }
        for path, content in package.files.items()
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(package.index_json()).encode())
        _add(tar, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        _add(tar, "info/link.json", json.dumps({"noarch": {"type": "generic"}, "package_metadata_version": 1}).encode())
        _add(tar, "info/files", "\n".join(package.files).encode() + b"\n")
        for path, content in package.files.items():
            _add(tar, path, content.encode(), 0o755 if path.startswith("bin/") else 0o644)
    return buffer.getvalue()


def write_channel(root: Path, packages: list[CondaPackage], subdir: str = "linux-64") -> Path:
    """A channel directory at ``root`` (use ``root.as_uri()`` as the channel URL)."""
    noarch = root / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    records = {}
    for package in packages:
        archive = build_archive(package)
        (noarch / package.filename).write_bytes(archive)
        records[package.filename] = {
            **package.index_json(),
            "md5": hashlib.md5(archive).hexdigest(),
            "sha256": hashlib.sha256(archive).hexdigest(),
            "size": len(archive),
        }
    (noarch / "repodata.json").write_text(
        json.dumps({"info": {"subdir": "noarch"}, "packages": records, "packages.conda": {}})
    )
    platform_dir = root / subdir
    platform_dir.mkdir(exist_ok=True)
    (platform_dir / "repodata.json").write_text(
        json.dumps({"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}})
    )
    return root
