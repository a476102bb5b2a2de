"""One user's Gmail mailbox: messages, labels and the history log.

Every change advances the mailbox ``historyId`` and appends a history record,
like Gmail. History older than ``retained_from`` is forgotten: asking for it
is answered 404, which is how Gmail says "cursor expired, do a full sync".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from jobsys.connectors.google.emulator.facts import MessageFacts

SYSTEM_LABELS = (
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_UPDATES",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_FORUMS",
)
USER_LABELS = {"Label_1": "Projects"}


@dataclass(frozen=True)
class StoredMessage:
    """A message as the mailbox keeps it."""

    id: str
    thread_id: str
    raw: bytes
    labels: tuple[str, ...]
    internal_date_ms: int
    history_id: int
    facts: MessageFacts
    snippet: str = ""


@dataclass(frozen=True)
class HistoryRecord:
    """One history entry: a message added or deleted at ``id``."""

    id: int
    kind: str  # "messageAdded" or "messageDeleted"
    message_id: str
    thread_id: str
    labels: tuple[str, ...]


@dataclass
class Mailbox:
    """Messages and history of one user. Not thread-safe: the world holds the lock."""

    owner: str
    history_id: int = 1000
    retained_from: int = 1000
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    _counter: int = 0
    _by_message_id: dict[str, str] = field(default_factory=dict)

    def add(
        self,
        raw: bytes,
        labels: tuple[str, ...],
        internal_date: datetime,
        facts: MessageFacts,
        *,
        record: bool = True,
    ) -> StoredMessage:
        """Store a message, thread it by References/In-Reply-To, and log it.

        Parameters:
            raw: the RFC 822 bytes, kept byte for byte.
            labels: Gmail label ids.
            internal_date: when Gmail received it.
            facts: the ground truth of the message.
            record: append a ``messageAdded`` history record (False while seeding).

        Returns:
            The stored message.
        """
        self._counter += 1
        digest = hashlib.sha256(f"{self.owner}:{self._counter}".encode()).hexdigest()
        gmail_id = format(int(digest[:15], 16) | (1 << 60), "x")
        self.history_id += 1
        stored = StoredMessage(
            id=gmail_id,
            thread_id=self._thread_for(facts) or gmail_id,
            raw=raw,
            labels=tuple(sorted(set(labels))),
            internal_date_ms=int(internal_date.timestamp() * 1000),
            history_id=self.history_id,
            facts=facts,
            snippet=_snippet(facts.subject),
        )
        self.messages[gmail_id] = stored
        if facts.message_id:
            self._by_message_id.setdefault(facts.message_id, gmail_id)
        if record:
            self._log("messageAdded", stored)
        else:
            self.retained_from = self.history_id
        return stored

    def delete(self, gmail_id: str) -> StoredMessage | None:
        """Remove a message and log ``messageDeleted``; None if it does not exist."""
        stored = self.messages.pop(gmail_id, None)
        if stored is not None:
            self.history_id += 1
            self._log("messageDeleted", stored)
        return stored

    def expire_history(self) -> None:
        """Forget all history: every older ``startHistoryId`` now answers 404."""
        self.history.clear()
        self.retained_from = self.history_id

    def history_since(self, start: int) -> list[HistoryRecord] | None:
        """Return records after ``start``, or None when ``start`` is no longer retained."""
        if start < self.retained_from:
            return None
        return [r for r in self.history if r.id > start]

    def listing(self, labels: set[str], include_spam_trash: bool) -> list[StoredMessage]:
        """Messages carrying every label in ``labels``, newest first."""
        hidden = set() if include_spam_trash else {"SPAM", "TRASH"}
        chosen = [
            m
            for m in self.messages.values()
            if labels.issubset(m.labels) and not (hidden & set(m.labels) - labels)
        ]
        return sorted(chosen, key=lambda m: (-m.internal_date_ms, m.id))

    def _thread_for(self, facts: MessageFacts) -> str | None:
        for ref in (facts.in_reply_to, *reversed(facts.references)):
            parent = self.messages.get(self._by_message_id.get(ref, ""))
            if parent is not None:
                return parent.thread_id
        return None

    def _log(self, kind: str, stored: StoredMessage) -> None:
        self.history.append(
            HistoryRecord(self.history_id, kind, stored.id, stored.thread_id, stored.labels)
        )


def _snippet(subject: str) -> str:
    return re.sub(r"\s+", " ", subject)[:100]
