"""Gmail's JSON representation of a stored message (formats full, metadata, raw)."""

from __future__ import annotations

import base64
import email
import re
from email.message import Message
from email.policy import compat32
from typing import Any

from jobsys.connectors.google.emulator.mailbox import StoredMessage

FORMATS = ("full", "metadata", "minimal", "raw")


def b64url(data: bytes) -> str:
    """Encode ``data`` as unpadded-safe URL base64, as Gmail does."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def message_resource(
    stored: StoredMessage, fmt: str, metadata_headers: list[str] | None = None
) -> dict[str, Any]:
    """Render ``stored`` as a Gmail ``Message`` resource.

    Parameters:
        stored: the message.
        fmt: ``full``, ``metadata``, ``minimal`` or ``raw``.
        metadata_headers: for ``metadata``, the headers to keep (all when empty).

    Raises:
        ValueError: ``fmt`` is not a Gmail format.

    Returns:
        The resource as a JSON-ready dict.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    resource: dict[str, Any] = {
        "id": stored.id,
        "threadId": stored.thread_id,
        "labelIds": list(stored.labels),
        "snippet": stored.snippet,
        "historyId": str(stored.history_id),
        "internalDate": str(stored.internal_date_ms),
        "sizeEstimate": len(stored.raw),
    }
    if fmt == "raw":
        resource["raw"] = b64url(stored.raw)
    elif fmt != "minimal":
        parsed = email.message_from_bytes(stored.raw, policy=compat32)
        payload = _part(parsed, "", stored.id, fmt == "full")
        if fmt == "metadata" and metadata_headers:
            wanted = {h.lower() for h in metadata_headers}
            payload["headers"] = [h for h in payload["headers"] if h["name"].lower() in wanted]
        resource["payload"] = payload
    return resource


def _part(msg: Message, part_id: str, message_id: str, with_bodies: bool) -> dict[str, Any]:
    headers = [{"name": k, "value": _unfold(v)} for k, v in msg.items()]
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": msg.get_content_type(),
        "filename": msg.get_filename() or "",
        "headers": headers,
        "body": {"size": 0},
    }
    if not with_bodies:
        return out
    if msg.is_multipart():
        subparts = msg.get_payload()
        out["parts"] = [
            _part(sub, _child_id(part_id, i), message_id, True)
            for i, sub in enumerate(subparts if isinstance(subparts, list) else [])
        ]
        return out
    data = msg.get_payload(decode=True)
    data = data if isinstance(data, bytes) else b""
    if out["filename"]:
        out["body"] = {"size": len(data), "attachmentId": f"att-{message_id}-{part_id or '0'}"}
    else:
        out["body"] = {"size": len(data), "data": b64url(data)}
    return out


def _child_id(parent: str, index: int) -> str:
    return f"{parent}.{index}" if parent else str(index)


def _unfold(value: object) -> str:
    # compat32 hands back raw strings (undecoded encoded-words), or Header objects
    # when the bytes were not ASCII; Gmail shows the unfolded raw value.
    return re.sub(r"\r?\n(?=[ \t])", "", str(value))
