"""SQL for the sync pipeline: runs, cursors, raw and normalized data, derived data.

Every write is an upsert by natural key (or a replace of a user's derived
rows), so re-running any step changes nothing. Cursors are written in the same
transaction as the raw rows they cover.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from jobsys.store import queries as q
from jobsys.store.gateway import Store
from jobsys.store.models import (
    ContactRow,
    ContactScoreRow,
    DigestRow,
    EventRow,
    InteractionRow,
    MessageRow,
    RawEventRow,
    RawMessageRow,
)
from jobsys.store.runs import RunSql


class SyncStore(RunSql):
    """Gateway for the pipeline's tables, on the engines of :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._store.transaction() as conn:
            yield conn

    def jobs_of_run(self, user_id: str, run_id: uuid.UUID) -> list[dict[str, Any]]:
        """Kind, status, id and last error's reason of every job of the user whose
        payload names the run.

        Served by ``jobs_run_idx`` (user, payload's run id) in the user's partition.
        """
        with self._tx() as conn:
            rows = conn.execute(q.JOBS_OF_RUN, {"u": user_id, "r": str(run_id)}).mappings()
            return [dict(r) for r in rows]

    # -- cursors and raw data -------------------------------------------------

    def cursor(self, user_id: str, source: str) -> str | None:
        with self._tx() as conn:
            return conn.execute(
                sa.text("SELECT cursor FROM sync_cursors WHERE user_id = :u AND source = :s"),
                {"u": user_id, "s": source},
            ).scalar()

    def known_message_ids(self, user_id: str) -> set[str]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.text("SELECT gmail_id FROM raw_messages WHERE user_id = :u"), {"u": user_id}
            )
            return {r[0] for r in rows}

    def save_raw_messages(
        self,
        user_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        deleted: Sequence[str] = (),
        keep_only: set[str] | None = None,
        cursor: str | None = None,
    ) -> None:
        """Upsert raw messages; drop deleted ones (or all but ``keep_only``); advance the cursor.

        One transaction: the cursor never gets ahead of the data it covers.
        """
        with self._tx() as conn:
            if messages:
                rows = [
                    {**m, "user_id": user_id, "label_ids": list(m["label_ids"])} for m in messages
                ]
                stmt = insert(RawMessageRow).values(rows)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_id", "gmail_id"],
                        set_={
                            "raw": stmt.excluded.raw,
                            "label_ids": stmt.excluded.label_ids,
                            "thread_id": stmt.excluded.thread_id,
                            "fetched_at": sa.func.now(),
                            "normalized_at": None,
                        },
                    )
                )
            gone = list(deleted)
            if keep_only is not None:
                gone += [
                    i
                    for i in self._ids(conn, "raw_messages", "gmail_id", user_id)
                    if i not in keep_only
                ]
            if gone:
                self._forget_messages(conn, user_id, gone)
            if cursor is not None:
                _set_cursor(conn, user_id, "gmail", cursor)

    def save_raw_events(
        self,
        user_id: str,
        events: Sequence[dict[str, Any]],
        *,
        keep_only: set[str] | None = None,
        cursor: str | None = None,
    ) -> None:
        """Upsert raw events (cancellations included) and advance the sync token."""
        with self._tx() as conn:
            if events:
                rows = [{"user_id": user_id, "event_id": e["id"], "body": e} for e in events]
                stmt = insert(RawEventRow).values(rows)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["user_id", "event_id"],
                        set_={
                            "body": stmt.excluded.body,
                            "fetched_at": sa.func.now(),
                            "normalized_at": None,
                        },
                    )
                )
            if keep_only is not None:
                gone = [
                    i
                    for i in self._ids(conn, "raw_events", "event_id", user_id)
                    if i not in keep_only
                ]
                for table in ("raw_events", "events"):
                    conn.execute(
                        sa.text(f"DELETE FROM {table} WHERE user_id = :u AND event_id = ANY(:ids)"),
                        {"u": user_id, "ids": gone},
                    )
            if cursor is not None:
                _set_cursor(conn, user_id, "calendar", cursor)

    def _ids(self, conn: sa.Connection, table: str, column: str, user_id: str) -> list[str]:
        rows = conn.execute(
            sa.text(f"SELECT {column} FROM {table} WHERE user_id = :u"), {"u": user_id}
        )
        return [r[0] for r in rows]

    def _forget_messages(self, conn: sa.Connection, user_id: str, ids: list[str]) -> None:
        for table in ("raw_messages", "messages"):
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE user_id = :u AND gmail_id = ANY(:ids)"),
                {"u": user_id, "ids": ids},
            )

    # -- normalization ------------------------------------------------------

    def pending(self, user_id: str) -> tuple[list[str], list[str]]:
        """Ids of raw messages and events not normalized since they were fetched."""
        with self._tx() as conn:
            msgs = conn.execute(
                sa.text(
                    "SELECT gmail_id FROM raw_messages WHERE user_id = :u"
                    " AND normalized_at IS NULL ORDER BY gmail_id"
                ),
                {"u": user_id},
            )
            evts = conn.execute(
                sa.text(
                    "SELECT event_id FROM raw_events WHERE user_id = :u"
                    " AND normalized_at IS NULL ORDER BY event_id"
                ),
                {"u": user_id},
            )
            return [r[0] for r in msgs], [r[0] for r in evts]

    def raw_messages(self, user_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT gmail_id, thread_id, label_ids, raw, internal_date FROM raw_messages"
                    " WHERE user_id = :u AND gmail_id = ANY(:ids)"
                ),
                {"u": user_id, "ids": list(ids)},
            ).mappings()
            return [{**r, "raw": bytes(r["raw"])} for r in rows]

    def raw_events(self, user_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.text("SELECT body FROM raw_events WHERE user_id = :u AND event_id = ANY(:ids)"),
                {"u": user_id, "ids": list(ids)},
            )
            return [r[0] for r in rows]

    def save_normalized(
        self,
        user_id: str,
        *,
        messages: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
        message_ids: Sequence[str],
        event_ids: Sequence[str],
    ) -> None:
        """Upsert normalized rows and mark their raw rows done, in one transaction."""
        with self._tx() as conn:
            _upsert_many(
                conn,
                MessageRow,
                [{**m, "user_id": user_id} for m in messages],
                ["user_id", "gmail_id"],
            )
            _upsert_many(
                conn, EventRow, [{**e, "user_id": user_id} for e in events], ["user_id", "event_id"]
            )
            conn.execute(
                sa.text(
                    "UPDATE raw_messages SET normalized_at = now()"
                    " WHERE user_id = :u AND gmail_id = ANY(:ids)"
                ),
                {"u": user_id, "ids": list(message_ids)},
            )
            conn.execute(
                sa.text(
                    "UPDATE raw_events SET normalized_at = now()"
                    " WHERE user_id = :u AND event_id = ANY(:ids)"
                ),
                {"u": user_id, "ids": list(event_ids)},
            )

    def messages(self, user_id: str) -> list[dict[str, Any]]:
        return self._all(MessageRow, user_id, "gmail_id")

    def events(self, user_id: str) -> list[dict[str, Any]]:
        return self._all(EventRow, user_id, "event_id")

    def _all(self, model: Any, user_id: str, order: str) -> list[dict[str, Any]]:
        table = model.__table__
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.user_id == user_id).order_by(table.c[order])
            ).mappings()
            return [dict(r) for r in rows]

    # -- derived data ---------------------------------------------------------

    def save_extraction(
        self,
        user_id: str,
        contacts: Sequence[dict[str, Any]],
        interactions: Sequence[dict[str, Any]],
    ) -> None:
        """Replace the user's contacts and interactions with a fresh extraction."""
        with self._tx() as conn:
            for table in ("interactions", "contacts"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE user_id = :u"), {"u": user_id})
            _insert(conn, ContactRow, [{**c, "user_id": user_id} for c in contacts])
            _insert(conn, InteractionRow, [{**i, "user_id": user_id} for i in interactions])

    def interactions(self, user_id: str) -> list[dict[str, Any]]:
        return self._all(InteractionRow, user_id, "at")

    def contacts(self, user_id: str) -> list[dict[str, Any]]:
        return self._all(ContactRow, user_id, "addr")

    def save_scores(
        self, user_id: str, scores: Sequence[dict[str, Any]], digest: dict[str, Any]
    ) -> None:
        with self._tx() as conn:
            conn.execute(sa.text("DELETE FROM contact_scores WHERE user_id = :u"), {"u": user_id})
            _insert(conn, ContactScoreRow, [{**s, "user_id": user_id} for s in scores])
            _upsert(
                conn,
                DigestRow,
                [{"user_id": user_id, "generated_at": sa.func.now(), "body": digest}],
                ["user_id"],
            )

    def report(self, user_id: str, *, top: int = 10) -> dict[str, Any]:
        with self._tx() as conn:
            scores = conn.execute(
                sa.text(
                    "SELECT s.*, c.display_name FROM contact_scores s LEFT JOIN contacts c"
                    " USING (user_id, addr) WHERE s.user_id = :u ORDER BY rank LIMIT :n"
                ),
                {"u": user_id, "n": top},
            ).mappings()
            digest = conn.execute(
                sa.text("SELECT body FROM digests WHERE user_id = :u"), {"u": user_id}
            ).scalar()
            return {"top_contacts": [dict(s) for s in scores], "digest": digest}


def _set_cursor(conn: sa.Connection, user_id: str, source: str, cursor: str) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO sync_cursors (user_id, source, cursor) VALUES (:u, :s, :c)"
            " ON CONFLICT (user_id, source) DO UPDATE SET cursor = EXCLUDED.cursor,"
            " updated_at = now()"
        ),
        {"u": user_id, "s": source, "c": cursor},
    )


def _insert(conn: sa.Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(model).values(rows))


def _upsert(conn: sa.Connection, model: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    stmt = insert(model).values(rows)
    columns = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=columns))


def phase_stats(store: Store, run_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Per job kind of the given runs: jobs by status, attempts, first start, last finish."""
    sql = sa.text(
        """
SELECT kind, count(*) AS jobs,
  count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
  count(*) FILTER (WHERE status = 'dead') AS dead,
  sum(GREATEST(attempt - 1, 0)) AS retries,
  min(started_at) AS first_start, max(finished_at) AS last_finish
FROM jobs WHERE payload ->> 'run_id' = ANY(:runs) GROUP BY kind ORDER BY kind
"""
    )
    with store.transaction() as conn:
        rows = conn.execute(sql, {"runs": [str(r) for r in run_ids]}).mappings()
        return [dict(r) for r in rows]


def run_states(store: Store, run_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    with store.transaction() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, user_id, status, steps, error FROM pipeline_runs WHERE id = ANY(:ids)"
            ),
            {"ids": list(run_ids)},
        ).mappings()
        return [dict(r) for r in rows]


def _upsert_many(
    conn: sa.Connection, model: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """``_upsert`` as an executemany: one cached statement, batched by insertmanyvalues.

    ``insert().values(rows)`` compiles a new statement of rows x columns parameters
    on every call; this form is compiled once. Rows must hold plain values.
    """
    if not rows:
        return
    stmt = insert(model)
    columns = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=columns), rows)
