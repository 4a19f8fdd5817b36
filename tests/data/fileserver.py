"""A static file server on loopback for the data tests: it ignores Range (Python's
``http.server`` answers every GET with the whole file), counts GETs per path, and can answer a
path with planned faults."""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class BackloggedServer(ThreadingHTTPServer):
    request_queue_size = 256  # http.server's 5 makes a burst of connections wait for SYN retries
    daemon_threads = True


class FaultyServer:
    """A static file server that counts GETs per path and can answer a path with planned faults."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: collections.Counter[str] = collections.Counter()
        self.faults: dict[str, list[tuple[str, object]]] = {}
        self.in_flight = self.most_in_flight = 0
        #: for each path held back by an "after" fault: whether the path it waited for came meanwhile
        self.released_by: dict[str, bool] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so the client's pooled connections are reused

            def log_message(self, format, *args):  # noqa: A002 - the base class's signature
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                with server._lock:
                    server.hits[self.path] += 1
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    self._answer()
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self):
                time.sleep(0.005)  # a little latency, so concurrent requests overlap
                planned = server.faults.get(self.path)
                if planned:
                    kind, value = planned.pop(0)
                    if kind == "status":
                        self.send_error(value)
                        return
                    if kind == "after":  # held until another path is asked for (or a timeout), then served
                        awaited, timeout = value
                        deadline = time.monotonic() + timeout
                        while awaited not in server.hits and time.monotonic() < deadline:
                            time.sleep(0.001)
                        server.released_by[self.path] = awaited in server.hits
                        super().do_GET()
                        return
                    if kind == "hang":
                        time.sleep(value)
                        return
                    if kind == "trickle":  # a byte at a time: each socket read succeeds, the body never ends
                        length, pause, *headers_after = value
                        time.sleep(headers_after[0] if headers_after else 0)
                        self.send_response(200)
                        self.send_header("Content-Length", str(length))
                        self.end_headers()
                        try:
                            for _ in range(length):
                                self.wfile.write(b"x")
                                self.wfile.flush()
                                time.sleep(pause)
                        except OSError:  # the client gave up
                            self.close_connection = True
                        return
                    if kind == "chunked":  # no Content-Length: the client learns the size only by reading
                        self.send_response(200)
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for start in range(0, len(value), 2**16):
                            piece = value[start : start + 2**16]
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    if kind == "body":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(value)))
                        self.end_headers()
                        self.wfile.write(value)
                        return
                super().do_GET()

        self.httpd = BackloggedServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def chunk_requests(self, prefix: str) -> collections.Counter[str]:
        """GETs per chunk path under ``prefix`` (metadata left out)."""
        return collections.Counter({
            path: count for path, count in self.hits.items()
            if path.startswith(prefix) and not path.rsplit("/", 1)[-1].startswith(".") and not path.endswith("zarr.json")
        })

    def chunk_hits(self, prefix: str) -> int:
        return sum(self.chunk_requests(prefix).values())


@contextlib.contextmanager
def serving(root: Path) -> Iterator[FaultyServer]:
    """Serve the (new, empty) directory ``root`` until the block ends."""
    root.mkdir()
    served = FaultyServer(root)
    served.thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
        served.thread.join(timeout=10)
