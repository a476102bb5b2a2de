"""Per-user quotas through the public API, the CLI and a real worker."""

from __future__ import annotations

import json

import pytest

from jobsys import enqueue, enqueue_many
from jobsys.errors import QuotaExceeded
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def jobs_of(env: Env, user: str) -> int:
    with env.store.durable.connect() as conn:
        sql = "SELECT count(*) FROM jobs WHERE user_id = %(u)s"
        return int(conn.exec_driver_sql(sql, {"u": user}).scalar_one())


def test_over_max_queued_nothing_is_stored_until_jobs_finish(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a user limited to 5 queued jobs by `jobsys user set`
    added = jobsys_env.cli("user", "add", "q@example.com", "--json")
    assert added.returncode == 0, added.stderr
    user = json.loads(added.stdout)["id"]
    done = jobsys_env.cli("user", "set", "q@example.com", "--max-queued", "5")
    assert (done.returncode, done.stdout.strip()) == (0, "q@example.com: max_queued 5"), done.stderr
    (listed,) = json.loads(jobsys_env.cli("user", "list", "--json").stdout)
    assert (listed["max_queued"], listed["max_per_hour"]) == (5, None)

    # And 5 jobs queued for it (no worker runs yet)
    first = [enqueue("test.echo", user_id=user, payload={"value": i}) for i in range(5)]

    # When it enqueues more: one job, a .delay(), a batch with another user's, the CLI
    with pytest.raises(QuotaExceeded) as refused:
        enqueue("test.echo", user_id=user, payload={"value": 6})
    with pytest.raises(QuotaExceeded):
        kinds.echo.delay(user, value=7)
    with pytest.raises(QuotaExceeded):
        enqueue_many("test.echo", [("other", {"value": 1}), (user, {"value": 8})])
    cli = jobsys_env.cli("enqueue", "test.echo", "--user", user, "--payload", '{"value": 9}')

    # Then each is refused, naming the user and the limit, and nothing was stored
    assert refused.value.limit == "max_queued" and refused.value.value == 5
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and "max_queued=5" in cli.stderr and user in cli.stderr
    assert jobs_of(jobsys_env, user) == 5 and jobs_of(jobsys_env, "other") == 0

    # And once its jobs ran, its enqueues are accepted again
    start_workers(1)
    for result in first:
        wait_until(lambda r=result: jobsys_env.finished(r.job_id), timeout=60, what="a job")
    later = enqueue("test.echo", user_id=user, payload={"value": 10})
    assert later.get(timeout=60) == {"echo": 10, "attempt": 1}


def test_max_per_hour_refuses_with_when_it_frees_and_bad_limits_are_one_line(
    jobsys_env: Env,
) -> None:
    # Given a user allowed 3 enqueues an hour, all spent
    assert jobsys_env.cli("user", "add", "h@example.com").returncode == 0
    assert jobsys_env.cli("user", "set", "h@example.com", "--max-per-hour", "3").returncode == 0
    user = json.loads(jobsys_env.cli("user", "list", "--json").stdout)[0]["id"]
    enqueue_many("test.echo", [(user, {"value": i}) for i in range(3)])

    # When one more is enqueued from the CLI
    cli = jobsys_env.cli("enqueue", "test.echo", "--user", user, "--payload", '{"value": 4}')

    # Then it is refused with the time the quota frees up, in one line
    assert cli.returncode == 1 and "max_per_hour=3" in cli.stderr and "frees up at" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert jobs_of(jobsys_env, user) == 3

    # And a bad limit is refused by name, and 'default' lifts the override
    for value in ("0", "-2", "lots"):
        bad = jobsys_env.cli("user", "set", "h@example.com", "--max-per-hour", value)
        assert bad.returncode == 2 and "--max-per-hour" in bad.stderr, bad.stderr
    lifted = jobsys_env.cli("user", "set", "h@example.com", "--max-per-hour", "default")
    assert lifted.stdout.strip() == "h@example.com: max_per_hour default", lifted.stderr
    enqueue("test.echo", user_id=user, payload={"value": 5})
    assert jobs_of(jobsys_env, user) == 4
    nothing = jobsys_env.cli("user", "set", "h@example.com")
    assert nothing.returncode == 2 and "nothing to set" in nothing.stderr
