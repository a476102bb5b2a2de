"""Google's batch protocol: a multipart/mixed request of inner HTTP requests in,
a multipart/mixed response with one ``application/http`` part per request out.
"""

from __future__ import annotations

import email
import hashlib
from collections.abc import Callable
from email.message import Message
from email.policy import compat32

from jobsys.connectors.google.emulator.replies import REASON_PHRASES, Reply, bad_request
from jobsys.connectors.google.emulator.request import ApiRequest

MAX_PARTS = 100


def answer_batch(
    content_type: str, body: bytes, outer: ApiRequest, handle: Callable[[ApiRequest], Reply]
) -> Reply:
    """Run every inner request of a batch through ``handle`` and pack the answers.

    Parameters:
        content_type: the batch's Content-Type (with its boundary).
        body: the batch body.
        outer: the outer request; its Authorization applies to parts without one.
        handle: answers one inner request.

    Returns:
        A 200 multipart/mixed reply, or 400 when the batch is not well formed.
    """
    container = email.message_from_bytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body, policy=compat32
    )
    parts = container.get_payload()
    if not container.is_multipart() or not isinstance(parts, list) or not parts:
        return bad_request("a batch must be a non-empty multipart/mixed body")
    if len(parts) > MAX_PARTS:
        return bad_request(f"a batch holds at most {MAX_PARTS} requests")
    boundary = "batch_" + hashlib.sha256(body).hexdigest()[:24]
    chunks = []
    for part in parts:
        if not isinstance(part, Message):
            return bad_request("unreadable batch part")
        inner = _inner_request(part, outer)
        reply = handle(inner) if inner is not None else bad_request("unreadable batch part")
        chunks.append(_pack(boundary, _response_id(part), reply))
    payload = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return Reply(200, payload, content_type=f"multipart/mixed; boundary={boundary}")


def _inner_request(part: Message, outer: ApiRequest) -> ApiRequest | None:
    text = part.get_payload()
    if not isinstance(text, str):
        return None
    text = text.replace("\r\n", "\n")
    request_line, _, rest = text.partition("\n")
    head, _, inner_body = rest.partition("\n\n")
    fields = request_line.split()
    if len(fields) < 2:
        return None
    headers = dict(email.message_from_string(head + "\n\n", policy=compat32).items())
    lowered = {k.lower() for k in headers}
    if "authorization" not in lowered and "authorization" in outer.headers:
        headers["Authorization"] = outer.headers["authorization"]
    return ApiRequest.parse(fields[0], fields[1], headers, inner_body.encode())


def _response_id(part: Message) -> str:
    ident = str(part.get("Content-ID", "")).strip().strip("<>")
    return f"<response-{ident}>"


def _pack(boundary: str, content_id: str, reply: Reply) -> bytes:
    phrase = REASON_PHRASES.get(reply.status, "Unknown")
    lines = [
        f"--{boundary}",
        "Content-Type: application/http",
        f"Content-ID: {content_id}",
        "",
        f"HTTP/1.1 {reply.status} {phrase}",
        f"Content-Type: {reply.content_type}",
        *(f"{k}: {v}" for k, v in reply.headers.items()),
        f"Content-Length: {len(reply.body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + reply.body + b"\r\n"
