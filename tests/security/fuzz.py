"""Fuzz the whole service: schemathesis against /api/openapi.json, then a corpus of hostile specs.

Run it inside a network namespace with only a loopback (``test_fuzzing.py`` does): fuzzed specs
name arbitrary hosts, and there no DNS query or connection can leave the machine. Prints one JSON
summary: requests sent, responses >= 500, hangs, tracebacks in the service's logs.

    python -m tests.security.fuzz --examples 700 [--seconds 600]
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from collections import Counter
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.security.corpus import hostile_paths
from tests.stack import BinderStack

HANG = 30.0
UPSTREAM_UNREACHABLE = (502, 504)


def run_schemathesis(stack: BinderStack, examples: int, seconds: float, report: Path) -> dict:
    started = time.monotonic()
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/api/openapi.json",
        "--url", stack.url,
        "--checks", "not_a_server_error",
        "--max-examples", str(examples),
        "--max-time", str(int(seconds)),
        "--request-timeout", str(HANG),
        "--max-response-time", str(HANG),
        "--workers", "2",
        "--seed", "20261201",
        "--no-shrink",
        "--report", "har", "--report-har-path", str(report),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
    entries = json.loads(report.read_text())["log"]["entries"] if report.exists() else []
    statuses = [entry["response"]["status"] for entry in entries]
    return {
        "requests": len(entries),
        "server_errors": sum(1 for s in statuses if s >= 500),
        "no_response": sum(1 for s in statuses if s == 0),
        "slowest_s": round(max((e.get("time", 0) for e in entries), default=0) / 1000, 2),
        "exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "output_tail": done.stdout[-3000:] if done.returncode else "",
    }


class NothingHere(http.server.BaseHTTPRequestHandler):
    """The upstream APIs (GitHub, GitLab, Zenodo, Figshare, doi.org) as a stand-in that knows no record."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "Not Found"}')

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


def upstream_config(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    return "\n".join(
        [
            f"c.GitHubAPIProvider.api_url = '{base}/github'",
            f"c.GitHubProvider.html_url = '{base}/github-web'",
            f"c.GistProvider.html_url = '{base}/gist'",
            f"c.GitLabProvider.html_url = '{base}/gitlab'",
            f"c.FigshareProvider.api_url = '{base}/figshare'",
            f"c.ZenodoProvider.zenodo_url = '{base}/zenodo'",
            f"c.RecordProvider.doi_resolver = '{base}/doi'",
            "",
        ]
    )


def run_corpus(stack: BinderStack) -> dict:
    """Every hostile path as a launch page and as an event stream, exactly as written (no client escaping)."""
    paths = hostile_paths()
    results: list[tuple[str, int, float]] = []

    def one(path: str) -> tuple[str, int, float]:
        started = time.monotonic()
        try:
            status = raw_request(stack, path)
        except TimeoutError:
            status = -1
        return path, status, time.monotonic() - started

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, paths))
    return {
        "requests": len(results),
        # an HTTP status, or the status_code of a stream's failed event: 500 would be our bug; 502/504 mean an
        # upstream named by a well-formed spec could not be reached (this namespace has no route anywhere)
        "server_errors": [f"{s} {p[:120]}" for p, s, _ in results if s >= 500 and s not in UPSTREAM_UNREACHABLE],
        "upstream_unreachable": sum(1 for _, s, _ in results if s in UPSTREAM_UNREACHABLE),
        "hangs": [p[:120] for p, s, t in results if s == -1 or t > HANG],
        "statuses": dict(sorted(Counter(s for _, s, _ in results).items())),
    }


def raw_request(stack: BinderStack, path: str) -> int:
    import socket

    accept = "text/event-stream" if path.startswith("/build/") else "text/html"
    with socket.create_connection(("127.0.0.1", stack.port), timeout=HANG) as s:
        try:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n".encode())
        except OSError:
            pass  # refused while we were still sending (431): its answer is already there to read
        s.settimeout(HANG)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
            status = int(head.split()[1]) if head else 0
            if status == 200 and accept == "text/event-stream":
                return failed_status(s, head)
            return status
        except socket.timeout as e:
            raise TimeoutError from e


def failed_status(s, received: bytes) -> int:
    """An event stream's outcome: the status_code of its failed event (read to the end of the stream)."""
    data = received
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event.get("phase") == "failed":
                return int(event.get("status_code", 500))
    return 200


def tracebacks(stack: BinderStack) -> list[str]:
    text = stack.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or "500 GET" in line or "500 POST" in line]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=700, help="schemathesis examples per API operation")
    parser.add_argument("--seconds", type=float, default=900, help="time budget of the schemathesis run")
    args = parser.parse_args()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NothingHere)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    config = upstream_config(upstream.server_address[1])
    with BinderStack(extra_args=["--unsafe-no-sandbox"], config=config) as stack, tempfile.TemporaryDirectory() as tmp:
        assert httpx.get(f"{stack.url}/api/openapi.json", timeout=30).status_code == 200
        summary = {
            "schemathesis": run_schemathesis(stack, args.examples, args.seconds, Path(tmp) / "fuzz.har"),
            "corpus": run_corpus(stack),
            "healthy_after": httpx.get(f"{stack.url}/health", timeout=30).status_code,
            "tracebacks": tracebacks(stack)[:20],
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
