"""Bearer tokens of the HTTP API: an admin's, or one user's. Only a digest is stored."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobsys.errors import JobNotFoundError
from jobsys.store.gateway import Store

PREFIX = "jobsys_"
_COLUMNS = "id, name, user_id, admin, created_at, revoked_at"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiToken:
    id: int
    name: str
    user_id: str | None  # None: an admin token
    admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        """How audit events name the token (never its secret)."""
        return f"token:{self.id}:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["revoked_at"] = self.revoked_at.isoformat() if self.revoked_at else None
        return data


def digest(secret: str) -> bytes:
    # The secret holds 256 random bits: a plain hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).digest()


class TokenStore:
    """SQL for API tokens, on the same engines as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, *, name: str, user_id: str | None) -> tuple[ApiToken, str]:
        """A new token and its secret, which is shown once and never stored."""
        secret = PREFIX + secrets.token_urlsafe(32)
        sql = sa.text(
            "INSERT INTO api_tokens (digest, name, user_id, admin)"
            f" VALUES (:digest, :name, :user_id, :admin) RETURNING {_COLUMNS}"
        )
        params = {"digest": digest(secret), "name": name, "user_id": user_id}
        with self._store.transaction() as conn:
            row = conn.execute(sql, {**params, "admin": user_id is None}).mappings().one()
        return ApiToken(**row), secret

    def authenticate(self, secret: str) -> ApiToken | None:
        """The live token with that secret, or None."""
        sql = sa.text(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE digest = :digest AND revoked_at IS NULL"
        )
        with self._store.transaction() as conn:
            row = conn.execute(sql, {"digest": digest(secret)}).mappings().first()
        return ApiToken(**row) if row else None

    def list(self) -> list[ApiToken]:
        sql = sa.text(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id")
        with self._store.transaction() as conn:
            return [ApiToken(**r) for r in conn.execute(sql).mappings()]

    def revoke(self, token_id: int) -> ApiToken:
        """Raises JobNotFoundError when no token has that id; revoking twice is a no-op."""
        sql = sa.text(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = :id RETURNING {_COLUMNS}"
        )
        with self._store.transaction() as conn:
            row = conn.execute(sql, {"id": token_id}).mappings().first()
        if row is None:
            raise JobNotFoundError("API token", token_id)
        return ApiToken(**row)
