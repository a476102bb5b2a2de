"""The text body of a message: the part ``EmailMessage.get_body`` picks, as text.

Rule (``text_body``):

1. The body is the part ``email.message.EmailMessage.get_body(
   preferencelist=("plain", "html"))`` returns, found by :func:`find_body`,
   which walks the Compat32 tree the same way (depth first; a part is an
   attachment only if its Content-Disposition says ``attachment`` — a
   ``name=`` parameter alone does not make one; ``multipart/related`` is
   entered at its ``start`` part or its first part; ``message/rfc822`` is not
   entered). A unit test holds it equal to ``get_body`` on the corpus.
2. When there is none, the first text part the parser recovered
   (``text/plain`` before ``text/html`` before other ``text/*``, attachments
   and ``text/calendar`` excepted). A multipart whose boundary parameter is
   missing or never occurs has its payload kept as text by the parser: when
   its first line looks like a boundary (``--something``), it is parsed again
   with that boundary; otherwise the payload itself is the body.
3. The part is decoded by its transfer encoding, then by ``mime.decode_bytes``;
   ``format=flowed`` text (RFC 3676) is unwrapped; HTML becomes text.

Bounds: at most ``MAX_PART_DEPTH`` levels and ``MAX_PARTS`` parts are visited,
with explicit stacks (``Message.walk`` recurses and overflows on hostile
nesting), and the body is cut at ``mime.MAX_BODY_CHARS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message

from jobsys.connectors.phases import headers, mime

MAX_PART_DEPTH = 20
MAX_PARTS = 500
PREFERENCES = ("plain", "html")

_BOUNDARY_LINE = re.compile(r"--([^\s]{1,200}?)(?:--)?[ \t]*\r?$")
_SIGNATURE_SEPARATOR = "-- "


def is_attachment(part: Message) -> bool:
    """True when the part's Content-Disposition is ``attachment`` (as the standard library)."""
    disposition = part.get("content-disposition")
    if disposition is None:
        return False
    return str(disposition).split(";", 1)[0].strip().lower() == "attachment"


def find_body(root: Message) -> Message | None:
    """The part ``EmailMessage.get_body(("plain", "html"))`` would return, or None."""
    best: tuple[int, Message] | None = None
    for priority, part in _candidates(root, root, 0, [0]):
        if best is None or priority < best[0]:
            best = (priority, part)
            if priority == 0:
                break
    return None if best is None else best[1]


def _candidates(
    part: Message, root: Message, depth: int, visited: list[int]
) -> Iterator[tuple[int, Message]]:
    # Mirrors email.message.MIMEPart._find_body, including its test of the root.
    visited[0] += 1
    if visited[0] > MAX_PARTS or depth > MAX_PART_DEPTH or is_attachment(part):
        return
    maintype, subtype = part.get_content_type().split("/")
    if maintype == "text":
        if subtype in PREFERENCES:
            yield PREFERENCES.index(subtype), part
        return
    if maintype != "multipart" or not root.is_multipart():
        return
    if subtype != "related":
        for child in _children(part):
            yield from _candidates(child, root, depth + 1, visited)
        return
    start = part.get_param("start")
    children = _children(part)
    chosen = next((c for c in children if start and c.get("content-id") == start), None)
    if chosen is None and children:
        chosen = children[0]
    if chosen is not None:
        yield from _candidates(chosen, root, depth + 1, visited)


def _children(part: Message) -> list[Message]:
    if not part.is_multipart():
        return []
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def walk(msg: Message) -> tuple[list[Message], list[str]]:
    """Leaf parts depth first, and the parser's defect names, within the bounds.

    Containers marked as attachments and forwarded messages (``message/*``) are
    not entered: their text and invitations are not this message's.
    """
    leaves: list[Message] = []
    defects: list[str] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        defects.extend(type(defect).__name__ for defect in part.defects)
        children = _children(part)
        if not part.is_multipart():
            leaves.append(part)
        elif depth < MAX_PART_DEPTH and not (
            is_attachment(part) or part.get_content_maintype() == "message"
        ):
            stack.extend((child, depth + 1) for child in reversed(children))
    return leaves, defects


def text_body(msg: Message, leaves: list[Message], defects: list[str]) -> str:
    """The message's text body (module rule); losses and guesses go to ``defects``."""
    part = find_body(msg)
    if part is None:
        part = _recovered(leaves, defects)
    if part is None:
        return ""
    text = _text(part, defects)
    if len(text) > mime.MAX_BODY_CHARS:
        defects.append(f"body: truncated to {mime.MAX_BODY_CHARS} characters")
        text = text[: mime.MAX_BODY_CHARS]
    return text


def _recovered(leaves: list[Message], defects: list[str]) -> Message | None:
    """Rule 2: a text part the parser kept although ``get_body`` finds none."""
    ranked: list[tuple[int, int, Message]] = []
    for position, leaf in enumerate(leaves):
        if is_attachment(leaf):
            continue
        maintype, subtype = leaf.get_content_type().split("/")
        if maintype == "multipart":
            # Explicit None tests: a Message without fields is falsy (len() counts fields).
            again = _reparsed(leaf, defects)
            inner = find_body(again) if again is not None else None
            ranked.append((0, position, inner if inner is not None else leaf))
        elif maintype == "text" and subtype != "calendar":
            rank = PREFERENCES.index(subtype) if subtype in PREFERENCES else len(PREFERENCES)
            ranked.append((rank, position, leaf))
    if not ranked:
        return None
    defects.append("body: from a part the parser recovered")
    return min(ranked, key=lambda r: (r[0], r[1]))[2]


def _reparsed(part: Message, defects: list[str]) -> Message | None:
    """A multipart kept as text, parsed again with the boundary its first line shows."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    first = next((line for line in payload.split("\n") if line.strip()), "")
    found = _BOUNDARY_LINE.fullmatch(first)
    if found is None:
        return None
    boundary = found.group(1)
    head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\r\n\r\n'
    # Surrogates are the bytes the parser could not decode; anything else is text.
    data = (head + payload).encode("utf-8", "surrogateescape")
    again = headers.RAW_PARSER.parsebytes(data)
    if not again.is_multipart():
        return None
    defects.append(f"body: multipart read with the boundary {boundary[:40]!r} its first line shows")
    return again


def _text(part: Message, defects: list[str]) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_param("charset")
    decoded = mime.decode_bytes(data, charset if isinstance(charset, str) else None)
    if decoded.defect:
        defects.append(f"body: {decoded.defect}")
    text = decoded.text.replace("\r\n", "\n").replace("\r", "\n")
    subtype = part.get_content_subtype()
    if subtype == "html":
        return mime.html_to_text(text)
    fmt = part.get_param("format")
    if subtype == "plain" and isinstance(fmt, str) and fmt.lower() == "flowed":
        delsp = part.get_param("delsp")
        text = unflow(text, delete_space=isinstance(delsp, str) and delsp.lower() == "yes")
    return text.strip()


def unflow(text: str, *, delete_space: bool = False) -> str:
    """Join RFC 3676 ``format=flowed`` lines: a line ending in a space continues.

    Space-stuffing (one leading space) is removed, quote depth (leading ``>``)
    is respected, and the signature separator ``-- `` is never joined.
    """
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        line = raw[depth:]
        if line.startswith(" "):
            line = line[1:]
        flowed = line.endswith(" ") and line != _SIGNATURE_SEPARATOR
        if pending is not None and depth != pending_depth:
            out.append(">" * pending_depth + pending)
            pending = None
        if flowed and delete_space:
            line = line[:-1]
        pending = line if pending is None else pending + line
        pending_depth = depth
        if not flowed:
            out.append(">" * depth + (" " if depth and pending else "") + pending)
            pending = None
    if pending is not None:
        out.append(">" * pending_depth + pending)
    return "\n".join(out)
