"""A small HTTP server on 127.0.0.1 for the network-source tests: routes, Range, dropped connections."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    """One request the server saw."""

    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """What to answer: a status, a body, headers; `drop_after` cuts the connection after that many bytes."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    delay_per_chunk: float = 0.0
    ranges: bool = True


class Server:
    """`routes` maps a path to a Reply or to a function (Request) -> Reply; every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Callable[[Request], Reply]] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    parts.path,
                    dict(urllib.parse.parse_qsl(parts.query)),
                    dict(self.headers.items()),
                    body,
                )
                server.requests.append(req)
                route = server.routes.get(parts.path)
                reply = (route(req) if callable(route) else route) if route is not None else Reply(b"no such path", 404)
                self._send(reply, req)

            def _send(self, reply: Reply, req: Request) -> None:
                data, status, headers = reply.body, reply.status, dict(reply.headers)
                wanted = req.headers.get("Range", "")
                if status == 200 and reply.ranges and wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[6:-1])
                    if start >= len(data):
                        status, data = 416, b""
                        headers["Content-Range"] = f"bytes */{len(reply.body)}"
                    else:
                        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                        status, data = 206, data[start:]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                limit = len(data) if reply.drop_after is None else min(reply.drop_after, len(data))
                try:
                    for start in range(0, limit, 64 * 1024):
                        self.wfile.write(data[start : min(start + 64 * 1024, limit)])
                        self.wfile.flush()
                        if reply.delay_per_chunk:
                            time.sleep(reply.delay_per_chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if limit < len(data):
                    self.close_connection = True
                    self.connection.shutdown(2)

            do_GET = _handle
            do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def hits(self, path: str) -> list[Request]:
        """The recorded requests for `path`."""
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
