"""Results and errors PostgreSQL's jsonb refuses end the job, instead of leaving it running."""

from __future__ import annotations

import uuid

import pytest

import jobsys
from jobsys.store import Status
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_a_result_jsonb_refuses_dead_letters_the_job_at_its_first_attempt(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given jobs whose handlers return NaN, a string with a NUL, and an object
    causes = {
        "nan": "it holds NaN or Infinity",
        "nul": "it holds a \\u0000 character",
        "object": "it holds a value JSON cannot encode (Object of type object",
    }
    jobs = {
        what: uuid.UUID(jobsys.enqueue("test.unstorable", user_id="u1", payload={"what": what}).id)
        for what in causes
    }

    # When a worker runs them
    start_workers(1)

    # Then each is dead at its first attempt (the same handler would return the same),
    # its dead letter naming the cause, and no result recorded
    for what, job_id in jobs.items():
        job = wait_until(lambda j=job_id: jobsys_env.finished(j), timeout=60, what=what)
        assert (job.status, job.attempt, job.result) == (Status.DEAD, 1, None)
        letter = jobsys_env.store.dead_letter_of(job_id)
        assert letter is not None
        assert (letter.reason, letter.exc_type, letter.retryable) == (
            "unstorable",
            "UnstorableError",
            False,
        )
        assert letter.message.startswith("the job's result cannot be stored as JSON: ")
        assert causes[what] in letter.message


def test_an_error_message_with_a_nul_is_recorded_and_the_job_retried_then_buried(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a job of two attempts whose handler fails with a NUL in its message
    job_id = uuid.UUID(
        jobsys.enqueue("test.unstorable", user_id="u1", payload={"what": "nul_error"}).id
    )

    # When a worker runs it
    start_workers(1)

    # Then it is retried once and dead-lettered, each error recorded with the NUL replaced
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=60, what="the job")
    assert (job.status, job.attempt) == (Status.DEAD, 2)
    assert [(e["attempt"], e["reason"], e["message"]) for e in job.errors] == [
        (1, "bug", "bad byte \ufffd in the input"),
        (2, "bug", "bad byte \ufffd in the input"),
    ]
    letter = jobsys_env.store.dead_letter_of(job_id)
    assert letter is not None
    assert letter.message == "bad byte \ufffd in the input"
    assert "\x00" not in letter.traceback and "RuntimeError" in letter.traceback
