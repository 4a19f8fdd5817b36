"""A real git server for tests: Git's own ``git http-backend`` behind a tiny threaded CGI server.

Standalone (no pytest needed), so whole-stack fixtures and scripts can use it too::

    with GitServer() as server:
        clone_url, sha = server.create_repo("org/repo", {"requirements.txt": "numpy\\n"})
        new_sha = server.commit("org/repo", {"README.md": "# hi\\n"})
        server.tag("org/repo", "v1.0")

Repositories are bare repos under ``root/<name>.git``; http-backend also finds them without
the ``.git`` suffix, so ``<url>/org/repo`` works like a GitHub URL. Only listens on 127.0.0.1.

Why hand-written: Python's stdlib no longer ships a CGI server (``CGIHTTPRequestHandler`` is
deprecated and gone in 3.13), and serving through real git keeps the wire protocol genuine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Iterable

_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(*args: str, git_dir: Path, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        input=input,
        capture_output=True,
        check=False,
        env={**os.environ, **_COMMIT_ENV, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


class _GitCGIHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` once per request (the CGI contract: env vars in, headers+body out)."""

    server: "_GitHTTPServer"

    def do_GET(self) -> None:
        self._run_backend(b"")

    def do_POST(self) -> None:
        self._run_backend(self._read_body())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # git switches to chunked uploads for bodies above http.postBuffer
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi_env(self, body: bytes) -> dict[str, str]:
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol") and self.server.protocol_v2:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        return env

    def _run_backend(self, body: bytes) -> None:
        self.server.request_count += 1
        try:
            result = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=self._cgi_env(body), check=False,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            self.send_error(504, "git http-backend timed out")
            return
        head, sep, payload = result.stdout.partition(b"\r\n\r\n")
        if not sep:
            self.send_error(500, "git http-backend failed", result.stderr.decode(errors="replace"))
            return
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read results, not access logs."""


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, protocol_v2: bool):
        super().__init__(("127.0.0.1", 0), _GitCGIHandler)
        self.root = root
        self.protocol_v2 = protocol_v2
        self.request_count = 0


class GitServer:
    """Serves bare repositories over git's smart HTTP protocol on a free 127.0.0.1 port."""

    def __init__(self, root: str | Path | None = None, protocol_v2: bool = True):
        """``root``: where the bare repositories live (default: a temporary directory, removed on stop).

        ``protocol_v2=False`` makes the server speak git's original protocol, like older hosts do.
        """
        self._own_root = root is None
        self.protocol_v2 = protocol_v2
        self._root = Path(root) if root is not None else None
        self._server: _GitHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "GitServer":
        if shutil.which("git") is None:
            raise RuntimeError("GitServer needs the git command line tool on PATH")
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="gitserver-"))
        self._root.mkdir(parents=True, exist_ok=True)
        self._server = _GitHTTPServer(self._root, self.protocol_v2)
        self._thread = threading.Thread(target=self._server.serve_forever, name="gitserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> "GitServer":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def root(self) -> Path:
        """Directory holding the bare repositories."""
        if self._root is None:
            raise RuntimeError("GitServer is not started")
        return self._root

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("GitServer is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; a repository lives at ``<url>/<name>.git``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def request_count(self) -> int:
        """HTTP requests served so far (lets tests check that nothing was fetched)."""
        return self._server.request_count if self._server else 0

    # -- repositories -----------------------------------------------------------------------
    def repo_path(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def clone_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def create_repo(
        self,
        name: str,
        files: dict[str, str | bytes],
        branch: str = "main",
        allow_sha_fetch: bool = True,
        executable: Iterable[str] = (),
    ) -> tuple[str, str]:
        """A new bare repository ``name`` (may contain ``/``) with one commit of ``files``.

        Returns ``(clone_url, commit_sha)``. Fetching any commit by sha is allowed, as on GitHub, unless
        ``allow_sha_fetch`` is False (then only branch and tag tips can be fetched over protocol v0).
        """
        git_dir = self.repo_path(name)
        if git_dir.exists():
            raise ValueError(f"repository {name!r} already exists")
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True, capture_output=True)
        _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", git_dir=git_dir)
        _git("config", "uploadpack.allowAnySHA1InWant", str(allow_sha_fetch).lower(), git_dir=git_dir)
        _git("config", "http.receivepack", "false", git_dir=git_dir)
        return self.clone_url(name), self.commit(name, files, branch=branch, executable=executable)

    def commit(
        self,
        name: str,
        files: dict[str, str | bytes],
        branch: str = "main",
        message: str = "Update files",
        executable: Iterable[str] = (),
    ) -> str:
        """Commit ``files`` (added or replaced; others kept) on top of ``branch`` (created if new). Returns the sha.

        Paths listed in ``executable`` get mode 755 (e.g. ``postBuild``, ``start``).
        """
        executable = set(executable)
        git_dir = self.repo_path(name)
        parent = self._rev_or_none(git_dir, f"refs/heads/{branch}")
        with tempfile.TemporaryDirectory() as scratch:
            index_env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            if parent:
                _git("read-tree", parent, git_dir=git_dir, env=index_env)
            entries = []
            for path, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                blob = _git("hash-object", "-w", "--stdin", git_dir=git_dir, input=data)
                mode = "100755" if path in executable else "100644"
                entries.append(f"{mode} {blob}\t{path}\n")
            _git("update-index", "--index-info", git_dir=git_dir, input="".join(entries).encode(), env=index_env)
            tree = _git("write-tree", git_dir=git_dir, env=index_env)
        parent_args = ["-p", parent] if parent else []
        sha = _git("commit-tree", tree, *parent_args, "-m", message, git_dir=git_dir)
        _git("update-ref", f"refs/heads/{branch}", sha, git_dir=git_dir)
        return sha

    def tag(self, name: str, tag: str, ref: str = "HEAD", message: str | None = None) -> str:
        """Tag ``ref`` (lightweight, or annotated when ``message`` is given). Returns the tagged commit's sha."""
        git_dir = self.repo_path(name)
        if message is None:
            _git("tag", tag, ref, git_dir=git_dir)
        else:
            _git("tag", "-a", tag, ref, "-m", message, git_dir=git_dir)
        return _git("rev-parse", f"{ref}^{{commit}}", git_dir=git_dir)

    def head(self, name: str, ref: str = "HEAD") -> str:
        """The commit sha ``ref`` points at in repository ``name``."""
        return _git("rev-parse", f"{ref}^{{commit}}", git_dir=self.repo_path(name))

    def log(self, name: str, ref: str = "HEAD") -> list[str]:
        """Commit shas reachable from ``ref``, newest first."""
        return _git("rev-list", ref, git_dir=self.repo_path(name)).split()

    @staticmethod
    def _rev_or_none(git_dir: Path, ref: str) -> str | None:
        try:
            return _git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", git_dir=git_dir)
        except RuntimeError:
            return None
