"""Users and their provider credentials (tokens stored encrypted; see ``tokens.py``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobsys.errors import DuplicateUserError, JobNotFoundError
from jobsys.store.gateway import Store

_USER_COLUMNS = "id, email, region, created_at, paused, paused_reason, sync_interval, next_sync_at"


@dataclasses.dataclass(frozen=True, kw_only=True)
class User:
    id: str
    email: str
    region: str
    created_at: datetime
    paused: bool
    paused_reason: str | None
    sync_interval: float | None  # None: the settings' JOBSYS_SYNC_INTERVAL
    next_sync_at: datetime

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["next_sync_at"] = self.next_sync_at.isoformat()
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Credential:
    """A stored credential; ``token`` and ``refresh_token`` are ciphertext."""

    user_id: str
    provider: str
    token: bytes
    refresh_token: bytes | None
    expiry: datetime | None
    status: str
    status_reason: str | None

    def __repr__(self) -> str:  # ciphertext is not for logs either
        who = f"user_id={self.user_id!r}, provider={self.provider!r}"
        return f"Credential({who}, status={self.status!r})"


class UserStore:
    """SQL for users and credentials, on the same engines as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, email: str, *, region: str = "default") -> User:
        """Raises DuplicateUserError, ValueError for a malformed email."""
        email = email.strip().lower()
        if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
            raise ValueError(f"email {email!r} is not an address like name@example.com")
        sql = sa.text(
            f"INSERT INTO users (id, email, region) VALUES (:id, :email, :region)"
            f" ON CONFLICT (email) DO NOTHING RETURNING {_USER_COLUMNS}"
        )
        with self._store.transaction() as conn:
            row = (
                conn.execute(
                    sql, {"id": f"u-{uuid.uuid4().hex[:12]}", "email": email, "region": region}
                )
                .mappings()
                .first()
            )
        if row is None:
            raise DuplicateUserError(email)
        return User(**row)

    def get(self, ident: str) -> User:
        """By id or email. Raises JobNotFoundError."""
        sql = sa.text(f"SELECT {_USER_COLUMNS} FROM users WHERE id = :v OR email = lower(:v)")
        with self._store.transaction() as conn:
            row = conn.execute(sql, {"v": ident}).mappings().first()
        if row is None:
            raise JobNotFoundError("user", ident)
        return User(**row)

    def list(self) -> list[User]:
        with self._store.transaction() as conn:
            rows = conn.execute(sa.text(f"SELECT {_USER_COLUMNS} FROM users ORDER BY email"))
            return [User(**r) for r in rows.mappings()]

    def save_credential(
        self,
        user_id: str,
        provider: str,
        *,
        token: bytes,
        refresh_token: bytes | None,
        expiry: datetime | None = None,
    ) -> None:
        sql = sa.text(
            """
INSERT INTO credentials (user_id, provider, token, refresh_token, expiry, status, updated_at)
VALUES (:user_id, :provider, :token, :refresh, :expiry, 'valid', now())
ON CONFLICT (user_id, provider) DO UPDATE SET token = EXCLUDED.token,
  refresh_token = COALESCE(EXCLUDED.refresh_token, credentials.refresh_token),
  expiry = EXCLUDED.expiry, status = 'valid', status_reason = NULL, updated_at = now()
"""
        )
        params = {
            "user_id": user_id,
            "provider": provider,
            "token": token,
            "refresh": refresh_token,
            "expiry": expiry,
        }
        with self._store.transaction() as conn:
            conn.execute(sql, params)

    def credential(self, user_id: str, provider: str) -> Credential:
        sql = sa.text(
            "SELECT user_id, provider, token, refresh_token, expiry, status, status_reason"
            " FROM credentials WHERE user_id = :u AND provider = :p"
        )
        with self._store.transaction() as conn:
            row = conn.execute(sql, {"u": user_id, "p": provider}).mappings().first()
        if row is None:
            raise JobNotFoundError(f"{provider} credential for user", user_id)
        values = dict(row)
        values["token"] = bytes(values["token"])
        if values["refresh_token"] is not None:
            values["refresh_token"] = bytes(values["refresh_token"])
        return Credential(**values)

    def rewrap_credentials(self, rewrap: Callable[[str, str, bytes], bytes | None]) -> int:
        """Replace every stored token by ``rewrap(user_id, provider, token)`` where that
        is not None, in one transaction (all or nothing); returns how many it replaced.

        For key rotation: ``rewrap`` re-encrypts a token under the newest key.
        """
        select = sa.text(
            "SELECT user_id, provider, token, refresh_token FROM credentials"
            " ORDER BY user_id, provider FOR UPDATE"
        )
        update = sa.text(
            "UPDATE credentials SET token = :token, refresh_token = :refresh"
            " WHERE user_id = :u AND provider = :p"
        )
        replaced = 0
        with self._store.transaction() as conn:
            for row in conn.execute(select).mappings().all():
                u, p = row["user_id"], row["provider"]
                token = rewrap(u, p, bytes(row["token"]))
                old_refresh = row["refresh_token"]
                refresh = rewrap(u, p, bytes(old_refresh)) if old_refresh is not None else None
                replaced += (token is not None) + (refresh is not None)
                if token is not None or refresh is not None:
                    values = {
                        "token": token or bytes(row["token"]),
                        "refresh": refresh or old_refresh,
                    }
                    conn.execute(update, {**values, "u": u, "p": p})
        return replaced

    def park(self, user_id: str, provider: str, reason: str, *, invalidate: bool = True) -> None:
        """Pause the user and (``invalidate``) mark the credential invalid, with an audit event.

        Auth failures invalidate; a credential that is missing or that the key cannot
        decrypt does not (new tokens, or the right key, resume the user).
        """
        with self._store.transaction() as conn:
            if invalidate:
                conn.execute(
                    sa.text(
                        "UPDATE credentials SET status = 'invalid', status_reason = :r,"
                        " updated_at = now() WHERE user_id = :u AND provider = :p"
                    ),
                    {"u": user_id, "p": provider, "r": reason},
                )
            conn.execute(
                sa.text("UPDATE users SET paused = true, paused_reason = :r WHERE id = :u"),
                {"u": user_id, "r": f"{provider}: {reason}"},
            )
        self._store.audit(
            "jobsys",
            "user.parked",
            user_id=user_id,
            detail={"provider": provider, "reason": reason},
        )

    def unpark(self, user_id: str) -> None:
        """Resume a parked user (new credentials were stored), with an audit event."""
        with self._store.transaction() as conn:
            conn.execute(
                sa.text("UPDATE users SET paused = false, paused_reason = NULL WHERE id = :u"),
                {"u": user_id},
            )
        self._store.audit("jobsys", "user.unparked", user_id=user_id, detail={})
