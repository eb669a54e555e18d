"""A loopback HTTP server serving block lists for tests (127.0.0.1 only), with knobs per path:
a status, a delay before the body, a body cut short (a Content-Length larger than what is
sent), ETag/If-None-Match (304), and a record of every request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    body: bytes = b""
    status: int = 200
    delay: float = 0.0  # seconds before the body
    trickle: float = 0.0  # seconds between 1 KiB pieces of the body
    cut: int = 0  # bytes announced in Content-Length but never sent
    etag: str = ""


@dataclass
class ListServer:
    paths: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __enter__(self) -> ListServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, dict(self.headers)))
                served = server.paths.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                if served.delay:
                    time.sleep(served.delay)
                if served.etag and self.headers.get("If-None-Match") == served.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                if served.status != 200:
                    self.send_error(served.status)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(served.body) + served.cut))
                if served.etag:
                    self.send_header("ETag", served.etag)
                self.end_headers()
                try:
                    if served.trickle:
                        for at in range(0, len(served.body), 1024):
                            self.wfile.write(served.body[at : at + 1024])
                            self.wfile.flush()
                            time.sleep(served.trickle)
                    else:
                        self.wfile.write(served.body)
                except OSError:
                    pass
                if served.cut:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)
