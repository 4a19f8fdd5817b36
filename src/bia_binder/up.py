"""``bia-binder up`` (the whole service in the foreground) and ``bia-binder launch`` (a CLI client)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .settings import UpSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG = Path(__file__).parent / "hub" / "jupyterhub_config.py"


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="start JupyterHub, the proxy and the binder service (foreground)")
    up.add_argument("--ip", default="127.0.0.1", help="public address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    up.add_argument("--data-dir", default="data", help="database, secrets, environments, sessions (default ./data)")
    up.add_argument("--config", default="", help="a Python config file for the hub and the binder service")
    up.add_argument("--allow-local-repos", action="store_true", help="allow repositories on loopback/private addresses (development)")
    up.add_argument("--unsafe-no-sandbox", action="store_true", help="allow anonymous launches where the sandbox is unavailable")
    up.add_argument("--auth", choices=["none", "oidc", "native", "dev"], default="none", help="how users log in at /hub/")
    up.add_argument(
        "--keep-sessions",
        action="store_true",
        help="leave running sessions running when stopped (JupyterHub's cleanup_servers=False); the next `up` adopts them",
    )
    up.set_defaults(func=run_up)

    launch = subparsers.add_parser("launch", help="launch <provider>/<spec> on a running service and print the URL")
    launch.add_argument("spec", help="e.g. gh/org/repo/main or git/<url-escaped url>/HEAD")
    launch.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    launch.add_argument("--json", action="store_true", help="print every event as a JSON line")
    launch.set_defaults(func=run_launch)


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def find_proxy() -> str:
    """configurable-http-proxy: from PATH, else the project's node_modules (make install puts it there)."""
    candidates = [shutil.which("configurable-http-proxy"), PROJECT_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("error: configurable-http-proxy not found; run `make install` (it installs it into ./node_modules)")


def settings_from_args(args: argparse.Namespace) -> UpSettings:
    data_dir = Path(args.data_dir).resolve()
    config_file = str(Path(args.config).resolve()) if args.config else ""
    if config_file and not Path(config_file).is_file():
        raise SystemExit(f"error: config file {args.config} does not exist")
    return UpSettings(
        data_dir=str(data_dir),
        ip=args.ip,
        port=args.port,
        hub_port=free_port(),
        proxy_api_port=free_port(),
        service_port=free_port(),
        proxy_command=find_proxy(),
        config_file=config_file,
        allow_local_repos=args.allow_local_repos,
        unsafe_no_sandbox=args.unsafe_no_sandbox,
        auth=args.auth,
        keep_sessions=args.keep_sessions,
    )


def prepare_data_dir(data_dir: Path) -> None:
    for sub in ("envs", "sessions", "homes", "scratch", "secrets"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    # Session uids must traverse (not list) the data dir to reach their home and environment;
    # the hub's cookie secret stays private to us.
    for path in (data_dir, data_dir / "envs", data_dir / "sessions", data_dir / "homes"):
        os.chmod(path, 0o711)
    os.chmod(data_dir / "secrets", 0o700)
    # the hub's database holds every user's server state and token hashes: ours alone (sqlite keeps
    # the mode of an existing file, and gives its journal the same)
    database = data_dir / "jupyterhub.sqlite"
    database.touch(mode=0o600, exist_ok=True)
    os.chmod(database, 0o600)


def load_operator_config(path: str) -> Config:
    """The operator's --config file as loaded on its own (the hub merges it with ours later)."""
    if not path:
        return Config()
    file = Path(path).resolve()
    if not file.is_file():
        raise SystemExit(f"error: config file {path} does not exist")
    return PyFileConfigLoader(file.name, str(file.parent)).load_config()


def sandbox_probe_config(settings: UpSettings, operator_config: Config) -> Config:
    """The operator's config with this data dir's sandbox state: what probing the host's sandbox needs."""
    config = copy.deepcopy(operator_config)
    config.Sandbox.state_dir = str(Path(settings.data_dir) / "sandbox")
    return config


def print_guarantees(settings: UpSettings, operator_config: Config) -> None:
    """Which isolation guarantees hold on this host (the same report as `bia-binder doctor`)."""
    from .sessions.doctor import guarantee_report

    config = sandbox_probe_config(settings, operator_config)
    report = guarantee_report(config, unsafe=settings.unsafe_no_sandbox)
    print(report.text(), flush=True)


def print_dask_gateway_status(settings: UpSettings, operator_config: Config) -> None:
    """Whether logged-in users get dask-gateway; the hub configures it on the same condition."""
    if settings.auth == "none":
        return
    from .portal.dask import DaskGatewayService

    reason = DaskGatewayService(config=operator_config).unavailable_reason()
    if reason is None:
        status = "on for logged-in users (clusters run in the default environment, built when the service starts)"
    else:
        status = f"off: {reason}; notebooks can still start a LocalCluster"
    print(f"dask-gateway: {status}", flush=True)


def refuse_unreachable_paths(settings: UpSettings, operator_config: Config) -> None:
    """Stop `up` in one line when sessions would run under their own uid but without bubblewrap (which, as
    root, shows any path), and a directory they must reach lies below one others cannot search (a checkout
    under /root): every launch would fail otherwise."""
    if settings.auth == "none" and not settings.unsafe_no_sandbox:
        return  # anonymous launches are refused on such a host anyway: nothing would start a session
    from .builder.builder import EnvBuilder
    from .sessions.sandbox import LaunchError, Sandbox, check_reachable_by_others
    from .sessions.spawner import DATA_LIBRARY_PATH

    config = sandbox_probe_config(settings, operator_config)
    sandbox = Sandbox(config=config)
    if sandbox.privileged or not sandbox.capabilities.uid_separation.ok:
        return  # bubblewrap shows every path; or sessions run as our own uid
    # on the service's own cache (made by prepare_data_dir): a builder on the default would make data/envs in the cwd
    builder = EnvBuilder(config=operator_config, cache_dir=str(Path(settings.data_dir) / "envs"))
    # the interpreter environments link to (builder.python), not ours: a pyenv under /root serves the
    # service well, and sessions never run it
    needed = [Path(settings.data_dir), DATA_LIBRARY_PATH, Path(builder.python)]
    if uv_cache := os.environ.get("UV_CACHE_DIR") or builder.uv_cache_dir:
        needed.append(Path(uv_cache))  # builds run as their own uid too
    try:
        check_reachable_by_others(*needed)
    except LaunchError as e:
        print(f"error: without bubblewrap ({sandbox.capabilities.sandbox.detail}), sessions run as their own uid and cannot reach what they need: {e} Or install bubblewrap.", file=sys.stderr)
        raise SystemExit(2) from None


def free_leftovers(settings: UpSettings, operator_config: Config) -> None:
    """Before the hub starts: free what sessions that died while nothing watched them left (a crash, a
    reboot). Sessions still running are kept: the hub adopts them."""
    from .sessions.reconcile import Reconciler
    from .sessions.sandbox import Sandbox, configure_sandbox

    config = copy.deepcopy(operator_config)
    data_dir = Path(settings.data_dir)
    configure_sandbox(config, data_dir, allow_unsafe=settings.unsafe_no_sandbox)
    config.merge(operator_config)  # the operator's Sandbox settings win, as in the hub
    reconciler = Reconciler(Sandbox(config=config), data_dir / "sessions", data_dir / "envs", config=config)
    reconciler.grace = 0  # nothing is being started now
    freed = reconciler.run()
    if freed:
        print(f"bia-binder: freed what dead sessions left: {freed.summary()}", flush=True)


def check_home_encryption(settings: UpSettings, operator_config: Config) -> None:
    """With a login: whether homes are encrypted here; 'yes' without host support stops `up` in one line."""
    if settings.auth == "none":
        return
    from .portal.encryption import EncryptionError, HomeEncryption

    encryption = HomeEncryption(config=operator_config)
    try:
        encryption.active()
    except EncryptionError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"home encryption: {encryption.status_line()}", flush=True)


def check_auth(mode: str, operator_config: Config) -> None:
    """A mode lacking its secret or client stops here with one line, before anything starts."""
    if mode == "none":
        return
    from .portal.auth import AuthConfigError, check_auth_config

    try:
        check_auth_config(mode, operator_config)
    except AuthConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run_up(args: argparse.Namespace) -> int:
    operator_config = load_operator_config(args.config)
    check_auth(args.auth, operator_config)
    settings = settings_from_args(args)
    prepare_data_dir(Path(settings.data_dir))
    print_guarantees(settings, operator_config)
    refuse_unreachable_paths(settings, operator_config)
    free_leftovers(settings, operator_config)
    print_dask_gateway_status(settings, operator_config)
    check_home_encryption(settings, operator_config)
    env = {**os.environ, **settings.to_environ()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)]
    print(f"bia-binder: starting on {settings.public_url} (data in {settings.data_dir})", flush=True)
    # the hub in a session of its own: a Ctrl-C reaches only us, and we stop the hub once, in order
    return supervise(
        lambda: subprocess.Popen(command, env=env, cwd=settings.data_dir, start_new_session=True),
        on_hub_death=lambda: end_orphaned_services(f"http://127.0.0.1:{settings.hub_port}/"),  # hub_bind_url
    )


#: a hub that crashes more often than this within RESTART_WINDOW seconds is not restarted again
MAX_RESTARTS, RESTART_WINDOW = 5, 600.0
#: seconds the hub gets to stop its services, sessions and proxy after SIGINT/SIGTERM before we end them
STOP_TIMEOUT = 7.0


def supervise(
    start: Callable[[], subprocess.Popen],
    stop_timeout: float = STOP_TIMEOUT,
    on_hub_death: Callable[[], None] = lambda: None,
) -> int:
    """Run the hub; on SIGINT/SIGTERM stop it (SIGTERM once; what is left after ``stop_timeout`` seconds, or at
    a second signal, is killed, sessions excepted); start it again when a signal kills it without our asking
    (``kill -9``, the OOM killer): sessions keep running, and the new hub adopts them. ``on_hub_death`` runs
    whenever the hub has exited, before a restart or our return (to end what it left)."""
    hub = start()
    stop_requested: list[float] = []
    restarts: list[float] = []

    def stop(signum, _frame):
        if stop_requested:  # a second Ctrl-C: the user will not wait
            force_stop(hub)
            return
        stop_requested.append(time.monotonic())
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            # short waits: a signal handler runs between them (a wait already under way would not see it)
            status = hub.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            if not stop_requested or time.monotonic() - stop_requested[0] < stop_timeout:
                continue
            print(f"bia-binder: the hub did not stop within {stop_timeout:g} s; ending it", flush=True)
            force_stop(hub)
            status = hub.wait()
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW]
        on_hub_death()
        # a signal killed it (kill -9, the OOM killer, a segfault); an error exit (bad config) is not retried
        if stop_requested or status >= 0 or len(restarts) >= MAX_RESTARTS:
            end_what_the_hub_left(hub.pid)
            return status
        restarts.append(now)
        print(f"bia-binder: the hub exited with status {status}; starting it again (sessions keep running)", flush=True)
        hub = start()


def is_session(process) -> bool:
    """A session's (or build's) process: in one of the sandbox's cgroups, or a server under /user/."""
    try:
        with open(f"/proc/{process.pid}/cgroup") as cgroups:
            if "/bia-binder/" in cgroups.read():
                return True
        return any(arg.startswith("--ServerApp.base_url=/user/") for arg in process.cmdline())
    except Exception:  # noqa: BLE001 - gone, or not ours to read (psutil, OSError): not a session we know
        return False


def end_orphaned_services(hub_url: str, grace: float = 2.0) -> None:
    """End the managed services (idle culler, binder service, dask-gateway) a dead hub left behind.

    JupyterHub starts each service in a session of its own, so neither the hub's process group nor its
    (now gone) process tree reaches them once it is killed: they would run on, orphaned, beside the new
    hub's. They are found by what JupyterHub gives every service in its environment: its name, and this
    hub's API URL (the hub's port stays the same across restarts of one `up`). Sessions carry no service
    name and are spared."""
    import psutil

    orphans = []
    for process in psutil.process_iter(["environ"]):
        environ = process.info["environ"] or {}
        if environ.get("JUPYTERHUB_SERVICE_NAME") and environ.get("JUPYTERHUB_API_URL", "").startswith(hub_url):
            orphans.append(process)
    for process in orphans:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(orphans, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def end_what_the_hub_left(pgid: int, grace: float = 2.0) -> None:
    """A hub that exited by itself (a service that never answered, a bad config) may leave its proxy and
    services running: they share its process group (the hub runs in a session of its own, and sessions each
    in theirs), so ending the group ends them and spares sessions."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


def force_stop(hub: subprocess.Popen) -> None:
    """SIGKILL the hub and what it started (proxy, services), but not sessions: those are adopted by the
    next `up`, or freed by its reconciler."""
    import psutil

    try:
        root = psutil.Process(hub.pid)
        sessions = {p.pid for p in root.children(recursive=True) if is_session(p)}
        doomed = [
            p for p in root.children(recursive=True)
            if p.pid not in sessions and not any(a.pid in sessions for a in p.parents())
        ]  # fmt: skip
    except psutil.NoSuchProcess:
        return
    for process in [root, *doomed]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def run_launch(args: argparse.Namespace) -> int:
    import httpx

    url = f"{args.url.rstrip('/')}/build/{args.spec.strip('/')}"
    try:
        # the service sends a keepalive every 20 s: a minute of silence is a service (or proxy) that died
        timeout = httpx.Timeout(30, read=60)
        with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                item = json.loads(line[5:])
                if args.json:
                    print(json.dumps(item), flush=True)
                else:
                    print(item.get("message", ""), end="" if item.get("message", "").endswith("\n") else "\n", flush=True)
                if item.get("phase") == "ready":
                    if not args.json:
                        print(f"\nOpen: {item['url']}?token={item['token']}")
                    return 0
                if item.get("phase") == "failed":
                    print(f"error: {item.get('message', 'launch failed').strip()}", file=sys.stderr)
                    return 1
    except httpx.ReadTimeout:
        print(f"error: {args.url} stopped answering during the launch (no keepalive for 60 s); launch again", file=sys.stderr)
        return 1
    except httpx.HTTPError as e:
        print(f"error: could not reach {args.url} ({type(e).__name__}); is `bia-binder up` running?", file=sys.stderr)
        return 1
    print("error: the event stream ended before the launch was ready", file=sys.stderr)
    return 1
