"""Running git safely for the git-based providers (gh, gl, gist, git).

Every remote URL goes through :func:`.netcheck.check_url_allowed`; git itself is locked down
to the network transports (no ``ext::``, ``fd::`` or ``file://`` unless local repos are allowed),
never prompts for credentials, and is stopped when it runs too long or writes too much.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .base import ProviderError
from .netcheck import check_url_allowed

SHA1 = re.compile(r"^[0-9a-f]{40}$")
#: git@host:org/repo (git's scp-like syntax)
SCP_LIKE = re.compile(r"^([\w.-]+@[\w.-]+):(.+)$")
NETWORK_TRANSPORTS = ("http", "https", "git", "ssh")


def is_sha1(ref: str) -> bool:
    return bool(SHA1.match(ref))


def normalize_git_url(url: str) -> str:
    """``git@host:path`` → ``ssh://git@host/path`` (as BinderHub does); others unchanged."""
    match = SCP_LIKE.match(url)
    return f"ssh://{match.group(1)}/{match.group(2)}" if match and "://" not in url else url


def check_git_url(url: str, allowed_schemes: set[str] | frozenset[str], allow_local: bool) -> None:
    """Refuse option injection and transports outside ``allowed_schemes`` (400/403)."""
    if not url or url.startswith("-") or any(c in url for c in "\n\r\0"):
        raise ProviderError(f"Invalid git repository URL {url!r}: give a URL such as https://host/org/repo", 400)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file" and not allow_local:
        raise ProviderError(
            f"Refusing to fetch {url}: local file paths are not allowed; set "
            "c.RepoProvider.allow_local_repos = True to allow local repositories (development and tests only)",
            403,
        )
    allowed = set(allowed_schemes) | ({"file"} if allow_local else set())
    if scheme not in allowed:
        raise ProviderError(
            f"Unsupported git URL {url!r}: the protocol must be one of {', '.join(sorted(allowed))}", 400
        )


def _git_command(allow_local: bool) -> list[str]:
    allowed = NETWORK_TRANSPORTS + (("file",) if allow_local else ())
    protocol_config = [arg for proto in allowed for arg in ("-c", f"protocol.{proto}.allow=always")]
    return ["git", "-c", "protocol.allow=never", *protocol_config, "-c", "credential.helper=", "-c", "core.askPass="]


def _git_env() -> dict[str, str]:
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",  # a private repo must fail, not wait for a password
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "LC_ALL": "C",  # error messages are matched below
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # git renames temporary files while we look
                pass
    return total


def too_large(limit: int) -> ProviderError:
    return ProviderError(f"Repository is larger than the {limit:,} byte limit (RepoProvider.max_repo_size)", 413)


def redact(url: str) -> str:
    """``url`` without a password/token in its user part (``https://user:token@host`` → ``https://user:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def classify_git_error(stderr: str, url: str) -> ProviderError:
    """Turn git's stderr into a one-line ProviderError with the right status."""
    text = stderr.strip().replace(url, redact(url))
    url = redact(url)
    last = text.splitlines()[-1] if text else "git failed"
    lowered = text.lower()
    if "could not resolve host" in lowered:
        return ProviderError(f"Could not resolve the host of {url}: check the repository address", 502)
    if "timed out" in lowered or "operation too slow" in lowered:
        return ProviderError(f"Timed out talking to {url}; try again later", 504)
    if "failed to connect" in lowered or "connection refused" in lowered or "couldn't connect" in lowered:
        return ProviderError(f"Could not connect to {url}: the server is unreachable; try again later", 502)
    if "not allowed" in lowered and "transport" in lowered:
        return ProviderError(f"Refusing git transport for {url}: {last}", 403)
    not_found_markers = (
        "not found",
        "error: 404",
        "does not appear to be a git repository",
        "terminal prompts disabled",
        "authentication failed",
        "error: 403",
        "error: 401",
    )
    if any(marker in lowered for marker in not_found_markers):
        return ProviderError(f"Repository {url} not found (or it is private)", 404)
    return ProviderError(f"git could not fetch {url}: {last}", 502)


async def run_git(
    args: list[str],
    *,
    allow_local: bool,
    timeout: float,
    cwd: Path | None = None,
    size_limit: tuple[Path, int] | None = None,
) -> tuple[int, str, str]:
    """Run git; kill it after ``timeout`` seconds (504) or when ``size_limit[0]`` outgrows ``size_limit[1]`` bytes (413)."""
    proc = await asyncio.create_subprocess_exec(
        *_git_command(allow_local),
        *args,
        cwd=cwd,
        env=_git_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # so a kill also stops git's helpers (git-remote-http, ssh)
    )

    async def watch_size() -> None:
        assert size_limit is not None
        path, limit = size_limit
        while True:
            await asyncio.sleep(0.5)
            if await asyncio.to_thread(_dir_size, path) > limit:
                return

    communicate = asyncio.ensure_future(proc.communicate())
    watcher = asyncio.ensure_future(watch_size()) if size_limit else None
    try:
        done, _ = await asyncio.wait({communicate, *([watcher] if watcher else [])}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if communicate not in done:
            _kill_group(proc)
            await communicate
            if watcher in done:
                raise too_large(size_limit[1])
            raise ProviderError(f"git took longer than {timeout:g} s and was stopped; try again later", 504)
    finally:
        if watcher:
            watcher.cancel()
        if not communicate.done():
            _kill_group(proc)
            await communicate
    stdout, stderr = communicate.result()
    return proc.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def candidate_refs(ref: str) -> list[str]:
    """Full ref names ``ref`` may mean, in git's order of preference (branch before tag)."""
    return [ref] if ref == "HEAD" or ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]


def pick_ref(ls_remote_output: str, ref: str) -> str | None:
    """The commit ``ref`` names in ``git ls-remote`` output: HEAD, a branch, a tag (peeled) or a full ref name."""
    refs: dict[str, str] = {}
    for line in ls_remote_output.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for name in candidate_refs(ref):
        # an annotated tag points at a tag object; its ^{} line is the commit
        sha = refs.get(f"{name}^{{}}") or refs.get(name)
        if sha:
            return sha
    return None


async def resolve_ref(url: str, ref: str, *, allow_local: bool, timeout: float) -> str:
    """The commit sha ``ref`` (branch, tag, HEAD or sha) names in the remote repository ``url``."""
    if is_sha1(ref):
        return ref
    await check_url_allowed(url, allow_local)
    # ls-remote filters peeled lines (tag^{}) out unless they are asked for by name
    patterns = [p for name in candidate_refs(ref) for p in (name, f"{name}^{{}}")]
    code, out, err = await run_git(["ls-remote", "--", url, *patterns], allow_local=allow_local, timeout=timeout)
    if code != 0:
        raise classify_git_error(err, url)
    sha = pick_ref(out, ref)
    if sha is None:
        raise ProviderError(
            f"Could not find ref {ref!r} in {redact(url)}: use a branch, a tag, HEAD or a full 40-character commit sha", 404
        )
    return sha


async def fetch_commit(
    url: str,
    sha: str,
    dest: Path,
    log: Callable[[str], None],
    *,
    allow_local: bool,
    timeout: float,
    max_size: int,
) -> None:
    """Check out exactly commit ``sha`` of ``url`` into ``dest`` (shallow when the server allows it)."""
    await check_url_allowed(url, allow_local)
    dest.mkdir(parents=True, exist_ok=True)

    async def git(*args: str) -> tuple[int, str, str]:
        return await run_git(list(args), allow_local=allow_local, timeout=timeout, cwd=dest,
                             size_limit=(dest, max_size))

    await git("init", "-q")
    log(f"Fetching {redact(url)} at {sha}\n")
    code, _, err = await git("fetch", "-q", "--depth=1", "--no-tags", "--", url, sha)
    if code != 0:
        # servers that refuse fetching a sha directly: fetch all branches and tags, then pick the commit
        log("Shallow fetch of the commit refused; fetching the whole repository\n")
        code, _, err = await git("fetch", "-q", "--", url, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
        if code != 0:
            raise classify_git_error(err, url)
        code, _, _ = await git("cat-file", "-e", f"{sha}^{{commit}}")
        if code != 0:
            raise ProviderError(f"Commit {sha} not found in {redact(url)}", 404)
    code, _, err = await git("-c", "advice.detachedHead=false", "checkout", "-q", sha)
    if code != 0:
        last_line = (err.strip().splitlines() or ["git checkout failed"])[-1]
        raise ProviderError(f"Could not check out {sha} of {redact(url)}: {last_line}", 502)
    if await asyncio.to_thread(_dir_size, dest) > max_size:  # finished before the watcher looked
        raise too_large(max_size)
    log(f"Checked out {sha}\n")
