"""From a session's kernel, nothing of this host answers: not the hub's API, not the proxy's API, not another
session's server, not the binder service, whatever address it tries; the session still serves through the proxy."""

from __future__ import annotations

import asyncio
import json

import psutil
import pytest

from bia_binder.sessions import network
from tests.kernel import run_cell

pytestmark = [pytest.mark.slow, pytest.mark.skipif(network.unavailable_reason() is not None, reason="no network namespaces")]

PROBE = r"""
import json, socket
results = {}
for address in ADDRESSES:
    for port in PORTS:
        try:
            socket.create_connection((address, port), timeout=2).close()
            results[f"{address}:{port}"] = "connected"
        except OSError as e:
            results[f"{address}:{port}"] = type(e).__name__
print(json.dumps(results))
"""


def host_listening_ports() -> set[int]:
    """Every TCP port something listens on on this host: the hub, the proxy and its API, the binder
    service, sessions' forwarded ports (and whatever else runs here)."""
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_a_session_reaches_no_service_of_this_host(stack):
    other = stack.launch(stack.git_spec("lab/neighbour", {"requirements.txt": "six\n"}))
    assert other[-1]["phase"] == "ready"
    events = stack.launch(stack.git_spec("lab/prober", {"requirements.txt": "six\n"}))
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    ports = sorted(host_listening_ports())
    assert stack.port in ports and len(ports) >= 5  # the public proxy, its API, the hub, the service, sessions
    addresses = ["127.0.0.1", "localhost", network.GATEWAY_ADDRESS, *(a for a in network.host_addresses() if ":" not in a)]
    code = f"ADDRESSES = {addresses!r}\nPORTS = {ports!r}\n" + PROBE
    # the session answers through the proxy (this cell runs in it) ...
    results = json.loads(asyncio.run(run_cell(ready["url"], ready["token"], code, timeout=600)))
    # ... and connects to nothing of the host: its own loopback has nothing on those ports but its own server
    reached = {target for target, outcome in results.items() if outcome == "connected"}
    own_server = {f"{a}:{p}" for a in ("127.0.0.1", "localhost") for p in ports if f"{a}:{p}" in reached}
    assert reached <= own_server and len(own_server) <= 2, sorted(reached)
