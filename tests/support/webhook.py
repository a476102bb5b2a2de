"""A local HTTP receiver (a webhook's, an OTLP collector's): a server in a thread that
records every POST's decoded body and path."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records each POST's body as ``decode`` reads it (JSON by default) and its path;
    answers 503 to the first ``failures`` requests."""

    def __init__(self, failures: int = 0, decode: Callable[[bytes], Any] = json.loads) -> None:
        self.failures = failures
        self.requests = 0
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    refuse = receiver.requests <= receiver.failures
                    if not refuse:
                        receiver.bodies.append(decode(body))
                        receiver.paths.append(self.path)
                self.send_response(503 if refuse else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hooks/alerts"

    def received(self) -> list[tuple[int, str]]:
        """``(alert id, state)`` of each body received, in order."""
        with self.lock:
            return [(b["alert"]["id"], b["alert"]["state"]) for b in self.bodies]


@contextmanager
def receiver(failures: int = 0, decode: Callable[[bytes], Any] = json.loads) -> Iterator[Receiver]:
    found = Receiver(failures, decode)
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        thread.join(timeout=10)
