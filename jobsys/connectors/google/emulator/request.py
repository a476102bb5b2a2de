"""An HTTP request as the emulator's handlers see it (plain or one part of a batch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class ApiRequest:
    """Method, decoded path, query parameters, lower-cased headers and body."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def parse(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> ApiRequest:
        """Build a request from a request-line target such as ``/a/b?x=1``."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(method.upper(), unquote(parts.path), query, lowered, body)

    def arg(self, name: str, default: str = "") -> str:
        """Return the first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        """Return every value of a repeated query parameter."""
        return list(self.query.get(name, []))

    def flag(self, name: str) -> bool:
        """Return a boolean query parameter (``true`` / ``false``)."""
        return self.arg(name, "false").lower() == "true"

    def int_arg(self, name: str, default: int, maximum: int) -> int:
        """Return an integer parameter clamped to 1..maximum.

        Raises:
            ValueError: the value is not an integer.
        """
        raw = self.arg(name)
        value = int(raw) if raw else default
        return max(1, min(value, maximum))

    def bearer(self) -> str:
        """Return the bearer token of the Authorization header, or ``""``."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
