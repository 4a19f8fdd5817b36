"""What ``bia_binder.data`` needs, checked when it is imported.

A repository's own pins take precedence over this library's needs (the builder adds them only
where they fit: a repository pinned to zarr 2 keeps zarr 2). Importing the library there must
then say, in one line, what is missing, instead of failing somewhere deep inside zarr.
The list mirrors the ``data`` extra of pyproject.toml (a test keeps them equal).
"""

from __future__ import annotations

import importlib.metadata
import re

REQUIREMENTS = (
    ("zarr", "3.0"),
    ("dask", "2024.8"),
    ("httpx", "0.27"),
    ("fsspec", "2024.6"),
    ("aiohttp", "3.9"),
    ("numpy", "1.26"),
    ("tqdm", "4.66"),
)


def _release(version: str) -> tuple[int, ...]:
    # hand-written: `packaging` is not among the library's dependencies, and every bound here is a plain X.Y
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def unmet() -> list[str]:
    """One phrase per unmet requirement, e.g. ``zarr>=3.0 (this environment has zarr 2.18.3)``."""
    problems = []
    for name, minimum in REQUIREMENTS:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}>={minimum} (not installed)")
            continue
        if _release(installed) < _release(minimum):
            problems.append(f"{name}>={minimum} (this environment has {name} {installed})")
    return problems


def check() -> None:
    if problems := unmet():
        raise ImportError(
            f"bia_binder.data needs {', '.join(problems)}: this environment keeps the repository's own "
            "versions (see its build log); use those libraries directly, or launch the default bioimage environment"
        )
