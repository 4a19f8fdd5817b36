"""``bia-binder build``, ``bia-binder run`` and ``bia-binder cache``: the builder from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Callable

from traitlets.config import Config, PyFileConfigLoader

from ..events import BUILDING, BUILT, FETCHING, LaunchError, event
from .base import Environment
from .builder import EnvBuilder
from .environ import build_environ

Emit = Callable[[dict[str, Any]], None]
_GIT_URL = re.compile(r"^(https?|git|ssh|file)://|^[\w.-]+@[\w.-]+:")


def register(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser("build", help="build (or find in the cache) the environment of a repository")
    _add_source_arguments(build)
    build.add_argument("--json", action="store_true", help="print one JSON event per line (BinderHub's phases)")
    build.set_defaults(func=build_command)

    run = subparsers.add_parser(
        "run",
        usage="bia-binder run SOURCE [--ref REF] [--data-dir DIR] [--config FILE] -- CMD [ARGS...]",
        help="run a command in a repository's environment as a session sees it",
        description="Runs CMD with the environment's bin/ first on PATH, through the repository's `start` script, "
        "from a temporary copy of the built repository (what postBuild left included), removed afterwards.",
    )
    _add_source_arguments(run)
    # everything after SOURCE is split at `--` by run_command: argparse cannot mix options and a free command
    run.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(func=run_command)

    cache = subparsers.add_parser("cache", help="list or prune the environment cache")
    actions = cache.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show every environment: key, buildpack, last use, own disk use, pins")
    _add_data_dir(listing)
    prune = actions.add_parser("prune", help="remove leftovers of interrupted builds and evict down to a budget")
    _add_data_dir(prune)
    prune.add_argument(
        "--budget", type=_size, default=None, help="bytes to keep (e.g. 20G; default: c.EnvBuilder.cache_budget_bytes)"
    )
    cache.set_defaults(func=cache_command)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="SOURCE", help="a local directory, a git URL, or a provider spec such as gh/org/repo/main"
    )
    _add_ref_and_data_dir(parser)


def _add_ref_and_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", default=None, help="branch, tag or commit of a git URL (default: its HEAD)")
    _add_data_dir(parser)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default="data", help="data directory; the cache is <data-dir>/envs (default ./data)"
    )
    parser.add_argument(
        "--config", default="", help="the Python config file `bia-binder up` uses (for c.EnvBuilder.* settings)"
    )


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write bytes or e.g. 500M, 20G")
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))


def make_builder(args: argparse.Namespace) -> EnvBuilder:
    """The builder the service would use: same config file, same cache, hence the same cache keys."""
    config = Config()
    if args.config:
        path = Path(args.config).resolve()
        if not path.is_file():
            raise LaunchError(
                f"config file {args.config} does not exist: give the file `bia-binder up --config` uses", 400
            )
        try:
            config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
        except Exception as e:  # the file is Python: any error it raises is the user's to fix
            raise LaunchError(f"config file {args.config} could not be loaded: {e}", 400) from None
    data_dir = Path(args.data_dir).resolve()
    if os.geteuid() == 0 and "sandboxed" not in config.get("EnvBuilder", {}):
        # as root, builds (a repository's setup.py and postBuild) and `run` go into the service's sandbox:
        # a stranger's code never runs as root on the host (c.EnvBuilder.sandboxed = False opts out)
        from ..sessions.sandbox import configure_sandbox

        configure_sandbox(config, data_dir, allow_unsafe=False)
    return EnvBuilder(config=config, cache_dir=str(data_dir / "envs"))


# build ---------------------------------------------------------------------------------------------
def build_command(args: argparse.Namespace) -> int:
    emit = _json_printer if args.json else _text_printer
    try:
        env = asyncio.run(build_source(make_builder(args), args.source, args.ref, emit))
    except LaunchError as e:
        emit(e.to_event())
        return 1
    emit(
        event(
            BUILT,
            f"Environment ready: {env.env_dir}\n",
            environment=str(env.env_dir),
            key=env.key,
            repo_dir=str(env.repo_dir),
            buildpack=env.buildpack,
        )
    )
    return 0


def _json_printer(ev: dict[str, Any]) -> None:
    print(json.dumps(ev), flush=True)


def _text_printer(ev: dict[str, Any]) -> None:
    stream = sys.stderr if ev["phase"] == "failed" else sys.stdout
    prefix = "error: " if ev["phase"] == "failed" else ""
    stream.write(prefix + ev["message"] + ("" if ev["message"].endswith("\n") else "\n"))
    stream.flush()


async def build_source(builder: EnvBuilder, source: str, ref: str | None, emit: Emit) -> Environment:
    """Resolve and fetch SOURCE, then find its environment in the cache or build it."""
    async with _checkout(source, ref, emit, builder) as (provider, resolved_ref, checkout):
        key = builder.cache_key(provider, resolved_ref)
        if env := builder.lookup(key):
            emit(event(BUILT, "Found built environment\n"))
            return env
        return await builder.build(checkout, key, lambda line: emit(event(BUILDING, line)))


@contextlib.asynccontextmanager
async def _checkout(
    source: str, ref: str | None, emit: Emit, config_parent: EnvBuilder
) -> AsyncIterator[tuple[str, str, Path]]:
    """(provider, immutable ref, directory with the content) for SOURCE."""
    local = Path(source)
    if local.is_dir():
        if ref:
            raise LaunchError("--ref applies to git URLs and provider specs, not to a local directory", 400)
        emit(event(FETCHING, f"Using the local directory {local.resolve()}\n"))
        yield "local", await asyncio.to_thread(directory_fingerprint, local), local
        return
    with tempfile.TemporaryDirectory(prefix="bia-binder-fetch-") as scratch:
        checkout = Path(scratch) / "repo"
        if _GIT_URL.match(source) or source.endswith(".git"):
            emit(event(FETCHING, f"Cloning {source}\n"))
            sha = await asyncio.to_thread(_git_checkout, source, ref, checkout)
            yield "git", sha, checkout
        else:
            checkout.mkdir()
            provider, resolved_ref = await _provider_fetch(source, ref, checkout, emit, config_parent)
            yield provider, resolved_ref, checkout


def _git_checkout(url: str, ref: str | None, dest: Path) -> str:
    """Clone ``url`` into ``dest`` at ``ref``; the commit sha checked out."""

    def git(*argv: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["git", *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        if result.returncode:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise LaunchError(f"git {argv[0]} failed: {lines[-1] if lines else 'no output'}", 404)
        return result.stdout.strip()

    git("clone", "--quiet", url, str(dest))
    if ref:
        git("checkout", "--quiet", ref, cwd=dest)
    return git("rev-parse", "HEAD", cwd=dest)


async def _provider_fetch(
    spec: str, ref: str | None, dest: Path, emit: Emit, config_parent: EnvBuilder
) -> tuple[str, str]:
    """Resolve and fetch a provider spec (configured like the service's providers, e.g. c.GitHubProvider.*)."""
    name, _, rest = spec.partition("/")
    if not rest:
        raise LaunchError(
            f"{spec!r} is neither a directory, a git URL nor a provider spec: write e.g. ./myrepo, "
            "https://host/org/repo.git or gh/org/repo/main",
            400,
        )
    if ref:
        raise LaunchError("with a provider spec, put the ref in the spec (e.g. gh/org/repo/<ref>), not in --ref", 400)
    from ..providers import get_provider  # here: local directories and git URLs work without the providers

    provider = get_provider(name, rest, parent=config_parent)
    resolved = await provider.resolve()
    emit(event(FETCHING, f"Fetching {resolved.repo_url} at {resolved.ref}\n"))
    await provider.fetch(
        resolved, dest, lambda line: emit(event(FETCHING, line if line.endswith("\n") else line + "\n"))
    )
    return resolved.provider, resolved.ref


def directory_fingerprint(root: Path) -> str:
    """A content hash of a local directory (paths, executable bits, bytes; ``.git`` left out)."""
    # hand-written: the key must change exactly when a file that reaches the environment changes
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_file():
                continue
            digest.update(f"{path.relative_to(root)}\0{os.access(path, os.X_OK)}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "dir-" + digest.hexdigest()[:32]


# run -----------------------------------------------------------------------------------------------
def run_command(args: argparse.Namespace) -> int:
    options, argv = _split_command(args.rest)
    if not argv:
        print(
            "error: give the command to run after `--`, e.g. bia-binder run . -- python -c 'print(1)'", file=sys.stderr
        )
        return 2
    option_parser = argparse.ArgumentParser(prog="bia-binder run SOURCE", add_help=False)
    _add_ref_and_data_dir(option_parser)
    option_parser.set_defaults(ref=args.ref, data_dir=args.data_dir, config=args.config)
    args = option_parser.parse_args(options, namespace=args)
    try:
        builder = make_builder(args)
        env = asyncio.run(build_source(builder, args.source, args.ref, _stderr_printer))
    except LaunchError as e:
        _text_printer(e.to_event())
        return 1
    with tempfile.TemporaryDirectory(prefix="bia-binder-run-") as scratch:
        workdir = Path(scratch) / "repo"
        shutil.copytree(env.repo_dir, workdir, symlinks=True)
        if builder.sandboxed:
            return _run_sandboxed(builder, env, argv, workdir)
        return _run_in(env, argv, workdir)


def _split_command(rest: list[str]) -> tuple[list[str], list[str]]:
    """(options, command) from what follows SOURCE: the command starts after the first ``--``."""
    if "--" in rest:
        cut = rest.index("--")
        return rest[:cut], rest[cut + 1 :]
    return [], rest


def _stderr_printer(ev: dict[str, Any]) -> None:
    """Build progress goes to stderr so that ``run``'s stdout is the command's own."""
    sys.stderr.write(("error: " if ev["phase"] == "failed" else "") + ev["message"])
    sys.stderr.flush()


def run_environ(env: Environment, workdir: Path) -> dict[str, str]:
    """What a command run in ``workdir`` (a copy of the built repository) gets: HOME and REPO_DIR are that copy,
    as in a session (and in repo2docker's images), so what postBuild left in ~ is there."""
    return env.session_environ({**os.environ, "HOME": str(workdir)}, repo_dir=str(workdir))


def _run_in(env: Environment, argv: list[str], workdir: Path) -> int:
    try:
        return subprocess.run(env.command(argv), cwd=workdir, env=run_environ(env, workdir)).returncode
    except FileNotFoundError:
        print(f"error: command not found: {argv[0]}", file=sys.stderr)
        return 127


def _run_sandboxed(builder: EnvBuilder, env: Environment, argv: list[str], workdir: Path) -> int:
    """``argv`` as a session runs it: its own uid, the sandbox, the anonymous profile's limits, HOME /home/jovyan,
    a writable layer over the environment (so `pip install` there changes this run only)."""
    from ..sessions.profiles import ResourceProfiles
    from ..sessions.sandbox import Sandbox

    sandbox = Sandbox(parent=builder)
    try:
        session = sandbox.prepare(
            name=f"run-{os.getpid()}",
            home=workdir,
            profile=ResourceProfiles(parent=builder).anonymous_profile(),
            readonly=[*env.host_paths, Path(builder.data_library_path)],
            layers=[(env.env_dir, workdir / ".environment-layers" / env.key)],
        )
    except LaunchError as e:
        _text_printer(e.to_event())
        return 1
    try:
        # an allow-listed environment, as sessions get: the repository's code never sees root's variables
        environ = env.session_environ(session.environ(build_environ()), repo_dir=str(session.home_inside))
        return subprocess.run(session.wrap(env.command(argv)), env=environ).returncode
    finally:
        session.cleanup()


# cache ---------------------------------------------------------------------------------------------
def cache_command(args: argparse.Namespace) -> int:
    try:
        builder = make_builder(args)
    except LaunchError as e:
        _text_printer(e.to_event())
        return 1
    if args.cache_action == "list":
        entries = builder.cache.entries()
        print(f"{'KEY':34} {'BUILDPACK':10} {'LAST USED (UTC)':20} {'OWN DISK':>10}  PINNED BY")
        for e in entries:
            used = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.last_used))
            print(f"{e.key:34} {e.buildpack:10} {used:20} {_human(e.own_bytes):>10}  {', '.join(e.pinned_by) or '-'}")
        print(
            f"{len(entries)} environment(s), {_human(sum(e.own_bytes for e in entries))} of own disk in {builder.cache.root}"
        )
        return 0
    stale = builder.cache.remove_stale_builds()
    budget = args.budget if args.budget is not None else builder.cache_budget_bytes
    evicted = builder.cache.evict(budget)
    print(
        f"removed {len(stale)} interrupted build(s) and {len(evicted)} environment(s){': ' if evicted else ''}{', '.join(evicted)}"
    )
    return 0


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
