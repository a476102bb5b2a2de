"""A wrong encryption key or a missing credential parks the user at the first attempt."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobsys.store.tokens import generate_key
from jobsys.store.users import UserStore
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    pipeline_factory,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def test_a_wrong_encryption_key_parks_the_user_at_the_first_attempt(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a user whose tokens were encrypted with one key, and workers holding another
    p = pipeline_factory(users=1, messages_per_user=3, events_per_user=2)
    (email,) = p.users
    user_id = p.users[email]
    wrong = {**p.worker_env, "APP_ENCRYPTION_KEY": generate_key()}
    start_workers(1, env={**wrong, "JOBSYS_PIPELINE_REPAIR_AFTER": "2"})

    # When the user syncs
    run = p.run(user_id)

    # Then each ingestion step was buried at its first attempt, naming the key
    ingests = [j for j in jobsys_env.store.list_jobs(user_id=user_id) if "ingest" in j.kind]
    assert sorted(j.kind for j in ingests) == ["sync.ingest_calendar", "sync.ingest_gmail"]
    for job in ingests:
        assert (job.status.value, job.attempt) == ("dead", 1), job.errors
        letter = jobsys_env.store.dead_letter_of(job.id)
        assert letter is not None and letter.reason == "credentials", letter
        assert "APP_ENCRYPTION_KEY cannot decrypt" in letter.message
    # And the user is parked with that reason, and the run failed
    users = UserStore(jobsys_env.store)
    user = users.get(user_id)
    assert user.paused
    assert (user.paused_reason or "").startswith("google: APP_ENCRYPTION_KEY cannot decrypt")
    assert run["status"] == "failed"
    # But the credential is not marked invalid: the right key still decrypts it
    assert users.credential(user_id, "google").status == "valid"


def test_a_missing_credential_parks_the_user_at_the_first_attempt(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a user with no Google credential stored
    p = pipeline_factory(users=1, messages_per_user=3, events_per_user=2)
    user_id = UserStore(jobsys_env.store).add("bare@example.com").id
    start_workers(1, env={**p.worker_env, "JOBSYS_PIPELINE_REPAIR_AFTER": "2"})

    # When the user syncs
    run = p.run(user_id)

    # Then each ingestion step was buried at its first attempt, naming the credential
    ingests = [j for j in jobsys_env.store.list_jobs(user_id=user_id) if "ingest" in j.kind]
    assert len(ingests) == 2
    for job in ingests:
        assert (job.status.value, job.attempt) == ("dead", 1), job.errors
        letter = jobsys_env.store.dead_letter_of(job.id)
        assert letter is not None and letter.reason == "credentials", letter
    # And the user is parked, saying what is missing, and the run failed
    user = UserStore(jobsys_env.store).get(user_id)
    assert user.paused
    assert user.paused_reason == f"google: no google credential for user with id {user_id}"
    assert run["status"] == "failed"
