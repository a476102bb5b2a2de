"""A psycopg2 connection that records every query it sends (one round trip each).

Pass :class:`Recording` as a :class:`~jobsys.store.Store`'s ``connection_factory``;
``Recording.sent`` holds the queries of every such connection, oldest first.
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions


class _RecordingCursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Any = None) -> Any:
        Recording.sent.append(query if isinstance(query, bytes) else str(query).encode())
        return super().execute(query, vars)


class Recording(psycopg2.extensions.connection):
    sent: list[bytes] = []  # noqa: RUF012  (shared by every connection of one test)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cursor_factory", _RecordingCursor)
        return super().cursor(*args, **kwargs)


def verbs() -> list[str]:
    """The first word of each statement run: ``["UPDATE", "WITH"]``.

    A prepared statement counts where it is executed, by its own first word (its
    PREPARE is sent once per connection, ahead of the first EXECUTE).
    """
    prepared: dict[str, str] = {}
    found = []
    for query in Recording.sent:
        words = query.decode().split()
        verb = words[0].upper()
        if verb == "PREPARE":
            prepared[words[1]] = words[words.index("AS") + 1].upper()
        else:
            found.append(prepared.get(words[1], verb) if verb == "EXECUTE" else verb)
    return found
