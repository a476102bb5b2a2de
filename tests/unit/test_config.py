from __future__ import annotations

import pytest

from jobsys import ConfigError
from jobsys.config import Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBSYS_DATABASE_URL", "mysql://x/y"),
        ("JOBSYS_DATABASE_URL", "not a url"),
        ("JOBSYS_BROKER_URL", "amqp://guest@localhost//"),
        ("JOBSYS_DEFAULT_MAX_ATTEMPTS", "zero"),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Given a malformed environment variable
    monkeypatch.setenv(variable, value)
    # When settings are read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    # Then the error names the variable and the value
    assert variable in str(caught.value)
    assert value in str(caught.value)


def test_settings_are_frozen_and_parse_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSYS_IMPORTS", "a.b, c")
    settings = Settings()
    assert settings.imports == ("a.b", "c")
    with pytest.raises(Exception, match="frozen"):
        settings.retry_cap = 1  # type: ignore[misc]


def test_a_redis_broker_uses_jobsys_redis_transport() -> None:
    # The transport that survives kombu's restore on a collected connection
    # (jobsys.engine.transport); other brokers keep their own.
    from jobsys.engine.celeryconf import _redis_transport
    from jobsys.engine.transport import TRANSPORT, Transport

    assert _redis_transport("redis://127.0.0.1:6379/0") == {"broker_transport": TRANSPORT}
    assert _redis_transport("rediss://cache.example:6380/1") == {"broker_transport": TRANSPORT}
    assert _redis_transport("amqp://guest@localhost//") == {}
    assert TRANSPORT == "jobsys.engine.transport:Transport"
    assert Transport.Channel.QoS.__module__ == "jobsys.engine.transport"


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("JOBSYS_DATABASE_URL", "mysql://app:s3cret@db/app", "mysql://app:***@db/app"),
        ("JOBSYS_BROKER_URL", "amqp://guest:s3cret@mq//", "amqp://guest:***@mq//"),
        ("JOBSYS_RESULT_BACKEND", "http://:s3cret@h/0", "http://:***@h/0"),
    ],
)
def test_config_errors_never_echo_a_password(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, shown: str
) -> None:
    # Given a malformed URL that carries a password
    monkeypatch.setenv(variable, value)
    # When the settings are read
    with pytest.raises(ConfigError) as raised:
        Settings.from_env()
    # Then the error names the URL with its password masked, and keeps no unmasked cause
    assert shown in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_a_malformed_key_is_not_quoted_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSYS_VISIBILITY_TIMEOUT", "10")
    monkeypatch.setenv("APP_ENCRYPTION_KEY", "k" * 10)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(google_client_secret=123)
    assert "kkkkkkkkkk" not in str(raised.value)
    assert "123" not in str(raised.value)


def test_an_empty_or_short_push_token_is_refused_not_taken_as_a_secret() -> None:
    # An empty secret would match a request that sends none.
    for value in ("", "short"):
        with pytest.raises(ConfigError, match="JOBSYS_PUSH_TOKEN") as caught:
            Settings.from_variables({"JOBSYS_PUSH_TOKEN": value})
        assert "short" not in str(caught.value)  # a secret is never quoted back
    assert Settings.from_variables({}).push_token is None
