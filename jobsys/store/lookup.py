"""Rows found by the start of their id, as tables show ids cut short (``01c5a47a``)."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from jobsys.store.gateway import Store

_HEX = re.compile(r"^[0-9a-f]{1,32}$")
# Every UUID starting with a prefix lies between the prefix padded with 0s and with fs:
# a range scan on the primary key, however many jobs the table holds.
_JOB_IDS = sa.text("SELECT id FROM jobs WHERE id BETWEEN :lo AND :hi ORDER BY id LIMIT 2")
_COUNT = sa.text("SELECT count(*) FROM jobs WHERE id BETWEEN :lo AND :hi")


def id_prefix(text: str) -> str | None:
    """The hex digits of a job id's start (dashes dropped), or None if it cannot be one."""
    # A table cell cut short ends in an ellipsis, copied along with the id.
    digits = text.strip().rstrip("…").lower().replace("-", "")
    return digits if _HEX.match(digits) else None


class IdLookup:
    """Finds jobs by a prefix of their id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def jobs(self, prefix: str) -> tuple[list[uuid.UUID], int]:
        """Up to two job ids starting with ``prefix`` (hex digits) and how many there are.

        Raises:
            ValueError: ``prefix`` is not hex digits.
        """
        digits = id_prefix(prefix)
        if digits is None:
            raise ValueError(f"{prefix!r} is not the start of a job id (hex digits)")
        bounds = {
            "lo": uuid.UUID(digits.ljust(32, "0")),
            "hi": uuid.UUID(digits.ljust(32, "f")),
        }
        with self._store.transaction() as conn:
            ids = [r[0] for r in conn.execute(_JOB_IDS, bounds)]
            count = len(ids) if len(ids) < 2 else int(conn.execute(_COUNT, bounds).scalar_one())
        return ids, count
