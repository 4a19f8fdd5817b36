from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .hubprocess import HubProcess


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    """Start real JupyterHubs (stopped at the end of the test): ``start_hub(extra_config, env=...)``."""
    hubs: list[HubProcess] = []

    def start(extra_config: str, env: dict[str, str] | None = None, wait: bool = True) -> HubProcess:
        workdir = tmp_path / f"hub{len(hubs)}"
        workdir.mkdir()
        hub = HubProcess(workdir, extra_config, env)
        hubs.append(hub)
        return hub.start(wait=wait)

    yield start
    for hub in hubs:
        hub.stop()
