"""The hot path's prepared statements: numbered parameters, run by name."""

from __future__ import annotations

import sqlalchemy as sa

from jobsys.store.fastpath import Prepared


def test_a_prepared_statement_numbers_each_parameter_once_in_order_of_first_use() -> None:
    # Given a statement that uses one parameter twice and a literal percent sign
    statement = sa.text("UPDATE t SET a = :a, b = :b WHERE k = :a AND name LIKE 'x%' AND c = :c")

    # When it is made a prepared statement
    prepared = Prepared.of("jobsys_t", statement)

    # Then PostgreSQL gets $1..$3 (the repeated one reused) and the literal as written,
    # and the EXECUTE passes the parameters by name in that order
    assert prepared.prepare == (
        "PREPARE jobsys_t AS UPDATE t SET a = $1, b = $2 WHERE k = $1 AND name LIKE 'x%' AND c = $3"
    )
    assert prepared.execute == "EXECUTE jobsys_t (%(a)s, %(b)s, %(c)s)"
