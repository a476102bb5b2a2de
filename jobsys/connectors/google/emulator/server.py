"""HTTP plumbing: a threaded loopback server that routes to the API, batch,
OAuth token and admin handlers.

HTTP/1.1 keep-alive matters: httplib2 reuses its connection, and a new TCP
connection per request would dominate the cost the benchmarks measure.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from jobsys.connectors.google.emulator.admin import Admin
from jobsys.connectors.google.emulator.dispatch import Dispatcher
from jobsys.connectors.google.emulator.multipart import answer_batch
from jobsys.connectors.google.emulator.replies import (
    REASON_PHRASES,
    Reply,
    bad_request,
    google_error,
    json_reply,
)
from jobsys.connectors.google.emulator.request import ApiRequest
from jobsys.connectors.google.emulator.world import World

BATCH_PATHS = ("/batch/gmail/v1", "/batch")
# Far above a batch of 100 requests or a large MIME message posted to the admin
# API; a body is read whole into memory, so a bigger one is refused unread.
MAX_BODY = 16 * 1024 * 1024


class EmulatorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the dispatcher and admin handlers."""

    daemon_threads = True
    # Many short-lived client threads connect at once in benchmarks.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, admin: Admin) -> None:
        super().__init__(address, _Handler)
        self.dispatcher = dispatcher
        self.admin = admin
        self.token_ttl = dispatcher.world.config.access_token_ttl

    def route(self, request: ApiRequest) -> Reply:
        """Answer one HTTP request."""
        if request.path.startswith("/_emulator/"):
            return self.admin.handle(request)
        if request.path == "/token" and request.method == "POST":
            return token_reply(self.dispatcher.world, request.body, self.token_ttl)
        # Latency applies once per HTTP round trip, as network latency would.
        latency = self.dispatcher.faults.latency
        if latency:
            time.sleep(latency)
        if request.path in BATCH_PATHS and request.method == "POST":
            return self._batch(request)
        return self.dispatcher.handle(request)

    def _batch(self, request: ApiRequest) -> Reply:
        parts: list[ApiRequest] = []

        def handle(inner: ApiRequest) -> Reply:
            parts.append(inner)
            return self.dispatcher.handle(inner)

        content_type = request.headers.get("content-type", "")
        reply = answer_batch(content_type, request.body, request, handle)
        self.dispatcher.note_batch(request, len(parts))
        return reply


def token_reply(world: World, body: bytes, ttl: int) -> Reply:
    """Answer an OAuth 2 refresh-token grant (``POST /token``).

    Parameters:
        world: issues the token.
        body: the url-encoded form.
        ttl: the ``expires_in`` to report.

    Returns:
        200 with a new access token, or 400 ``invalid_grant`` / ``unsupported_grant_type``.
    """
    form = parse_qs(body.decode("utf-8", "replace"))
    if form.get("grant_type", [""])[0] != "refresh_token":
        return _oauth_error("unsupported_grant_type", "Only refresh_token grants are emulated.")
    token = world.refresh(form.get("refresh_token", [""])[0])
    if token is None:
        return _oauth_error("invalid_grant", "Token has been expired or revoked.")
    scope = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/calendar.readonly"
    return json_reply(
        {"access_token": token, "expires_in": ttl, "token_type": "Bearer", "scope": scope}
    )


def _oauth_error(code: str, description: str) -> Reply:
    body = json.dumps({"error": code, "error_description": description}).encode()
    return Reply(400, body)


def body_length(header: str | None) -> tuple[int, Reply | None]:
    """The request body's length from its Content-Length header, or the reply refusing it:
    400 for a value that is not a whole number >= 0, 413 past :data:`MAX_BODY`."""
    try:
        length = int(header or 0)
    except ValueError:
        length = -1
    if length < 0:
        return 0, bad_request(f"Content-Length {header!r} is not a whole number >= 0")
    if length > MAX_BODY:
        message = f"request body of {length} bytes exceeds the limit of {MAX_BODY}"
        return 0, google_error(413, "requestTooLarge", message)
    return length, None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each keep-alive
    # request would wait for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length, refusal = body_length(self.headers.get("Content-Length"))
        if refusal is not None:
            # The body stays unread, so the connection cannot carry another request.
            self.close_connection = True
            self._write(refusal)
            return
        body = self.rfile.read(length) if length else b""
        request = ApiRequest.parse(self.command, self.path, dict(self.headers.items()), body)
        try:
            reply = self.server.route(request)
        except Exception as e:  # a bug in the emulator must still answer, as Google's 500
            reply = json_reply({"error": {"code": 500, "message": repr(e)}}, 500)
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status, REASON_PHRASES.get(reply.status))
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        # Request logs would drown test and benchmark output; stats cover counting.
        return
