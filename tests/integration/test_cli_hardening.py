"""The ``jobsys`` command against real servers: schema, ids, dead letters, output."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobsys.store import Status
from jobsys.store.users import UserStore
from tests.conftest import Env
from tests.contract.base import dead, new_job
from tests.support.cli import jobsys, one_error_line

pytestmark = pytest.mark.integration


def test_an_unmigrated_database_says_to_run_db_upgrade(jobsys_env: Env, empty_db: str) -> None:
    # Given a database nobody migrated
    for args in (("jobs",), ("enqueue", "test.noop", "--user", "u1"), ("dlq", "list")):
        # When a command reads or writes jobs there
        done = jobsys(jobsys_env, *args, JOBSYS_DATABASE_URL=empty_db)
        # Then it says what to do, in one line
        line = one_error_line(done)
        assert 'relation "' in line and "run `jobsys db upgrade`" in line, line


def test_db_upgrade_of_a_missing_database_or_a_bogus_revision_is_one_line(
    jobsys_env: Env, empty_db: str
) -> None:
    missing = empty_db.rsplit("/", 1)[0] + "/jobsys_no_such_database"
    line = one_error_line(jobsys(jobsys_env, "db", "upgrade", JOBSYS_DATABASE_URL=missing))
    assert "cannot reach PostgreSQL" in line and "jobsys_no_such_database" in line

    done = jobsys(jobsys_env, "db", "upgrade", "--revision", "zzz", JOBSYS_DATABASE_URL=empty_db)
    line = one_error_line(done)
    assert "--revision" in line and "'zzz'" in line
    # and the schema was not touched: it still needs its first upgrade
    assert "run `jobsys db upgrade`" in one_error_line(
        jobsys(jobsys_env, "jobs", JOBSYS_DATABASE_URL=empty_db)
    )


def test_a_job_is_found_by_a_unique_prefix_of_its_id(jobsys_env: Env) -> None:
    # Given two jobs whose ids share their first eight digits, and a third
    store = jobsys_env.store
    a = uuid.UUID("01c5a47a-0000-4000-8000-000000000001")
    b = uuid.UUID("01c5a47a-1111-4000-8000-000000000002")
    for job_id in (a, b, uuid.UUID("7f000000-0000-4000-8000-000000000003")):
        store.insert(new_job(id=job_id))

    # When a job is asked for by the start of its id
    done = jobsys(jobsys_env, "job", "01c5a47a-0", "--json")
    # Then the one job it names is shown
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == str(a)
    assert json.loads(jobsys(jobsys_env, "job", "7F", "--json").stdout)["id"].startswith("7f")
    copied = jobsys(jobsys_env, "job", "01c5a47a-11…", "--json")  # as a narrow table cuts it
    assert json.loads(copied.stdout)["id"] == str(b), copied.stderr

    # And a prefix two jobs share, or none has, is one line saying so
    line = one_error_line(jobsys(jobsys_env, "job", "01c5a47a"))
    assert "2 jobs have an id starting with '01c5a47a'" in line
    assert "no job with id starting with 'abc'" in one_error_line(jobsys(jobsys_env, "job", "abc"))

    # And cancel takes a prefix too
    done = jobsys(jobsys_env, "cancel", "01c5a47a-1")
    assert (done.returncode, done.stdout.strip()) == (0, f"job {b}: cancelled"), done.stderr
    assert store.get_job(b).status is Status.CANCELLED
    assert store.get_job(a).status is Status.QUEUED


def test_a_retried_dead_letter_is_not_retried_again(jobsys_env: Env) -> None:
    # Given a dead letter retried once
    job, letter = dead(jobsys_env.store)
    first = jobsys(jobsys_env, "dlq", "retry", str(letter))
    assert first.returncode == 0, first.stderr

    # When it is retried again
    line = one_error_line(jobsys(jobsys_env, "dlq", "retry", str(letter)))

    # Then it says so, and the job was revived once
    assert f"retry dead letter {letter} again: it was retried at" in line
    audit = jobsys_env.count_rows("audit_events WHERE action = 'dlq.retry'")
    assert audit == 1
    assert jobsys_env.store.get_job(job.id).status is Status.QUEUED


def test_dlq_retry_with_redis_down_needs_only_postgresql(jobsys_env: Env) -> None:
    # Given a dead letter, and a broker nobody answers at (admission on)
    job, letter = dead(jobsys_env.store, user_id="u-down")
    down = "redis://:redis-secret@127.0.0.1:1/0"

    # When it is retried
    done = jobsys(jobsys_env, "dlq", "retry", str(letter), JOBSYS_BROKER_URL=down)

    # Then it succeeds: the job waits in the backlog, published once a node admits it
    assert done.returncode == 0, done
    assert done.stdout == f"requeued job {job.id}\n"
    assert jobsys_env.store.get_job(job.id).status is Status.QUEUED
    assert not jobsys_env.store.dispatched(job.id)


def test_dlq_retry_with_redis_down_is_one_line_and_loses_nothing(jobsys_env: Env) -> None:
    # Given a dead letter, a broker nobody answers at, and admission off
    job, letter = dead(jobsys_env.store, user_id="u-down")
    down = {"JOBSYS_ADMISSION": "false", "JOBSYS_BROKER_URL": "redis://:redis-secret@127.0.0.1:1/0"}

    # When it is retried
    done = jobsys(jobsys_env, "dlq", "retry", str(letter), **down)

    # Then one line says the job is queued but unpublished; the row is there for the sweeper
    line = one_error_line(done)
    assert f"job {job.id} is queued again but not published (cannot reach Redis" in line
    assert "redis-secret" not in done.stderr
    assert jobsys_env.store.get_job(job.id).status is Status.QUEUED


def test_enqueue_with_redis_down_says_the_job_is_stored_but_not_published(
    jobsys_env: Env,
) -> None:
    # Given jobs published at once (no admission) and a broker nobody answers at
    down = {"JOBSYS_ADMISSION": "false", "JOBSYS_BROKER_URL": "redis://127.0.0.1:1/0"}

    # When a job is enqueued
    done = jobsys(jobsys_env, "enqueue", "test.noop", "--user", "u1", **down)

    # Then one line says it is stored, to be published once Redis is back
    line = one_error_line(done)
    assert "the job is stored but not yet published (cannot reach Redis" in line
    (job,) = jobsys_env.store.list_jobs()
    assert (job.kind, job.status) == ("test.noop", Status.QUEUED)


def test_dlq_purge_asks_first_unless_yes(jobsys_env: Env) -> None:
    # Given a dead letter
    dead(jobsys_env.store)
    with jobsys_env.store.transaction() as conn:
        conn.exec_driver_sql("UPDATE dead_letters SET created_at = now() - interval '8 days'")

    # When the purge is not confirmed, nothing is deleted
    for answer in ("n\n", ""):  # refused, or no answer at all (stdin closed)
        done = jobsys(jobsys_env, "dlq", "purge", "--older-than", "7d", stdin=answer)
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1] == (
            "jobsys: error: nothing purged: not confirmed (--yes purges without asking)"
        )
        assert jobsys_env.count_rows("dead_letters") == 1

    # When it is confirmed, or --yes given, it is
    done = jobsys(jobsys_env, "dlq", "purge", "--older-than", "7d", stdin="y\n")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 1 dead letters"), done.stderr
    dead(jobsys_env.store)
    with jobsys_env.store.transaction() as conn:
        conn.exec_driver_sql("UPDATE dead_letters SET created_at = now() - interval '8 days'")
    done = jobsys(jobsys_env, "dlq", "purge", "--older-than", "7d", "--yes")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 1 dead letters"), done.stderr
    assert jobsys_env.count_rows("dead_letters") == 0


def test_text_from_data_is_printed_literally(jobsys_env: Env) -> None:
    # Given a user paused with a reason that holds markup and a terminal escape
    users = UserStore(jobsys_env.store)
    eve = users.add("eve@example.com")
    users.save_credential(eve.id, "google", token=b"x", refresh_token=None)
    users.park(eve.id, "google", "Eve [/bold] said \x1b[31mno\x1b[0m")

    # When users are listed
    done = jobsys(jobsys_env, "user", "list", COLUMNS="300")

    # Then the reason is shown as written, without the escape
    assert done.returncode == 0, done.stderr
    assert "paused: google: Eve [/bold] said [31mno[0m" in done.stdout
    assert "\x1b" not in done.stdout


def test_report_prints_a_display_name_with_markup_as_written(jobsys_env: Env) -> None:
    # Given a contact whose display name holds markup and a screen-clearing escape
    owner = UserStore(jobsys_env.store).add("owner@example.com")
    params = {"u": owner.id, "a": "eve@example.com", "n": "Eve [/bold] \x1b[2J"}
    with jobsys_env.store.transaction() as conn:
        conn.execute(
            sa.text("INSERT INTO contacts (user_id, addr, display_name) VALUES (:u, :a, :n)"),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO contact_scores (user_id, addr, score, rank, messages_out,"
                " messages_in, meetings, last_at) VALUES (:u, :a, 1.5, 1, 2, 3, 0, now())"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO digests (user_id, generated_at, body)"
                ' VALUES (:u, now(), \'{"subject": "[red]hi[/red]"}\')'
            ),
            params,
        )

    # When the report is printed
    done = jobsys(jobsys_env, "report", "owner@example.com", COLUMNS="300")

    # Then the name and the digest are shown as written, without the escape
    assert done.returncode == 0, done.stderr
    assert "Eve [/bold] [2J" in done.stdout
    assert "[red]hi[/red]" in done.stdout
    assert "\x1b" not in done.stdout


def test_sweep_prints_a_sentence(jobsys_env: Env) -> None:
    done = jobsys(jobsys_env, "sweep")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("swept: 0 dead worker(s), 0 expired lease(s)")


def test_job_modules_are_found_in_the_current_directory_and_a_missing_one_is_one_line(
    jobsys_env: Env, tmp_path: Path
) -> None:
    # Given a module of job kinds in the current directory, named by JOBSYS_IMPORTS
    # (the sync pipeline's jobsys.tasks left out)
    (tmp_path / "mykinds.py").write_text(
        "from jobsys import job\n\n@job(kind='my.noop')\ndef noop(ctx):\n    return None\n"
    )

    def ours(*args: str) -> subprocess.CompletedProcess[str]:
        return jobsys(jobsys_env, *args, cwd=tmp_path, JOBSYS_IMPORTS="mykinds")

    # When a job of it is enqueued, and a tick of the periodic syncs runs by hand
    enqueued = ours("enqueue", "my.noop", "--user", "u1")
    ticked = ours("schedule", "tick")

    # Then both work: the module is found, and a tick knows jobsys's own sync kind
    assert enqueued.returncode == 0, enqueued.stderr
    assert jobsys_env.store.get_job(uuid.UUID(enqueued.stdout.strip())).kind == "my.noop"
    assert ticked.returncode == 0 and ticked.stdout.startswith("0 users due"), ticked

    # And a module that cannot be imported is one line naming it, from any command
    for args in (("stats",), ("enqueue", "my.noop", "--user", "u1")):
        done = jobsys(jobsys_env, *args, cwd=tmp_path, JOBSYS_IMPORTS="missing_kinds")
        line = one_error_line(done)
        assert "cannot import job module: No module named 'missing_kinds'" in line, line
