"""Boundaries the code must keep: one module publishes, and the SQL follows the moves table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sqlalchemy as sa

import jobsys.engine
from jobsys.store import queries
from jobsys.store.status import MOVES

ENGINE = Path(jobsys.engine.__file__).parent
# The ways a job's message can reach the broker; only dispatch.py may use them.
PUBLISHING = {"send_task", "apply_async", "signature_from_request", "retry", "lpush", "rpush"}


def publishing_calls(path: Path) -> list[str]:
    """``name:line`` of every attribute call of a publishing method in a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{node.func.attr}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.lower() in PUBLISHING
    ]


def test_only_the_dispatch_module_publishes() -> None:
    # Given every engine module but dispatch.py
    modules = sorted(p for p in ENGINE.glob("*.py") if p.name != "dispatch.py")
    assert {p.name for p in modules} >= {"executor.py", "outcome.py", "sweeper.py", "enqueue.py"}

    # When their calls are read
    found = {p.name: publishing_calls(p) for p in modules}

    # Then none publishes a message itself (task.py defines apply_async, which is allowed)
    assert {name: calls for name, calls in found.items() if calls} == {}


def test_the_publishing_check_sees_dispatch_py_publish() -> None:
    # The check above must be able to fail: dispatch.py itself makes such calls.
    calls = {c.split(":")[0] for c in publishing_calls(ENGINE / "dispatch.py")}
    assert calls == {"send_task", "lpush", "rpush"}


def statements() -> dict[str, str]:
    """Every named statement in queries.py, whitespace collapsed."""
    out = {}
    for name, value in vars(queries).items():
        text = value.text if isinstance(value, sa.TextClause) else value
        if name.isupper() and isinstance(text, str):
            out[name] = " ".join(text.split())
    return out


def test_every_move_is_made_by_sql_that_uses_its_clauses() -> None:
    # Given the SQL statements of the store
    sql = statements()

    # Then each legal move has a statement holding its WHERE predicate and its new status
    # (an assignment, or a CASE that picks it)
    for name, move in MOVES.items():
        sets = (move.set(), f"THEN '{move.dst.value}'::job_status")
        makers = [
            statement
            for statement, text in sql.items()
            if move.where() in text and any(s in text for s in sets)
        ]
        assert makers, f"no statement in queries.py makes the move {name!r}"


def assigned_statuses(text: str) -> set[str]:
    """The statuses an UPDATE of jobs assigns in its SET clause (directly or by a CASE)."""
    clause = text.split("UPDATE jobs SET ", 1)[1].split(" WHERE ", 1)[0]
    direct = re.findall(r"(?<!WHEN )\bstatus = '(\w+)'", clause)
    picked = re.findall(r"THEN '(\w+)'::job_status", clause)
    return {*direct, *picked}


def test_every_status_the_sql_assigns_is_a_move() -> None:
    # Given the UPDATEs of jobs that assign a status
    sql = statements()
    updates = {n: t for n, t in sql.items() if "UPDATE jobs SET" in t and assigned_statuses(t)}
    assert set(updates) == {
        "CLAIM",
        "CLAIM_BY_USER",
        "SUCCEED",
        "REQUEUE",
        "POSTPONE",
        "CANCEL_RUNNING",
        "BURY",
        "BURY_QUEUED",
        "REQUEST_CANCEL",
        "REVIVE",
    }

    # Then each status it assigns is the destination of a move whose predicate it uses
    for name, text in updates.items():
        for status in assigned_statuses(text):
            moves = [m for m in MOVES.values() if m.dst.value == status and m.where() in text]
            assert moves, f"{name} moves jobs to {status!r} outside status.MOVES"


def test_the_sql_check_sees_a_move_outside_the_table() -> None:
    # The check above must be able to fail: a forged queued -> succeeded UPDATE.
    text = "UPDATE jobs SET status = 'succeeded' WHERE id = :id AND status = 'queued'"
    assert assigned_statuses(text) == {"succeeded"}
    assert not [m for m in MOVES.values() if m.dst.value == "succeeded" and m.where() in text]
