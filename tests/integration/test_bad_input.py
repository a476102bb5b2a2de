"""Scenario 10: bad input is refused with a clear error, and nothing is stored or published."""

from __future__ import annotations

import pytest

import jobsys
from jobsys.config import Settings
from jobsys.store.users import UserStore
from tests.conftest import Env
from tests.support import kinds

pytestmark = pytest.mark.integration


def _nothing_stored_or_published(env: Env) -> None:
    assert env.count_rows("jobs") == 0
    assert env.count_rows("audit_events") == 0
    assert env.queue_length() == 0


def test_an_invalid_payload_names_the_field_and_stores_nothing(jobsys_env: Env) -> None:
    # Given a kind whose payload needs a non-negative integer `failures`
    # When .delay() gets a string instead
    with pytest.raises(jobsys.PayloadError) as raised:
        kinds.flaky.delay("user-1", key="k", failures="many")

    # Then the error names the kind, the field and the value
    message = str(raised.value)
    assert raised.value.kind == "test.flaky"
    assert "failures" in message and "'many'" in message
    assert len(raised.value.problems) == 1
    _nothing_stored_or_published(jobsys_env)


def test_a_missing_field_and_an_unexpected_payload_are_refused(jobsys_env: Env) -> None:
    # When a required field is missing, or a kind without payload gets one
    with pytest.raises(jobsys.PayloadError, match="key: Field required"):
        jobsys.enqueue("test.slow", user_id="user-1", payload={"seconds": 1})
    with pytest.raises(jobsys.PayloadError, match="takes no payload"):
        jobsys.enqueue("test.noop", user_id="user-1", payload={"x": 1})

    # Then nothing was stored or published
    _nothing_stored_or_published(jobsys_env)


def test_a_misspelt_field_is_refused_not_ignored(jobsys_env: Env) -> None:
    # When a sync is asked for with "ful" instead of "full" (once, and in a batch)
    with pytest.raises(jobsys.PayloadError) as raised:
        jobsys.enqueue("sync.user", user_id="user-1", payload={"ful": True})
    users = UserStore(jobsys_env.store)
    known = [users.add(f"{n}@example.com").id for n in ("a", "b")]
    with pytest.raises(jobsys.PayloadError) as batch:
        jobsys.enqueue_many("sync.user", [(known[0], {}), (known[1], {"ful": True})])

    # Then the error names the field and the fields the payload has
    assert raised.value.problems == ["ful: unknown field (got True; the payload's fields: full)"]
    assert batch.value.problems == [f"item 1: {raised.value.problems[0]}"]
    # And no sync was stored or published
    _nothing_stored_or_published(jobsys_env)


def test_an_oversized_payload_a_nul_and_a_long_user_id_are_refused(jobsys_env: Env) -> None:
    # When a payload is larger than JOBSYS_MAX_PAYLOAD_BYTES (256 KiB by default)
    with pytest.raises(jobsys.PayloadError, match="JOBSYS_MAX_PAYLOAD_BYTES=262144"):
        kinds.echo.delay("user-1", value="x" * 300_000)
    with pytest.raises(jobsys.PayloadError, match="item 0: payload: 300013 bytes"):
        jobsys.enqueue_many("test.echo", [("user-1", {"value": "x" * 300_000})])
    # Or holds a NUL character, which jsonb refuses
    with pytest.raises(jobsys.PayloadError, match="u0000 character"):
        kinds.echo.delay("user-1", value="a\u0000b")
    # Or the user id is longer than 200 characters
    with pytest.raises(jobsys.OptionError, match="user_id must be at most 200 characters"):
        kinds.echo.delay("u" * 201, value=1)

    # Then nothing was stored or published
    _nothing_stored_or_published(jobsys_env)


def test_one_bad_payload_in_a_batch_stores_none_of_it(jobsys_env: Env) -> None:
    # Given a batch of valid payloads whose last one has an empty `key`
    batch = [(f"user-{n}", {"key": f"k{n}", "seconds": 1}) for n in range(10)]
    batch.append(("user-10", {"key": "", "seconds": 1}))

    # When it is enqueued as one
    with pytest.raises(jobsys.PayloadError, match="key"):
        jobsys.enqueue_many("test.slow", batch)

    # Then neither that batch nor anything else was stored or published
    _nothing_stored_or_published(jobsys_env)


def test_an_unknown_kind_is_refused_and_lists_the_known_ones(jobsys_env: Env) -> None:
    # When a job of a kind nobody registered is enqueued
    with pytest.raises(jobsys.UnknownKindError) as raised:
        jobsys.enqueue("test.nope", user_id="user-1", payload={})

    # Then the error names it and the registered kinds
    assert "'test.nope'" in str(raised.value)
    assert "test.echo" in str(raised.value)
    with pytest.raises(jobsys.UnknownKindError):
        jobsys.enqueue_many("test.nope", [("user-1", {})])
    _nothing_stored_or_published(jobsys_env)


def test_a_bad_user_id_is_refused(jobsys_env: Env) -> None:
    # When the user id is empty or not a string or integer
    for bad in ("", "  ", None, 1.5, True):
        with pytest.raises(ValueError, match="user_id"):
            kinds.echo.delay(bad, value=1)

    # Then nothing was stored or published
    _nothing_stored_or_published(jobsys_env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBSYS_DATABASE_URL", "mysql://x"),
        ("JOBSYS_DATABASE_URL", "postgresql://"),
        ("JOBSYS_BROKER_URL", "amqp://guest@localhost//"),
        ("JOBSYS_BROKER_URL", "127.0.0.1:6379"),
    ],
)
def test_a_malformed_url_is_a_config_error_naming_the_variable(
    jobsys_env: Env, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Given a malformed URL in the environment
    monkeypatch.setenv(variable, value)
    try:
        # When the settings are read
        with pytest.raises(jobsys.ConfigError) as raised:
            Settings.from_env()
    finally:
        monkeypatch.undo()

    # Then the error names the variable and the value, and nothing was touched
    assert variable.removesuffix("_URL") in str(raised.value)
    assert repr(value) in str(raised.value)
    _nothing_stored_or_published(jobsys_env)


def test_settings_built_directly_reject_a_mysql_url() -> None:
    # When Settings are built with a MySQL URL
    # Then pydantic refuses it, naming the variable and the schemes it accepts
    with pytest.raises(ValueError, match=r"JOBSYS_DATABASE_URL='mysql://x'.*postgresql://"):
        Settings(database_url="mysql://x")
