"""The emulator's state: users, their tokens, mailboxes and calendars.

Everything is generated from ``(seed, email)`` so two emulators with one seed
hold identical data. One lock guards all state; handlers are short.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jobsys.connectors.google.emulator.calendar_data import generate_events
from jobsys.connectors.google.emulator.events import EventStore
from jobsys.connectors.google.emulator.facts import Person, describe_raw
from jobsys.connectors.google.emulator.mailbox import Mailbox, StoredMessage
from jobsys.connectors.google.emulator.mime import generate_mailbox, make_contacts
from jobsys.connectors.google.emulator.push import PushHub
from jobsys.connectors.google.emulator.settings import EmulatorConfig
from jobsys.connectors.google.emulator.truth import (
    TruthEvent,
    TruthMessage,
    event_truth,
    message_truth,
)


@dataclass(frozen=True)
class UserCredentials:
    """What provisioning needs to know about one emulated user."""

    email: str
    name: str
    access_token: str
    refresh_token: str


@dataclass
class UserState:
    """One user: identity, tokens and data."""

    email: str
    name: str
    refresh_token: str
    mailbox: Mailbox
    calendar: EventStore
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False
    refreshes: int = 0
    hub: PushHub | None = None  # the world's, for users.watch and users.stop


class World:
    """All users of one emulator.

    Parameters:
        config: sizes and seed.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        # Fixed once: users added later are dated like the first ones.
        self.anchor = config.anchor or datetime.now(UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        self.lock = threading.RLock()
        self._users: dict[str, UserState] = {}
        self._tokens: dict[str, str] = {}
        self.push = PushHub()
        for i in range(config.users):
            self.add_user(f"user{i + 1}@{config.domain}")

    def add_user(self, email: str, name: str | None = None) -> UserCredentials:
        """Provision a user with generated mail and events (deterministic per seed and email).

        Raises:
            ValueError: the user exists already.

        Returns:
            The user's address and tokens.
        """
        with self.lock:
            if email in self._users:
                raise ValueError(f"user {email} exists already")
            rng = random.Random(f"{self.config.seed}:{email}")
            owner = Person(name or email.split("@")[0].title(), email)
            contacts = make_contacts(rng)
            user = UserState(
                email, owner.name, self._secret("refresh", email), Mailbox(email), EventStore(email)
            )
            count = self.config.messages_per_user
            for msg in generate_mailbox(rng, owner, contacts, count, self.anchor):
                user.mailbox.add(msg.raw, msg.labels, msg.internal_date, msg.facts, record=False)
            start = self.anchor - timedelta(days=28)
            for event in generate_events(rng, owner, contacts, self.config.events_per_user, start):
                user.calendar.put(event)
            user.hub = self.push
            self._users[email] = user
            self._issue(user)
            return self._credentials(user)

    def users(self) -> list[UserCredentials]:
        """Return every user with a currently valid access token."""
        with self.lock:
            return [self._credentials(u) for u in self._users.values()]

    def user(self, email: str) -> UserState:
        """Return a user's state (hold :attr:`lock` while using it).

        Raises:
            KeyError: no such user.
        """
        return self._users[email]

    def authenticate(self, token: str) -> UserState | None:
        """Return the user a bearer token belongs to; None if unknown or revoked."""
        with self.lock:
            user = self._users.get(self._tokens.get(token, ""))
            return None if user is None or user.revoked else user

    def refresh(self, refresh_token: str) -> str | None:
        """Issue a new access token for ``refresh_token``; None if unknown or revoked."""
        with self.lock:
            for user in self._users.values():
                if user.refresh_token == refresh_token and not user.revoked:
                    return self._issue(user)
            return None

    def revoke(self, email: str) -> None:
        """Revoke every token of ``email``: calls answer 401 and refresh ``invalid_grant``."""
        with self.lock:
            self._users[email].revoked = True

    def expire_access_tokens(self, email: str) -> None:
        """Invalidate the user's access tokens (not the refresh token), as expiry does."""
        with self.lock:
            user = self._users[email]
            for token in user.access_tokens:
                self._tokens.pop(token, None)
            user.access_tokens.clear()

    def add_message(
        self, email: str, raw: bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")
    ) -> StoredMessage:
        """Deliver raw RFC 822 bytes to a mailbox (kept byte for byte); advances historyId."""
        with self.lock:
            now = datetime.now(UTC).replace(microsecond=0)
            box = self._users[email].mailbox
            stored = box.add(raw, labels, now, describe_raw(raw, now))
            self.push.changed(email, box.history_id)
            return stored

    def delete_message(self, email: str, gmail_id: str) -> bool:
        """Delete a message permanently; False if it did not exist."""
        with self.lock:
            box = self._users[email].mailbox
            gone = box.delete(gmail_id) is not None
            if gone:
                self.push.changed(email, box.history_id)
            return gone

    def put_event(self, email: str, event: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an event in the user's primary calendar."""
        with self.lock:
            return self._users[email].calendar.put(event)

    def cancel_event(self, email: str, event_id: str) -> bool:
        """Cancel an event; False if it did not exist."""
        with self.lock:
            return self._users[email].calendar.cancel(event_id) is not None

    def expire_cursors(self, email: str | None = None) -> None:
        """Make older history ids answer 404 and issued sync tokens 410 (one user or all)."""
        with self.lock:
            for user in self._users.values():
                if email is None or user.email == email:
                    user.mailbox.expire_history()
                    user.calendar.expire_tokens()

    def truth_messages(self, email: str) -> list[TruthMessage]:
        """Return the ground truth of every message in the mailbox, newest first."""
        with self.lock:
            listing = self._users[email].mailbox.listing(set(), include_spam_trash=True)
            return [message_truth(m) for m in listing]

    def truth_events(self, email: str) -> list[TruthEvent]:
        """Return the ground truth of every event (cancelled ones included), by id."""
        with self.lock:
            events = self._users[email].calendar.events
            return [event_truth(events[k]) for k in sorted(events)]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the world lock (for handlers reading several structures)."""
        with self.lock:
            yield

    def _secret(self, kind: str, email: str, n: int = 0) -> str:
        digest = hashlib.sha256(f"{self.config.seed}:{kind}:{email}:{n}".encode()).hexdigest()
        return ("ya29.emu-" if kind == "access" else "1//emu-") + digest[:32]

    def _issue(self, user: UserState) -> str:
        token = self._secret("access", user.email, user.refreshes)
        user.refreshes += 1
        user.access_tokens.append(token)
        self._tokens[token] = user.email
        return token

    def _credentials(self, user: UserState) -> UserCredentials:
        access = user.access_tokens[-1] if user.access_tokens else ""
        return UserCredentials(user.email, user.name, access, user.refresh_token)
