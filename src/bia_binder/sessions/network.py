"""Each session (and build) in a network namespace of its own.

A session reaches the internet, and nothing of this host or its network::

    namespace (created by `ip netns add`)           host
    ┌────────────────────────────────────┐
    │ lo 127.0.0.1 (the session's own)   │
    │ tap0 10.0.2.100 ── slirp4netns ────┼──► outbound TCP/UDP as the host would make it
    │   nftables: no 10/8, 172.16/12,    │    (user-mode networking: no route, no NAT, no bridge)
    │   192.168/16, 169.254/16, 127/8,   │
    │   100.64/10, multicast, the host's │◄── 127.0.0.1:<port>  (the proxy reaches the
    │   own addresses ...                │     session's server: slirp4netns forwards it)
    └────────────────────────────────────┘

slirp4netns is Debian's user-mode network stack for namespaces (what rootless podman uses): the
session's packets become ordinary sockets of the slirp4netns process on the host, so the host
needs no forwarding, NAT or bridge, and ``--disable-host-loopback`` keeps the session from
reaching the host's loopback services through the gateway address 10.0.2.2. The nftables rules
are installed inside the namespace, before the session starts, and the session (no capabilities)
cannot change them. Logged-in sessions get ``host_ports``: exactly those loopback ports of the
host (the hub's API, dask-gateway) are reachable as ``10.0.2.2:<port>``, nothing else there.

Hand-written because no library of our ecosystem wires slirp4netns, nftables and netns together
(rootless podman does it in Go, inside its own runtime).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

#: slirp4netns' fixed addresses (its defaults): the session, the gateway (host), the DNS forwarder
GUEST_ADDRESS = "10.0.2.100"
GATEWAY_ADDRESS = "10.0.2.2"
DNS_ADDRESS = "10.0.2.3"

#: where sessions may not connect: this host and every network that is not the internet
BLOCKED_V4 = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private (also slirp4netns' own 10.0.2.0/24: the gateway is the host)
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",  # loopback, when routed anywhere but the session's own lo
    "169.254.0.0/16",  # link-local: cloud metadata servers (169.254.169.254)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/3",  # multicast and reserved, broadcast
)
BLOCKED_V6 = (
    "::/127",  # unspecified, loopback
    "::ffff:0:0/96",  # IPv4-mapped (would bypass the IPv4 rules)
    "64:ff9b::/96",  # NAT64
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)

TOOLS = ("ip", "nft", "slirp4netns", "nsenter")


class NetworkError(RuntimeError):
    """A namespace could not be made or configured; the message says which step and why."""


@dataclass(frozen=True)
class NetworkPolicy:
    """What a namespace may reach besides the internet."""

    #: loopback ports of the host reachable as GATEWAY_ADDRESS:<port> (empty: the host is unreachable)
    host_ports: tuple[int, ...] = ()
    #: extra destinations allowed before the blocks, as "CIDR" or "CIDR:port" (an operator's data endpoint)
    allowed: tuple[str, ...] = ()
    #: the host's own addresses (blocked too: a service bound to 0.0.0.0 must not be reachable)
    host_addresses: tuple[str, ...] = ()
    #: the host's resolvers (port 53 only): /etc/resolv.conf stays valid inside, wherever it points
    nameservers: tuple[str, ...] = ()


def host_addresses() -> tuple[str, ...]:
    """Every address of this host's interfaces except loopback (those are blocked by range)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(address.address.split("%")[0])
            if not ip.is_loopback:
                found.append(str(ip))
    return tuple(sorted(set(found)))


def host_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The resolvers of /etc/resolv.conf that a namespace can reach through slirp4netns (not loopback ones)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ip = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not ip.is_loopback:
                found.append(str(ip))
    return tuple(found)


def ruleset(policy: NetworkPolicy) -> str:
    """The nftables rules of a session's namespace (``nft -f`` input)."""
    v4 = [*BLOCKED_V4, *(a for a in policy.host_addresses if ipaddress.ip_address(a).version == 4)]
    v6 = [*BLOCKED_V6, *(a for a in policy.host_addresses if ipaddress.ip_address(a).version == 6)]
    allow = [
        f"        {'ip' if ipaddress.ip_address(server).version == 4 else 'ip6'} daddr {server} "
        "meta l4proto { tcp, udp } th dport 53 accept"
        for server in (DNS_ADDRESS, *policy.nameservers)
    ]
    if policy.host_ports:
        ports = ", ".join(str(p) for p in sorted(set(policy.host_ports)))
        allow.append(f"        ip daddr {GATEWAY_ADDRESS} tcp dport {{ {ports} }} accept")
    for destination in policy.allowed:
        allow.append(_allow_rule(destination))
    return "\n".join(
        [
            "table inet bia_binder {",
            "    chain output {",
            "        type filter hook output priority 0; policy accept;",
            '        oifname "lo" accept',
            "        ct state established,related accept",
            *allow,
            f"        ip daddr {{ {', '.join(v4)} }} reject with icmpx type admin-prohibited",
            f"        ip6 daddr {{ {', '.join(v6)} }} reject with icmpx type admin-prohibited",
            "    }",
            "}",
            "",
        ]
    )


def _allow_rule(destination: str) -> str:
    """``CIDR`` or ``CIDR:port`` (IPv6 as ``[CIDR]:port``) → an accept rule; ValueError when malformed."""
    port = None
    if destination.startswith("["):
        cidr, _, rest = destination[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif destination.count(":") == 1:
        cidr, port = destination.split(":")
    else:
        cidr = destination
    network = ipaddress.ip_network(cidr, strict=False)
    family = "ip" if network.version == 4 else "ip6"
    rule = f"        {family} daddr {network}"
    if port:
        rule += f" meta l4proto {{ tcp, udp }} th dport {int(port)}"
    return rule + " accept"


def loopback_port(value: str) -> int | None:
    """The port of a URL on this host's loopback (``http://127.0.0.1:8081/hub/api``, ``gateway://localhost:8786``)."""
    try:
        parsed = urlsplit(value)
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    return port if host in ("127.0.0.1", "localhost", "::1") and port else None


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool)]


def unavailable_reason() -> str | None:
    """Why this host cannot give sessions their own network, or None when it can."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root"
    if missing := missing_tools():
        packages = {"ip": "iproute2", "nft": "nftables", "slirp4netns": "slirp4netns", "nsenter": "util-linux"}
        return f"{', '.join(missing)} not found: install {' '.join(sorted({packages[t] for t in missing}))}"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun: slirp4netns needs the tun device"
    return None


def namespace_name(prefix: str, owner: str) -> str:
    """A short, unique name for ``owner``'s namespace (``ip netns`` names are file names)."""
    return f"{prefix}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}"


def _run(argv: Sequence[str], what: str, stdin: str | None = None) -> None:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetworkError(f"{what}: {e}") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise NetworkError(f"{what}: {detail[-1] if detail else 'exit status ' + str(done.returncode)}")


#: slirp4netns' API sockets (root's alone)
SOCKET_DIR = Path("/run/bia-binder/slirp")


@dataclass
class Namespace:
    """One session's network namespace and its slirp4netns; ``destroy()`` leaves nothing behind."""

    name: str
    state_dir: Path
    slirp: subprocess.Popen | None = None
    forwarded: dict[int, int] = field(default_factory=dict)

    @classmethod
    def existing(cls, name: str, state_dir: Path) -> Namespace | None:
        """A handle on the namespace ``name`` if it exists (for cleaning up after a crash)."""
        namespace = cls(name=name, state_dir=state_dir)
        return namespace if namespace.path.exists() or namespace.api_socket.exists() else None

    def pids_inside(self) -> list[int]:
        """Processes in this namespace (a session's): none means nobody uses it any more."""
        try:
            done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def age(self) -> float:
        """Seconds since the namespace was made."""
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return float("inf")

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    @property
    def api_socket(self) -> Path:
        # beside /run/netns, not in the data dir: a Unix socket's path ends at 108 bytes, and a data dir
        # below a long path would fail every launch (the name is unique per data dir and session)
        return SOCKET_DIR / f"{self.name}.sock"

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace (nsenter execs it: no extra process stays)."""
        return [shutil.which("nsenter") or "nsenter", f"--net={self.path}", "--", *argv]

    @classmethod
    def open(cls, name: str, state_dir: Path, policy: NetworkPolicy) -> Namespace:
        """The namespace ``name``: the running one (a session prepared again after a hub restart keeps its
        network), or a new one with its rules and uplink; on any failure nothing is left."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        SOCKET_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        namespace = cls(name=name, state_dir=state_dir)
        if namespace.path.exists() and namespace._leftover_slirp():
            return namespace
        namespace.destroy()  # a half-made leftover of a crashed run under the same name
        try:
            _run(["ip", "netns", "add", name], f"creating network namespace {name}")
            _run(["ip", "-n", name, "link", "set", "lo", "up"], "bringing up the namespace's loopback")
            _run(namespace.enter_argv(["nft", "-f", "-"]), "installing the namespace's firewall rules", ruleset(policy))
            namespace._start_slirp(policy)
        except BaseException:
            namespace.destroy()
            raise
        return namespace

    def _start_slirp(self, policy: NetworkPolicy) -> None:
        self.api_socket.unlink(missing_ok=True)
        ready_read, ready_write = os.pipe()
        argv = [
            shutil.which("slirp4netns") or "slirp4netns",
            "--configure",
            "--mtu=65520",
            "--enable-seccomp",
            f"--api-socket={self.api_socket}",
            f"--ready-fd={ready_write}",
            "--netns-type=path",
        ]
        if not policy.host_ports:
            argv.append("--disable-host-loopback")
        argv += [str(self.path), "tap0"]
        try:
            process = subprocess.Popen(
                argv,
                pass_fds=(ready_write,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # not in the hub's process group: a Ctrl-C there is not its stop
            )
        finally:
            os.close(ready_write)
        self.slirp = process
        try:
            with os.fdopen(ready_read, "rb") as ready:
                # slirp4netns writes "1" once tap0 is configured, or closes the pipe when it fails
                if ready.read(1) != b"1":
                    detail = process.stderr.read().decode(errors="replace").strip().splitlines() if process.stderr else []
                    raise NetworkError(f"slirp4netns failed: {detail[-1] if detail else 'no message'}")
        finally:
            if process.stderr:
                process.stderr.close()

    def forward(self, host_port: int, guest_port: int | None = None) -> None:
        """``127.0.0.1:host_port`` on the host reaches ``guest_port`` inside (the proxy's way in)."""
        guest_port = guest_port or host_port
        reply = self._api(
            {
                "execute": "add_hostfwd",
                "arguments": {
                    "proto": "tcp",
                    "host_addr": "127.0.0.1",
                    "host_port": host_port,
                    "guest_addr": GUEST_ADDRESS,
                    "guest_port": guest_port,
                },
            }
        )
        if "error" in reply:
            raise NetworkError(f"forwarding port {host_port} into {self.name}: {reply['error'].get('desc', reply)}")
        self.forwarded[host_port] = guest_port

    def _api(self, request: dict) -> dict:
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(str(self.api_socket))
                    s.sendall(json.dumps(request).encode())
                    s.shutdown(socket.SHUT_WR)
                    return json.loads(s.recv(65536) or b"{}")
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise NetworkError(f"slirp4netns of {self.name} does not answer on {self.api_socket}") from None
                time.sleep(0.01)

    def destroy(self) -> None:
        """Stop slirp4netns and delete the namespace (idempotent; also for leftovers of a crash)."""
        if self.slirp is not None:
            self.slirp.kill()
            self.slirp.wait()  # ours: reap it
            self.slirp = None
        elif self.path.exists() or self.api_socket.exists():
            for process in self._leftover_slirp():
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
        if self.path.exists():
            _run(["ip", "netns", "delete", self.name], f"deleting network namespace {self.name}")
        self.api_socket.unlink(missing_ok=True)

    def _leftover_slirp(self) -> list[psutil.Process]:
        """The slirp4netns serving this namespace that another process started (found by its API socket)."""
        marker = f"--api-socket={self.api_socket}"
        return [
            process
            for process in psutil.process_iter(["name", "cmdline", "status"])
            if process.info["name"] == "slirp4netns"
            and marker in (process.info["cmdline"] or [])
            and process.info["status"] != psutil.STATUS_ZOMBIE
        ]


def leftover_namespaces(prefix: str, keep: Iterable[str]) -> list[str]:
    """Namespaces named ``<prefix>-...`` that no running session holds (a crash left them)."""
    netns = Path("/run/netns")
    if not netns.is_dir():
        return []
    kept = set(keep)
    return sorted(p.name for p in netns.iterdir() if p.name.startswith(f"{prefix}-") and p.name not in kept)
