"""Generated study sessions' files, content-addressed: ``<data>/studies/<name>@<pin>[+image-<id>]/``.

Each entry holds ``explore-<name>.ipynb`` and ``study.json``, written once (atomically: built
under a temporary name, then renamed) and never changed, so a permanent link gives the same bytes
for as long as the entry is kept, even after the archive moved on. The spawner copies an entry
into the session's home (``c.BinderSpawner.studies_dir``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

#: what an entry's name can be (the spawner checks names it gets from the hub API against it)
ENTRY_NAME = re.compile(r"[A-Za-z0-9-]{1,64}@v\d{1,9}-[0-9a-f]{12}-t\d{1,4}-e[0-9a-f]{12}(\+image-[0-9a-f-]{1,36})?")


def entry_name(study_name: str, pin: str, image: str = "") -> str:
    name = f"{study_name}@{pin}" + (f"+image-{image}" if image else "")
    if not ENTRY_NAME.fullmatch(name):
        raise ValueError(f"not a study entry name: {name!r}")
    return name


class StudyStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def lookup(self, name: str) -> Path | None:
        path = self.root / name
        return path if ENTRY_NAME.fullmatch(name) and path.is_dir() else None

    def publish(self, name: str, files: dict[str, bytes]) -> Path:
        """The entry ``name`` with ``files``; an entry published before (by any process) is kept as it is."""
        if existing := self.lookup(name):
            return existing
        self.root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        try:
            for file_name, content in files.items():
                (building / file_name).write_bytes(content)
                os.chmod(building / file_name, 0o644)
            os.chmod(building, 0o755)
            try:
                building.rename(self.root / name)
            except OSError:  # published meanwhile by another launch: theirs has the same bytes
                shutil.rmtree(building, ignore_errors=True)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return self.root / name
