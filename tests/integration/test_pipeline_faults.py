"""Sync pipeline, issue scenarios 4-6: transient faults, a revoked token, malformed MIME."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobsys.store.users import UserStore
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    assert_matches_truth,
    change_mailbox_and_calendar,
    fault_bursts,
    injected_errors,
    message_facts,
    never_listed,
    pipeline_factory,  # noqa: F401  (fixture)
    truth_message_facts,
)

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def test_transient_5xx_and_429_bursts_are_retried_until_every_pipeline_converges(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users and two workers
    p = pipeline_factory(users=3, messages_per_user=20, events_per_user=8)
    start_workers(2, env=p.worker_env)

    # When every user syncs in full while 10% of API requests answer 503
    # and a burst of 429s (Retry-After: 1) comes every three seconds
    with fault_bursts(p.emulator, error_rate=0.1, burst=4, every=3.0):
        runs = p.run_all(full=True)

    # Then faults were really injected, and retried through (the requests, the batch
    # parts, and if any attempt failed, only for quota or transient reasons)
    assert injected_errors(p.emulator) >= 5
    retried = [
        (e["reason"], e["type"])
        for job in jobsys_env.store.list_jobs(limit=1000)
        if job.kind.startswith("sync.ingest_")
        for e in job.errors
    ]
    assert {reason for reason, _ in retried} <= {"quota", "transient"}, retried

    # And every run succeeded with exactly the truth, no duplicates and no dead letters
    assert {email: run["status"] for email, run in runs.items()} == dict.fromkeys(
        p.users, "succeeded"
    )
    for email in p.users:
        assert_matches_truth(p, email)
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []

    # And when the data changes and every user syncs incrementally under the same faults
    hidden = {email: never_listed(p.emulator.truth_events(email)) for email in p.users}
    for tag, email in enumerate(p.users):
        change_mailbox_and_calendar(p, email, tag=10 * tag)
    with fault_bursts(p.emulator, error_rate=0.1, burst=4, every=3.0):
        runs = p.run_all()

    # Then the runs converge to the new truth, still without duplicates or dead letters
    for email in p.users:
        assert runs[email]["status"] == "succeeded", runs[email]
        assert runs[email]["steps"]["ingest_gmail"]["mode"] == "incremental"
        assert_matches_truth(p, email, hidden=hidden[email])
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []


def test_ten_percent_5xx_never_dead_letters_an_ingestion_of_hundreds_of_messages(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users with 250 messages each (batches of up to 100 parts) and two workers
    p = pipeline_factory(users=3, messages_per_user=250, events_per_user=20)
    start_workers(2, env=p.worker_env)

    # When every user syncs in full while 10% of API requests and batch parts answer 503
    p.emulator.set_faults(error_rate=0.1)
    try:
        runs = p.run_all(full=True)
    finally:
        p.emulator.clear_faults()

    # Then faults reached the pipeline
    assert injected_errors(p.emulator) >= 20

    # And every run succeeded with exactly the truth: no ingestion was dead-lettered,
    # and each failed request or part was tried again, not the attempt
    assert {email: run["status"] for email, run in runs.items()} == dict.fromkeys(
        p.users, "succeeded"
    )
    for email in p.users:
        assert_matches_truth(p, email)
    assert jobsys_env.store.list_dead_letters() == []
    ingestions = [
        j for j in jobsys_env.store.list_jobs(limit=1000) if j.kind == "sync.ingest_gmail"
    ]
    assert len(ingestions) == 3
    assert [(j.attempt, j.errors) for j in ingestions] == [(1, [])] * 3
    assert p.duplicates() == {}


def test_a_revoked_token_parks_that_user_and_the_other_users_finish(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users, one of whom revoked jobsys's access at Google
    p = pipeline_factory(users=3, messages_per_user=15, events_per_user=6)
    start_workers(2, env={**p.worker_env, "JOBSYS_PIPELINE_REPAIR_AFTER": "2"})
    revoked, *others = list(p.users)
    p.emulator.revoke(revoked)

    # When every user syncs
    runs = p.run_all(full=True)

    # Then the other users' runs succeeded with their data
    for email in others:
        assert runs[email]["status"] == "succeeded", runs[email]
        user_id = p.users[email]
        assert message_facts(p.sync.messages(user_id)) == truth_message_facts(
            p.emulator.truth_messages(email)
        )

    # And the revoked user is parked: credentials invalid, user paused with the reason
    users = UserStore(jobsys_env.store)
    user_id = p.users[revoked]
    credential = users.credential(user_id, "google")
    assert credential.status == "invalid"
    assert "refresh" in (credential.status_reason or "")
    user = users.get(user_id)
    assert user.paused
    assert (user.paused_reason or "").startswith("google: ")
    assert "invalid_grant" in (user.paused_reason or "")

    # And the run failed on its dead ingestion step, buried as an auth failure, not retried
    assert runs[revoked]["status"] == "failed"
    assert "sync.ingest_" in (runs[revoked]["error"] or "")
    letters = jobsys_env.store.list_dead_letters()
    assert letters and {d.user_id for d in letters} == {user_id}
    assert {d.reason for d in letters} == {"auth"}
    assert all(len(d.attempts) == 1 for d in letters), [d.attempts for d in letters]
    assert p.sync.messages(user_id) == []


MALFORMED = {
    "bad charsets": (
        b"From: =?x-bogus?B?SGVsbG8=?= <a@x.example>\r\nTo: b@y.example\r\n"
        b"Subject: caf\xe9 \xff\xfe\r\nDate: Tue, 04 Feb 2025 09:00:00 +0000\r\n"
        b'Content-Type: text/plain; charset="x-unknown-zz"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\nna\xefve \x81\x8d body\r\n"
    ),
    "unclosed multipart": (
        b"From: c@x.example\r\nTo: d@y.example\r\nSubject: unclosed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n--XYZ\r\n'
        b"Content-Type: text/plain\r\n\r\nfirst part\r\n--XYZ\r\n"
        b"Content-Type: text/html\r\n\r\n<p>never closed"
    ),
    "multipart without boundary": (
        b"From: e@x.example\r\nTo: f@y.example\r\nSubject: no boundary\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative\r\n\r\n--?\r\nsome text\r\n"
    ),
    "no identity headers": b"X-Nothing: 1\r\n\r\njust a body\r\n",
    "no header block": b"\r\nhello without any header\r\n",
    "binary garbage": bytes(range(256)) * 4,
}
UNPARSEABLE = {"no header block", "binary garbage"}
NO_SENDER = {"no identity headers"}  # a message all the same: its body is kept


def test_malformed_mime_never_fails_a_batch_and_every_message_is_recorded(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a mailbox holding well-formed mail and malformed messages of every kind
    p = pipeline_factory(users=2, messages_per_user=10, events_per_user=4)
    email, user_id = next(iter(p.users.items()))
    ids = {name: p.emulator.add_message(email, raw).id for name, raw in MALFORMED.items()}
    start_workers(1, env=p.worker_env)

    # When the user syncs
    run = p.run(user_id, full=True)

    # Then the run succeeded, and no normalization job failed even once
    assert run["status"] == "succeeded", run
    normalize = [j for j in jobsys_env.store.list_jobs(limit=1000) if j.kind == "sync.normalize"]
    assert normalize and all(j.attempt == 1 and j.errors == [] for j in normalize)
    assert jobsys_env.store.list_dead_letters() == []

    # And every message has its row: the unparseable ones with an error,
    # the others normalized with their defects named
    rows = {r["gmail_id"]: r for r in p.sync.messages(user_id)}
    assert set(rows) == {t["id"] for t in p.emulator.truth_messages(email)}
    for name, gmail_id in ids.items():
        row = rows[gmail_id]
        if name in UNPARSEABLE:
            assert row["error"], name
        elif name in NO_SENDER:
            assert row["error"] is None and row["defects"], (name, row)
            assert (row["from_addr"], row["subject"], row["text_body"]) == ("", "", "just a body")
        else:
            assert row["error"] is None and row["defects"], (name, row)
            assert row["from_addr"] and row["subject"], (name, row)
    good = [r for i, r in rows.items() if i not in ids.values()]
    assert good and all(r["error"] is None for r in good)

    # And extraction and processing ran over the rest
    assert p.sync.contacts(user_id)
    assert p.sync.report(user_id)["digest"] is not None
