"""Attacks on the network boundary: from inside a session, nothing of this host or its networks answers.

Every address tried is on this machine: the host's loopback, its own interfaces, and test hosts
this module creates in network namespaces of its own (on a private, a link-local/metadata and a
public-looking documentation address), so no traffic leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest

from bia_binder.sessions import network

from .conftest import needs_root, small_profile

pytestmark = [needs_root, pytest.mark.skipif(network.unavailable_reason() is not None, reason="no network namespaces")]

#: connects to each (address, port), reports "ok" or the errno's name; bounded by a short timeout
CONNECT = r"""
import errno, json, socket, sys
results = {}
for address, port in TARGETS:
    try:
        with socket.create_connection((address, port), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            results[f"{address}:{port}"] = "ok" if s.recv(64) else "empty"
    except socket.timeout:
        results[f"{address}:{port}"] = "timeout"
    except OSError as e:
        results[f"{address}:{port}"] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(results))
"""


def connect_from(sandboxes, session, targets) -> dict[str, str]:
    return json.loads(sandboxes.run(session, f"TARGETS = {list(targets)!r}\n" + CONNECT, timeout=120))


@contextmanager
def http_server(address: str = "0.0.0.0"):
    """A one-line HTTP answerer on the host (or in whatever namespace this process is)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost service\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_host_services_are_unreachable_whatever_address_the_session_tries(sandboxes):
    with http_server() as port:
        session = sandboxes.session("prober", small_profile())
        addresses = ["127.0.0.1", network.GATEWAY_ADDRESS, "10.0.2.3", *network.host_addresses()]
        results = connect_from(sandboxes, session, [(a, port) for a in addresses if ":" not in a])
        assert results and all(outcome != "ok" for outcome in results.values()), results
        # the same server answers the host itself: the refusal above is the namespace's doing
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"x")
            assert s.recv(64).startswith(b"HTTP/1.0 200")


def test_another_sessions_server_is_unreachable_but_the_proxy_reaches_it(sandboxes):
    server_session = sandboxes.session("serving", small_profile())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_session.forward(port)
    server = sandboxes.start(
        server_session,
        f"import http.server as h; h.HTTPServer(({server_session.listen_address!r}, {port}), h.SimpleHTTPRequestHandler).serve_forever()",
    )
    # the host (where the proxy runs) reaches it through the forwarded port
    assert _wait_for_http("127.0.0.1", port, server)
    attacker = sandboxes.session("attacker", small_profile())
    results = connect_from(sandboxes, attacker, [("127.0.0.1", port), (network.GATEWAY_ADDRESS, port), (network.GUEST_ADDRESS, port)])
    assert all(outcome != "ok" for outcome in results.values()), results


def test_a_logged_in_session_reaches_exactly_its_host_ports(sandboxes, layout):
    with http_server("127.0.0.1") as allowed, http_server("127.0.0.1") as other:
        session = sandboxes.sandbox().prepare(
            "member", layout.home("member"), small_profile(), readonly=[layout.env_root], host_ports=[allowed]
        )
        sandboxes.sessions.append(session)
        results = connect_from(
            sandboxes, session, [(network.GATEWAY_ADDRESS, allowed), (network.GATEWAY_ADDRESS, other), ("127.0.0.1", allowed)]
        )
        assert results == {
            f"{network.GATEWAY_ADDRESS}:{allowed}": "ok",
            f"{network.GATEWAY_ADDRESS}:{other}": results[f"{network.GATEWAY_ADDRESS}:{other}"],
            f"127.0.0.1:{allowed}": results[f"127.0.0.1:{allowed}"],
        }
        assert results[f"{network.GATEWAY_ADDRESS}:{other}"] != "ok" and results[f"127.0.0.1:{allowed}"] != "ok"


TEST_HOSTS = {
    # address inside the test host's namespace → the host side of its link
    "private": ("192.168.77.1", "192.168.77.2"),
    "metadata": ("169.254.169.254", "169.254.169.253"),
    "public": ("198.51.100.7", "198.51.100.6"),  # TEST-NET-2: stands in for an internet host
}


@pytest.fixture
def test_hosts():
    """A namespace of our own holding three HTTP servers, one per kind of address, linked to this host by veth."""
    name = f"bbt-hosts-{threading.get_ident() % 100000}"
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True, text=True)  # noqa: E731
    run("ip", "netns", "add", name)
    servers = []
    try:
        run("ip", "link", "add", "bbt-h0", "type", "veth", "peer", "name", "bbt-h1")
        run("ip", "link", "set", "bbt-h1", "netns", name)
        for inside, outside in TEST_HOSTS.values():
            run("ip", "addr", "add", outside, "peer", f"{inside}/32", "dev", "bbt-h0")
            run("ip", "-n", name, "addr", "add", inside, "peer", f"{outside}/32", "dev", "bbt-h1")
        run("ip", "link", "set", "bbt-h0", "up")
        run("ip", "-n", name, "link", "set", "bbt-h1", "up")
        run("ip", "-n", name, "link", "set", "lo", "up")
        for inside, _ in TEST_HOSTS.values():
            servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", name, "python3", "-m", "http.server", "80", "--bind", inside],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for inside, _ in TEST_HOSTS.values():
            assert _wait_for_http(inside, 80), f"test host {inside} did not come up"
        yield {kind: inside for kind, (inside, _) in TEST_HOSTS.items()}
    finally:
        for server in servers:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "delete", "bbt-h0"], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_private_and_metadata_addresses_are_blocked_while_the_internet_is_reachable(sandboxes, test_hosts):
    session = sandboxes.session("outbound", small_profile())
    results = connect_from(sandboxes, session, [(address, 80) for address in test_hosts.values()])
    assert results[f"{test_hosts['public']}:80"] == "ok", results  # outbound works through slirp4netns
    assert results[f"{test_hosts['private']}:80"] != "ok", results
    assert results[f"{test_hosts['metadata']}:80"] != "ok", results


def test_the_installed_rules_block_every_private_and_link_local_range(sandboxes):
    session = sandboxes.session("rules", small_profile())
    listed = subprocess.run(
        session.network.enter_argv(["nft", "list", "ruleset"]), capture_output=True, text=True, check=True
    ).stdout
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"):
        assert cidr in listed, f"{cidr} is not blocked:\n{listed}"
    for cidr in ("fc00::/7", "fe80::/10"):
        assert cidr in listed
    for address in network.host_addresses():  # the host's own addresses too (nft merges those inside a range)
        covered = any(ipaddress.ip_address(address) in ipaddress.ip_network(r) for r in network.BLOCKED_V6 + network.BLOCKED_V4
                      if ipaddress.ip_network(r).version == ipaddress.ip_address(address).version)
        assert address in listed or covered, address


def test_the_namespace_goes_with_the_session(sandboxes):
    session = sandboxes.session("ephemeral-net", small_profile())
    path, socket_path = session.network.path, session.network.api_socket
    assert path.exists()
    session.cleanup()
    assert not path.exists() and not socket_path.exists()
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(socket_path) not in processes  # its slirp4netns is gone too


def _wait_for_http(address: str, port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((address, port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_a_data_dir_below_a_long_path_still_gets_a_network(sandboxes, layout):
    # Unix socket paths end at 108 bytes: slirp4netns' API socket must not live below the data dir
    deep = layout.root / ("a-rather-long-directory-name-" * 5) / "state"
    sandbox = sandboxes.sandbox(state_dir=str(deep))
    session = sandboxes.session("long-path", small_profile(), sandbox=sandbox)
    assert session.network is not None, sandbox.capabilities.network
    namespace = session.network
    assert len(str(deep)) > 108 and namespace.path.exists()
    assert len(str(namespace.api_socket)) < 108
    assert sandboxes.run(session, "print('up')").strip() == "up"
    session.cleanup()
    assert not namespace.path.exists() and not namespace.api_socket.exists()
