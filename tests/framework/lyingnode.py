"""A node API that lies: a loopback HTTP proxy in front of a real node, rewriting answers.

A light wallet's claim is that a node cannot make it believe a confirmation; the tests
show it by putting this between the wallet and a real ``obol-node`` and changing one
thing in what the node answers (a merkle branch, a transaction's bytes, a header).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (path, JSON answer) -> the answer to send instead
Rewrite = Callable[[str, Any], Any]


class LyingNode:
    """Forwards GETs to ``127.0.0.1:upstream_port``; ``rewrite`` may change each JSON answer."""

    def __init__(self, upstream_port: int, rewrite: Rewrite) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    conn.request("GET", self.path)
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                finally:
                    conn.close()
                if status == 200:
                    body = json.dumps(proxy.rewrite(self.path, json.loads(body))).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.rewrite = rewrite
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LyingNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
